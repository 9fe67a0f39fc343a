"""Production hashes with argon2-cffi's defaults; only an explicit setting lowers the cost.

The suite sets ``ARGON2_TEST_PARAMS`` (tests/conftest.py) before anything hashes.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from argon2 import PasswordHasher, Type

from portal.auth import passwords

pytestmark = pytest.mark.nodb


def _params(hasher: PasswordHasher) -> tuple[object, ...]:
    return (
        hasher.time_cost,
        hasher.memory_cost,
        hasher.parallelism,
        hasher.hash_len,
        hasher.salt_len,
        hasher.type,
    )


def test_without_the_setting_the_hasher_is_argon2_cffis_default() -> None:
    default = PasswordHasher()
    for env in ({}, {passwords.PARAMS_VARIABLE: ""}, {passwords.PARAMS_VARIABLE: "  "}):
        assert _params(passwords.make_hasher(env)) == _params(default)
    # RFC 9106's "low memory" profile, argon2id: what production stores.
    assert _params(default)[:3] == (3, 65536, 4) and default.type is Type.ID
    assert passwords.make_hasher({}).hash("x").startswith("$argon2id$v=19$m=65536,t=3,p=4$")


def test_a_process_without_the_setting_hashes_with_the_defaults() -> None:
    env = {k: v for k, v in os.environ.items() if k != passwords.PARAMS_VARIABLE}
    code = (
        "from portal.auth import passwords as p; h = p._hasher; "
        "print(h.time_cost, h.memory_cost, h.parallelism)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["3", "65536", "4"]


def test_the_suite_hashes_cheaply_and_hashes_still_verify() -> None:
    assert (passwords._hasher.time_cost, passwords._hasher.memory_cost) == (1, 64)
    stored = passwords.hash_password("correct-horse-battery")
    assert stored.startswith("$argon2id$v=19$m=64,t=1,p=1$")
    assert passwords.verify_password(stored, "correct-horse-battery")
    assert not passwords.verify_password(stored, "wrong-horse-battery")
    # A hash made with production's parameters still verifies.
    assert passwords.verify_password(PasswordHasher().hash("abc"), "abc")


def test_a_malformed_setting_is_refused() -> None:
    for raw in ("time_cost=1,memory=64", "time_cost=one", "fast"):
        with pytest.raises(ValueError, match=passwords.PARAMS_VARIABLE):
            passwords.make_hasher({passwords.PARAMS_VARIABLE: raw})
