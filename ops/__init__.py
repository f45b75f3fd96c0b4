"""Operator tooling: the ``refex`` command line, composed from each service's command group."""
