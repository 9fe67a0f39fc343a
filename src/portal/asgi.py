"""ASGI entry point for uvicorn and other servers: `portal.asgi:app`.

Each server process imports it (uvicorn's workers too), so each sets up the
portal's logging here (``LOG_FORMAT``, ``LOG_LEVEL``) before building the app.
"""

from portal import logs
from portal.app import create_app
from portal.settings import get_settings

settings = get_settings()
logs.configure(settings.log_format, level=settings.log_level)
app = create_app(settings)
