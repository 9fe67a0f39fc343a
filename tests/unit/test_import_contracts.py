"""The import contracts in pyproject.toml hold, cover every module, and bite.

Each "bites" test copies the package into a temporary folder, adds one import
that breaks one contract, and runs ``lint-imports`` on the copy (first on
``PYTHONPATH``, so it is the ``portal`` that import-linter reads): the contract
must be reported broken. The real tree must keep every contract.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.nodb

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "portal"
CONFIG = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
# The HTTP edge: modules that may use Litestar and portal.web.
EDGE = {"portal.app", "portal.asgi", "portal.devserver", "portal.cli", "portal.reports.closing"}


def _contracts() -> dict[str, dict[str, object]]:
    config = tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def _lint(src: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    args = [str(LINT_IMPORTS), str(CONFIG), "--no-cache", "--no-logo"]
    for contract in contracts:
        args += ["--contract", contract]
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=src, timeout=60)


@pytest.fixture(scope="module")
def copy_of_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine copy of src/portal; each test adds its violation to its own copy."""
    src = tmp_path_factory.mktemp("pristine")
    shutil.copytree(
        PACKAGE,
        src / "portal",
        ignore=shutil.ignore_patterns("__pycache__", "static", "data"),
    )
    return src


def _with(copy_of_package: Path, tmp_path: Path, module: str, line: str) -> Path:
    src = tmp_path / "src"
    shutil.copytree(copy_of_package, src)
    path = src.joinpath(*module.split(".")).with_suffix(".py")
    path.write_text(path.read_text() + f"\n{line}\n")
    return src


def test_the_tree_keeps_every_contract() -> None:
    result = _lint(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_module_below_the_edge_is_held_by_the_no_http_contract() -> None:
    """A new service module is covered as soon as it exists, or this test names it."""
    sources = _contracts()["no-http-below-the-edge"]["source_modules"]
    assert isinstance(sources, list)
    loose = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        if len(parts) < 2 or parts[1] == "web" or name in EDGE or parts[-1] == "controllers":
            continue
        if len(parts) == 2 and (PACKAGE / parts[1]).is_dir():
            continue  # a context package's __init__
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in sources):
            loose.append(name)
    assert loose == [], f"add these to the no-http contract (or to the edge): {loose}"


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # A service reaching for the framework, directly or through portal.web.
        ("portal.ledger.service", "import litestar.exceptions", "no-http-below-the-edge"),
        ("portal.sales.service", "from portal.web import guards", "no-http-below-the-edge"),
        (
            "portal.bookings.listing",
            "from portal.rooms import controllers",
            "no-http-below-the-edge",
        ),
        # The errors module importing a framework.
        ("portal.errors", "from litestar import Response", "framework-free-core"),
        # A table importing its own context's service.
        ("portal.rooms.tables", "from portal.rooms import service", "context-layers"),
        # A package cycle coming back: locations -> auth -> locations.
        ("portal.locations.tables", "from portal.auth import tables", "no-cycles"),
        # web -> auth while auth's controllers import web.
        ("portal.web.guards", "from portal.auth import service", "no-cycles"),
        # The module cycle inside payments coming back.
        ("portal.payments.service", "from portal.payments import payouts", "no-cycles"),
    ],
)
def test_a_violation_breaks_its_contract(
    copy_of_package: Path, tmp_path: Path, module: str, line: str, contract: str
) -> None:
    src = _with(copy_of_package, tmp_path, module, line)
    result = _lint(src, contract)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout, result.stdout + result.stderr
