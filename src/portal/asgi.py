"""ASGI entry point for uvicorn and other servers: `portal.asgi:app`.

Each server process imports it (uvicorn's workers too), so each sets up the
portal's log format here (``LOG_FORMAT``) before building the app.
"""

from portal import logs
from portal.app import create_app
from portal.settings import get_settings

logs.configure(get_settings().log_format)
app = create_app()
