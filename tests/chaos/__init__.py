"""Fault injection against the whole system: services, broker and database die mid-flight, and
invariants are checked from outside afterwards (``make chaos``; a short run is in make test)."""
