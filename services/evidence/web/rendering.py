"""Pages from templates: one Jinja environment per language (its catalogue installed once, so
requests in different languages never share state), autoescaped, with the static files' URLs
and the language cookie set when the reader chose a language by a link."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from shared.web.form_tokens import form_token
from shared.web.static_files import StaticFiles

from .i18n import (
    LANGUAGE_COOKIE,
    LANGUAGES,
    Language,
    Words,
    choose_language,
    load_translations,
    table_title,
)

_YEAR_S = 365 * 24 * 3600


class Renderer:
    def __init__(self, static: StaticFiles, secure_cookies: bool) -> None:
        self.static = static
        self.secure_cookies = secure_cookies
        self.words = {lang: Words(lang, load_translations(lang)) for lang in LANGUAGES}
        self.environments = {lang: self._environment(self.words[lang]) for lang in LANGUAGES}

    def _environment(self, words: Words) -> Environment:
        env = Environment(
            loader=PackageLoader(__package__, "templates"),
            autoescape=select_autoescape(default=True),
            undefined=StrictUndefined,
            extensions=["jinja2.ext.i18n"],
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.install_gettext_translations(words.translations, newstyle=True)  # type: ignore[attr-defined]
        env.globals["words"] = words
        env.globals["lang"] = words.language
        env.globals["table_title"] = table_title
        env.tests["startingwith"] = lambda value, prefix: str(value).startswith(prefix)
        return env

    def language(self, request: Request) -> Language:
        return choose_language(
            request.query_params.get("lang"),
            request.cookies.get(LANGUAGE_COOKIE),
            request.headers.get("accept-language"),
        )

    def words_for(self, request: Request) -> Words:
        return self.words[self.language(request)]

    def page(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        status_code: int = 200,
    ) -> HTMLResponse:
        lang = self.language(request)
        body = (
            self.environments[lang]
            .get_template(template)
            .render(
                request=request,
                static=lambda name: self.static.url(request, name),
                url=lambda route, **params: request.url_for(route, **params).path,
                lang_url=lambda code: "?" + str(request.url.include_query_params(lang=code).query),
                form_token=form_token(request),
                **context,
            )
        )
        response = HTMLResponse(body, status_code=status_code)
        # Figures behind a login: never kept by a shared cache.
        response.headers["cache-control"] = "private, no-store"
        response.headers["content-language"] = lang
        if request.query_params.get("lang") == lang:
            response.set_cookie(
                LANGUAGE_COOKIE,
                lang,
                max_age=_YEAR_S,
                path=request.scope.get("root_path") or "/",
                secure=self.secure_cookies,
                httponly=True,
                samesite="lax",
            )
        return response
