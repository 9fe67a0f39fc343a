from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from argon2 import PasswordHasher

from portal.auth import passwords
from portal.settings import Settings
from tests.conftest import using_app
from tests.security.harness import SecurityWorld, build_world


@pytest.fixture
async def sec_app(db: Any, stripe_settings: Settings) -> AsyncIterator[Any]:
    """The app with payments wired to the Stripe stand-in, so buying works."""
    async with using_app(stripe_settings) as app:
        yield app


@pytest.fixture
async def sw(sec_app: Any, stripe_settings: Settings) -> SecurityWorld:
    return await build_world(stripe_settings, sec_app)


@pytest.fixture
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sign-ins and sign-ups by the dozen: argon2 at its cheapest (these tests
    are about what happens around the password, not the hash)."""
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    )
