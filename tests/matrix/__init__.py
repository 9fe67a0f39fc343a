"""Path-parameter values for the access matrix, one module per context.

Each module here defines ``async def provide(world) -> dict[str, Param]``:
for every path parameter its routes use, the value that belongs to the
"own" location (A, where the manager and therapist under test work) and the
value that belongs to the "other" location (B). A route whose parameter no
module provides fails the matrix, so no new route escapes it.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any

from tests.factories import Account


@dataclass(frozen=True)
class Param:
    own: Any
    other: Any
    # False for chain-wide things (a catalog service): both variants are the same.
    scoped: bool = True


@dataclass
class World:
    own_location: int
    other_location: int
    accounts: dict[str, Account]  # role -> account (manager/therapist work at own_location)
    extra: dict[str, Any] = field(default_factory=dict)


async def provide_all(world: World) -> dict[str, Param]:
    """Every provider's parameters; a module may set ``ORDER`` (default 0) to
    run after the ones whose objects it builds on."""
    modules = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
    ]
    params: dict[str, Param] = {}
    for module in sorted(modules, key=lambda m: (getattr(m, "ORDER", 0), m.__name__)):
        provider = getattr(module, "provide", None)
        if provider is not None:
            params.update(await provider(world))
    return params
