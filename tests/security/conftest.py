from __future__ import annotations

from typing import Any

import pytest

from portal.app import create_app
from portal.settings import Settings
from tests.security.harness import SecurityWorld, build_world


@pytest.fixture
def sec_app(db: Any, stripe_settings: Settings) -> Any:
    """The app with payments wired to the Stripe stand-in, so buying works."""
    return create_app(stripe_settings, manage_database=False)


@pytest.fixture
async def sw(sec_app: Any, stripe_settings: Settings) -> SecurityWorld:
    return await build_world(stripe_settings, sec_app)
