"""What the optional channels (webhook, e-mail) have in common."""

from __future__ import annotations


def accepts(event_types: list[str] | None, ce_type: str) -> bool:
    """A channel registered without a type filter takes every type."""
    return not event_types or ce_type in event_types
