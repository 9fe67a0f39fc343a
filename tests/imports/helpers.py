"""Running imports in tests: a London clinic, the mapping guessed from the file."""

from __future__ import annotations

from pathlib import Path

from portal.auth.service import OWNER, CurrentUser
from portal.imports import reading
from portal.imports import service as imports
from portal.imports.layouts import LAYOUTS, guess_mapping
from portal.ledger import service as ledger
from tests import factories
from tests.catalog.helpers import make_service

FILES = Path(__file__).parent / "files"


def owner_actor(user_id: int = 1) -> CurrentUser:
    return CurrentUser(
        id=user_id, email="owner@example.test", name="Owner", role=OWNER, location_ids=frozenset()
    )


async def london() -> int:
    return await factories.make_location(
        name="London", slug="london", timezone="Europe/London", currency="GBP"
    )


async def massage() -> int:
    return await make_service("Massage", currency="GBP")


async def run(kind: str, path: Path | str, location_id: int, **options) -> imports.Summary:
    sheet = reading.open_sheet(path)
    mapping = options.pop("mapping", None) or guess_mapping(LAYOUTS[kind], sheet.headers)
    return await imports.run_import(
        kind, sheet, location_id=location_id, mapping=mapping, actor=owner_actor(), **options
    )


def dies_at(monkeypatch, importer: type, call: int, error: str = "the worker died") -> None:
    """The ``importer``'s run stops (``RuntimeError``) at its ``call``-th chunk, as when
    its process is killed; ``monkeypatch.undo`` ends that."""
    original, calls = importer.chunk, 0

    async def dying(self, rows, batch_id):
        nonlocal calls
        calls += 1
        if calls == call:
            raise RuntimeError(error)
        return await original(self, rows, batch_id)

    monkeypatch.setattr(importer, "chunk", dying)


async def deferred(location_id: int) -> int:
    return await ledger.balance("deferred_revenue", location_id=location_id)


async def outstanding_credit_value(location_id: int) -> int:
    from portal.sales.tables import SaleSession

    rows = (
        await SaleSession.select(SaleSession.value_cents)
        .where((SaleSession.state == "available") & (SaleSession.sale.location == location_id))
        .run()
    )
    return sum(int(r["value_cents"]) for r in rows)


__all__ = ["FILES", "deferred", "dies_at", "london", "massage", "outstanding_credit_value", "run"]
