"""Piccolo's configuration module: the engine and the app registry.

``DB`` is replaced by :func:`portal.db.bind_engine` when the portal (or a test)
chooses its database; Piccolo's migration machinery reads it from here.
"""

from piccolo.conf.apps import AppRegistry
from piccolo.engine.base import Engine

from portal.engines import make_engine
from portal.settings import get_settings

DB: Engine = make_engine(get_settings().database_url)

APP_REGISTRY = AppRegistry(apps=["portal.piccolo_app"])
