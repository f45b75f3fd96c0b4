"""The session's form token: every form that changes something (login, logout) carries it, and
a post without the session's own token is refused (a page of another site cannot post one)."""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request

_TOKEN = "form_token"


def form_token(request: Request) -> str:
    """The session's token for its forms (made on first use, before login too)."""
    token = request.session.get(_TOKEN)
    if not isinstance(token, str):
        token = new_form_token(request)
    return token


def new_form_token(request: Request) -> str:
    token = secrets.token_urlsafe(32)
    request.session[_TOKEN] = token
    return token


def token_ok(request: Request, sent: object) -> bool:
    expected = request.session.get(_TOKEN)
    return (
        isinstance(expected, str) and isinstance(sent, str) and hmac.compare_digest(expected, sent)
    )
