"""Pages from the console's Jinja2 templates: every page gets the session's form token, the
URLs of the static files, and the gettext functions of the reader's language (left to right or
right to left: ``dir``)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from shared.web.form_tokens import form_token
from shared.web.static_files import StaticFiles

from . import languages

STATIC_FILES = (
    "console.css",
    "disclosure.js",
    # libsodium.js, vendored unmodified (docs/decisions/0025): opens sealed disclosures.
    "vendor/libsodium.js",
    "vendor/libsodium-wrappers.js",
)


class Renderer:
    def __init__(self, static: StaticFiles) -> None:
        self.static = static
        self.env = Environment(
            loader=PackageLoader(__package__, "templates"),
            autoescape=select_autoescape(["html"]),
            extensions=["jinja2.ext.i18n"],
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def page(
        self, request: Request, template: str, context: dict[str, Any], status: int = 200
    ) -> HTMLResponse:
        language = languages.of(request)
        translations = languages.translations(language)
        body = self.env.get_template(template).render(
            {
                **context,
                "request": request,
                "form_token": form_token(request),
                "static": lambda name: self.static.url(request, name),
                "lang": language,
                "dir": languages.direction(language),
                "languages": languages.LANGUAGES,
                "category": lambda code: languages.category_label(code, language),
                "reason": lambda code: languages.reason_label(code, language),
                "_": translations.gettext,
                "gettext": translations.gettext,
                "ngettext": translations.ngettext,
            }
        )
        response = HTMLResponse(body, status)
        response.headers["cache-control"] = "no-store"  # pages show case data: never cached
        chosen = languages.chosen_now(request)
        if chosen is not None:
            response.set_cookie(
                languages.LANGUAGE_COOKIE, chosen, max_age=365 * 24 * 3600, samesite="lax"
            )
        return response

    def error(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self.page(request, "error.html", {"status": status, "message": message}, status)
