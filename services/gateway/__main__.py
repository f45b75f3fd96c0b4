import uvicorn

from .app import build

app, settings = build()
uvicorn.run(
    app,
    host=settings.http_host,
    port=settings.http_port,
    log_config=None,
    access_log=False,
    lifespan="on",
    proxy_headers=True,
)
