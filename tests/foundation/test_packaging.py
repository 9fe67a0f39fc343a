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


def test_every_template_file_is_package_data() -> None:
    # pyproject.toml ships templates/ as portal.templates with these patterns only.
    shipped = {".html", ".txt"}
    templates = ROOT / "templates"
    stray = [
        str(path.relative_to(ROOT))
        for path in templates.rglob("*")
        if path.is_file()
        and path.suffix not in shipped
        and path != templates / "__init__.py"
        and "__pycache__" not in path.parts
    ]
    assert stray == []


def test_templates_and_migrations_are_found_as_package_resources(tmp_path: Path) -> None:
    from portal.piccolo_app import APP_CONFIG
    from portal.settings import Settings, package_path

    settings = Settings.from_env({"PORTAL_VAR_DIR": str(tmp_path)})
    assert (settings.templates_dir / "base.html").is_file()
    assert settings.templates_dir == package_path("portal.templates")
    migrations = Path(APP_CONFIG.migrations_folder_path)
    assert migrations == package_path("portal.migrations")
    assert any(migrations.glob("portal_*.py"))


def test_an_installed_portal_keeps_its_data_under_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portal import settings

    assert settings.default_var_dir() == ROOT / "var"  # this checkout's
    monkeypatch.setattr(settings, "_IN_CHECKOUT", False)
    monkeypatch.chdir(tmp_path)
    assert settings.default_var_dir() == tmp_path / "var"
    env = {"SECRET_KEY": "k" * 40}
    assert (
        settings.Settings.from_env(env).database_url == f"sqlite:///{tmp_path}/var/portal.sqlite3"
    )
