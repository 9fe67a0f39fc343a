"""The portal is installable on its own: no development tool among its imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.nodb

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "portal"
# Development-only packages; `portal.devserver` (`make run`) may import the stand-in lazily.
DEV_ONLY = {"stripe_standin", "localstripe", "aiohttp"}


def _imported_top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_portal_imports_no_development_package() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_top_level_names(path) & DEV_ONLY)
        for path in SOURCE.rglob("*.py")
        if path != SOURCE / "devserver.py"
    }
    assert {path: names for path, names in offenders.items() if names} == {}
