"""Who is reading: login and logout, the session, and the guard every page passes.

The session is a signed cookie (Starlette's SessionMiddleware: itsdangerous, HttpOnly,
SameSite=Lax, Secure outside development) holding the account id, when it logged in and the
session's form token. Every request reads the account again: a disabled account, or one whose
sessions were ended (disable, re-enable, new password), is logged out at its next click. Forms
that change something (login, logout) carry the form token.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from shared.logging import get_logger
from shared.unit import Unit
from shared.web.form_tokens import new_form_token, token_ok
from shared.web.throttle import failures_after, wait_before_next_attempt

from .account_store import Account, AccountStore, Role
from .config import DashboardConfig
from .i18n import N_
from .passwords import password_matches
from .rendering import Renderer

log = get_logger(__name__)

AccountUnits = Callable[[], AbstractAsyncContextManager[Unit[AccountStore]]]
Page = Callable[[Request, Account], Awaitable[Response]]

_ACCOUNT, _LOGIN_AT = "account_id", "login_at"


def safe_next(request: Request, target: str | None) -> str:
    """Where to go after login: a path of this dashboard only (never another site)."""
    home = str(request.url_for("overview").path)
    root = request.scope.get("root_path") or ""
    if not target or not target.startswith(root + "/") or target.startswith("//"):
        return home
    if "\\" in target or any(ord(c) < 32 for c in target):
        return home
    return target


@dataclass(frozen=True)
class Auth:
    config: DashboardConfig
    units: AccountUnits
    renderer: Renderer

    async def current_account(self, request: Request) -> Account | None:
        account_id, login_at = request.session.get(_ACCOUNT), request.session.get(_LOGIN_AT)
        if not isinstance(account_id, str) or not isinstance(login_at, (int, float)):
            return None
        if time.time() - login_at > self.config.session_max_s:
            return None
        async with self.units() as unit:
            account = await unit.stores.by_id(account_id)
        if account is None or not account.active:
            return None
        if login_at < account.sessions_not_before.timestamp():
            return None
        return account

    def guard(
        self, page: Page, role: Role | None = None
    ) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint of a page: logged-in readers only (others go to the login page and
        come back), and of ``role`` when one is given (others get 403)."""

        async def endpoint(request: Request) -> Response:
            account = await self.current_account(request)
            if account is None:
                request.session.pop(_ACCOUNT, None)
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                login = request.url_for("login").path
                return RedirectResponse(f"{login}?{urlencode({'next': target})}", status_code=303)
            if role is not None and account.role != role:
                return self.renderer.page(
                    request,
                    "error.html",
                    {"account": account, "message": N_("This page is for operators only.")},
                    status_code=403,
                )
            return await page(request, account)

        return endpoint

    async def login_page(self, request: Request) -> Response:
        if request.method == "GET":
            target = safe_next(request, request.query_params.get("next"))
            return self._login_form(request, target=target)
        form = await request.form()
        username = str(form.get("username") or "")
        password = str(form.get("password") or "")
        target = safe_next(request, str(form.get("next") or ""))
        refused = N_("Wrong account name or password.")
        if not token_ok(request, form.get("form_token")):
            expired = N_("The form expired; please try again.")
            return self._login_form(request, target=target, problem=expired, status=400)
        if not username or not password:
            return self._login_form(request, target=target, problem=refused, status=401)
        outcome = await self._check(username, password)
        if isinstance(outcome, timedelta):
            response = self._login_form(
                request,
                target=target,
                username=username,
                problem=N_("Too many failed attempts."),
                status=429,
                wait_minutes=max(1, -(-int(outcome.total_seconds()) // 60)),  # rounded up
            )
            response.headers["retry-after"] = str(int(outcome.total_seconds()) + 1)
            return response
        if outcome is None:
            return self._login_form(
                request, target=target, username=username, problem=refused, status=401
            )
        request.session.clear()
        request.session.update({_ACCOUNT: outcome.account_id, _LOGIN_AT: time.time()})
        new_form_token(request)
        log.info("dashboard_login", account_id=outcome.account_id, role=outcome.role.value)
        return RedirectResponse(target, status_code=303)

    async def _check(self, username: str, password: str) -> Account | timedelta | None:
        """The account these credentials open; None when refused (a failure counted); the
        wait left when the name is throttled (the password is not even checked)."""
        now = datetime.now(UTC)
        policy = self.config.throttle
        async with self.units() as unit:
            failures = await unit.stores.failures(username)
            wait = wait_before_next_attempt(failures, now, policy)
            if wait is not None:
                log.info("dashboard_login_throttled")
                return wait
            account = await unit.stores.by_username(username)
            matches = await password_matches(account.password_hash if account else None, password)
            if account is None or not matches or not account.active:
                forget_before = now - timedelta(seconds=policy.forget_after_s)
                await unit.stores.save_failures(
                    username, failures_after(failures, now, policy), forget_before
                )
                log.info("dashboard_login_refused")
                return None
            await unit.stores.clear_failures(username)
            await unit.stores.record_login(account.account_id, now)
            return account

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        if token_ok(request, form.get("form_token")):
            account_id = request.session.get(_ACCOUNT)
            request.session.clear()
            log.info("dashboard_logout", account_id=account_id)
        return RedirectResponse(request.url_for("login").path, status_code=303)

    def _login_form(
        self,
        request: Request,
        *,
        target: str,
        problem: str | None = None,
        status: int = 200,
        username: str = "",
        wait_minutes: int | None = None,
    ) -> Response:
        return self.renderer.page(
            request,
            "login.html",
            {
                "account": None,
                "problem": problem,
                "username": username,
                "next": target,
                "wait_minutes": wait_minutes,
            },
            status_code=status,
        )
