from shared.service import serve

from .app import app, settings

serve(app, settings)
