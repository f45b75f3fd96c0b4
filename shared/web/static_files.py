"""A web app's static files (vendored libraries, its scripts and style sheets), read from its
package once and served under a URL that carries their content's digest, so a browser keeps
each for a year and a new release is fetched at once. Nothing comes from a network."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

ROUTE_NAME = "static"
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".wasm": "application/wasm",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    media_type: str
    digest: str


class StaticFiles:
    """The files ``names`` (paths under the ``static`` folder of ``package``)."""

    def __init__(self, package: str, names: Iterable[str]) -> None:
        folder = resources.files(package).joinpath("static")
        self.files: dict[str, StaticFile] = {}
        for name in names:
            body = folder.joinpath(name).read_bytes()
            media_type = MEDIA_TYPES[name[name.rindex(".") :]]
            self.files[name] = StaticFile(body, media_type, hashlib.sha256(body).hexdigest()[:16])

    def url(self, request: Request, name: str) -> str:
        file = self.files[name]
        return str(request.url_for(ROUTE_NAME, digest=file.digest, name=name).path)

    async def serve(self, request: Request) -> Response:
        file = self.files.get(request.path_params["name"])
        if file is None:
            return Response(status_code=404)
        if request.path_params["digest"] != file.digest:
            # An old page asking for a previous release: the current file, not kept for long.
            return Response(
                file.body, media_type=file.media_type, headers={"cache-control": "no-cache"}
            )
        return Response(
            file.body,
            media_type=file.media_type,
            headers={"cache-control": "public, max-age=31536000, immutable", "etag": file.digest},
        )
