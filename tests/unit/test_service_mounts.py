"""shared.service.PrefixMounts: sub-applications by path prefix beside FastStream's app (the
evidence service serves its dashboard under /dashboard)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.service import PrefixMounts


class Recorder:
    def __init__(self, name: str, seen: list[tuple[str, dict[str, Any]]]) -> None:
        self.name, self.seen = name, seen

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.seen.append((self.name, dict(scope)))


async def _route(app: PrefixMounts, scope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    async def receive() -> Any:
        return {}

    async def send(message: Any) -> None:
        return None

    await app(scope, receive, send)
    return app_seen.pop()


app_seen: list[tuple[str, dict[str, Any]]] = []
APP = PrefixMounts(
    Recorder("main", app_seen),
    {"/dashboard": Recorder("dashboard", app_seen), "/dashboard/api": Recorder("api", app_seen)},
)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/dashboard", "dashboard"),
        ("/dashboard/", "dashboard"),
        ("/dashboard/unmet?country=SN", "dashboard"),
        ("/dashboard/api/x", "api"),  # the longest prefix wins
        ("/dashboardx", "main"),  # a prefix is a whole path segment
        ("/health/ready", "main"),
        ("/docs/asyncapi", "main"),
        ("/", "main"),
    ],
)
async def test_http_requests_go_to_the_app_of_their_prefix(path: str, expected: str) -> None:
    name, scope = await _route(APP, {"type": "http", "path": path, "root_path": ""})
    assert name == expected
    assert scope["path"] == path, "the sub-application sees the full path"
    if expected == "dashboard":
        assert scope["root_path"] == "/dashboard"
    if expected == "main":
        assert scope["root_path"] == ""


async def test_lifespan_goes_to_the_main_app_only() -> None:
    name, _ = await _route(APP, {"type": "lifespan"})
    assert name == "main"


async def test_a_root_path_in_front_is_kept() -> None:
    _, scope = await _route(APP, {"type": "http", "path": "/dashboard/a", "root_path": "/refex"})
    assert scope["root_path"] == "/refex/dashboard"


@pytest.mark.parametrize("prefix", ["dashboard", "/dashboard/", ""])
def test_a_prefix_must_start_and_not_end_with_a_slash(prefix: str) -> None:
    with pytest.raises(ValueError, match="mount prefix"):
        PrefixMounts(Recorder("main", []), {prefix: Recorder("x", [])})
