"""What the optional channels (webhook, e-mail) have in common."""

from __future__ import annotations


def accepts(event_types: list[str] | None, ce_type: str) -> bool:
    """A channel registered without a type filter takes every type."""
    return not event_types or ce_type in event_types


def caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is anywhere in the exception's chain: HTTP and SMTP clients wrap the
    socket's error (a TLS failure, a failed name lookup) in their own."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
