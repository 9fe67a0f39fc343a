"""The portal's ASGI app plus one bare route, for `make bench`.

``/bench/bare`` renders a fixed inline template through the same app, the
same middleware and the same session cookie as every page: the floor that
the dashboard's requests per second are compared with. It exists only in
this module, never in the product.

    uvicorn benchapp:app --app-dir bench
"""

from __future__ import annotations

from jinja2 import Template
from litestar import MediaType, Response, get

from portal.asgi import app

BARE = Template(
    "<!doctype html><html lang=en><title>Bare</title><main><p>{{ text }}</p></main></html>",
    autoescape=True,
)


@get("/bench/bare", opt={"public": True}, include_in_schema=False, sync_to_thread=False)
def bare() -> Response[str]:
    """A fixed template, compiled once, rendered on every request."""
    return Response(BARE.render(text="A fixed template."), media_type=MediaType.HTML)


app.register(bare)

__all__ = ["app"]
