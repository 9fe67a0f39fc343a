"""ASGI entry point for uvicorn and other servers: `portal.asgi:app`."""

from portal.app import create_app

app = create_app()
