"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
MAX_LENGTH = 256

# Only for test suites: ``ARGON2_TEST_PARAMS="time_cost=1,memory_cost=64,parallelism=1"``
# lowers the cost of every hash. Read only when set; never set it in production.
PARAMS_VARIABLE = "ARGON2_TEST_PARAMS"
_PARAM_NAMES = frozenset({"time_cost", "memory_cost", "parallelism"})


def make_hasher(env: Mapping[str, str] | None = None) -> PasswordHasher:
    """argon2-cffi's defaults (argon2id, RFC 9106's "low memory" profile), unless
    ``ARGON2_TEST_PARAMS`` is set explicitly (the test suite's cheaper hashing)."""
    raw = (os.environ if env is None else env).get(PARAMS_VARIABLE, "").strip()
    if not raw:
        return PasswordHasher()
    params: dict[str, int] = {}
    for part in raw.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in _PARAM_NAMES or not value.strip().isdigit():
            raise ValueError(
                f"{PARAMS_VARIABLE}: expected name=number with names "
                f"{sorted(_PARAM_NAMES)}, got {part!r}"
            )
        params[name] = int(value)
    defaults = PasswordHasher()
    return PasswordHasher(
        time_cost=params.get("time_cost", defaults.time_cost),
        memory_cost=params.get("memory_cost", defaults.memory_cost),
        parallelism=params.get("parallelism", defaults.parallelism),
    )


_hasher = make_hasher()

# Verifying against this keeps the time of a sign-in for an unknown account
# the same as for a known one, so timing does not reveal who has an account.
_DUMMY_HASH = _hasher.hash("not-a-real-password-for-timing")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    if not stored_hash:
        burn_time(password)
        return False
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def burn_time(password: str) -> None:
    """Spend one hash verification, for unknown accounts."""
    with contextlib.suppress(VerificationError):
        _hasher.verify(_DUMMY_HASH, password + "x")


def needs_rehash(stored_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    text = resources.files("portal").joinpath("data/common_passwords.txt").read_text()
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def password_problem(password: str, *, email: str = "") -> str | None:
    """Why ``password`` is not acceptable, or None when it is."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    lowered = password.lower()
    if lowered in _common_passwords():
        return "This password is too common; choose one that is harder to guess."
    local = email.split("@", 1)[0].lower()
    if local and len(local) >= 4 and local in lowered:
        return "The password must not contain your email address."
    if len(set(password)) < 4:
        return "Use a password with more different characters."
    return None
