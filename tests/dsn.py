"""Database URLs in tests: the ones make test gives carry a query already (sslmode=verify-full,
sslrootcert), so a parameter is added to it, never as a second '?'."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit


def with_params(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


def with_database(url: str, database: str) -> str:
    """The same URL (host, role, query) naming another database."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))
