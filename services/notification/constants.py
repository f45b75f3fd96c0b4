"""The notification service's constants, in a module of their own: the handlers, the delivery
loops, the secrets' start-up job and the CLI all need them, and handlers.py imports the delivery
modules (importing back would make a cycle)."""

SOURCE = "urn:referralexchange:service:notification"  # this service's CloudEvents source
