from shared.service import serve

from .app import build

app, settings = build()
serve(app, settings)
