"""The portal's ASGI app plus one bare route, for `make bench`.

``/bench/bare`` renders a fixed inline template through the same app, the
same middleware and the same session cookie as every page: the floor that
the dashboard's requests per second are compared with. It exists only in
this module, never in the product.

    uvicorn benchapp:app --app-dir bench
"""

from __future__ import annotations

from litestar import get
from litestar.response import Template

from portal.asgi import app

BARE = "<!doctype html><html lang=en><title>Bare</title><main><p>{{ text }}</p></main></html>"


@get("/bench/bare", opt={"public": True}, include_in_schema=False, sync_to_thread=False)
def bare() -> Template:
    return Template(template_str=BARE, context={"text": "A fixed template."})


app.register(bare)

__all__ = ["app"]
