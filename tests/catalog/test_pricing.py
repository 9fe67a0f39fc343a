"""Price versions: which one is in effect when, overrides per location, and the sale snapshot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from portal.catalog import service
from portal.catalog.service import PriceVersion, select_price
from portal.catalog.tables import PackagePrice, ServicePrice
from portal.errors import Invalid
from portal.locations.tables import Location
from portal.timeutil import utcnow
from tests import factories
from tests.catalog.helpers import actor, add_price, add_service_price, make_package, make_service

T = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)


# -- the selection rule on its own (no database) --------------------------------------


def _v(
    id: int,
    amount: int,
    at: datetime,
    location: int | None = None,
    currency: str = "USD",
    clears: bool = False,
) -> PriceVersion:
    return PriceVersion(
        id=id,
        owner_id=1,
        location_id=location,
        amount_cents=amount,
        currency=currency,
        effective_from=at,
        clears_override=clears,
    )


def test_selection_boundaries_without_database() -> None:
    versions = [_v(1, 100, T - timedelta(days=30)), _v(2, 200, T)]
    assert select_price(versions, T - timedelta(days=31)) is None
    assert select_price(versions, T - TICK).amount_cents == 100
    assert select_price(versions, T).amount_cents == 200
    # Two versions from the same instant: the later row wins (a correction).
    versions.append(_v(3, 250, T))
    assert select_price(versions, T).amount_cents == 250
    # An override of location 7 applies only there, and only once in effect.
    versions.append(_v(4, 300, T + timedelta(hours=1), location=7))
    assert select_price(versions, T + timedelta(hours=2)).amount_cents == 250
    assert select_price(versions, T + timedelta(hours=2), 8).amount_cents == 250
    assert select_price(versions, T + timedelta(hours=1) - TICK, 7).amount_cents == 250
    assert select_price(versions, T + timedelta(hours=1), 7).amount_cents == 300
    # Ending the override returns to the base from that instant.
    versions.append(_v(5, 0, T + timedelta(days=1), location=7, clears=True))
    assert select_price(versions, T + timedelta(days=1) - TICK, 7).amount_cents == 300
    assert select_price(versions, T + timedelta(days=1), 7).amount_cents == 250
    # An override in another currency than the location's is passed over.
    assert select_price(versions, T + timedelta(hours=2), 7, "EUR").amount_cents == 250


# -- the same rule against both databases ---------------------------------------------


async def test_price_in_effect_at_boundaries(db) -> None:
    a = await factories.make_location(slug="a")
    b = await factories.make_location(slug="b")
    package = await make_package(await make_service(), price=None)
    await add_price(package, 50000, T - timedelta(days=30))
    await add_price(package, 54000, T)
    await add_price(package, 56500, T + timedelta(days=10), location=a)
    await add_price(package, 58000, T + timedelta(days=20), location=a)

    async def price(at: datetime, location: int | None = None) -> int | None:
        version = await service.price_in_effect(package, at, location)
        return version.amount_cents if version else None

    assert await price(T - timedelta(days=30) - TICK) is None
    assert await price(T - timedelta(days=30)) == 50000
    assert await price(T - TICK) == 50000
    assert await price(T) == 54000
    assert await price(T + timedelta(days=365)) == 54000  # base ignores overrides
    assert await price(T + timedelta(days=10) - TICK, a) == 54000
    assert await price(T + timedelta(days=10), a) == 56500
    assert await price(T + timedelta(days=20) - TICK, a) == 56500
    assert await price(T + timedelta(days=20), a) == 58000
    assert await price(T + timedelta(days=20), b) == 54000  # B has no override
    # A correction from the same instant supersedes the earlier row.
    await add_price(package, 55000, T)
    assert await price(T) == 55000
    # The location's override ends: back to the base.
    await add_price(package, 0, T + timedelta(days=30), location=a, clears=True)
    assert await price(T + timedelta(days=30), a) == 55000


async def test_overrides_are_per_location_and_per_currency(db) -> None:
    usd = await factories.make_location(slug="usd-clinic")
    eur = await factories.make_location(slug="eur-clinic", currency="EUR")
    svc = await make_service(price=12000)
    package = await make_package(svc, price=54000)
    at = utcnow()
    # Without a euro price the EUR clinic does not sell it.
    _, offers = await service.package_offers(actor(), package, at)
    by_slug = {o.location["slug"]: o for o in offers}
    assert by_slug["usd-clinic"].available and by_slug["usd-clinic"].price.amount_cents == 54000
    assert not by_slug["eur-clinic"].available
    assert "EUR" in by_slug["eur-clinic"].reason
    with pytest.raises(service.NotAvailable):
        await service.quote_package(package, eur, at)
    # A euro override makes it sellable there, without touching the USD clinic.
    await add_price(package, 49900, at - timedelta(seconds=1), location=eur, currency="EUR")
    terms = await service.quote_package(package, eur, at)
    assert (terms.currency, terms.price_cents, terms.price_is_override) == ("EUR", 49900, True)
    # The list price is in USD: no saving can be computed in euros.
    assert terms.unit_list_price_cents is None
    usd_terms = await service.quote_package(package, usd, at)
    assert (usd_terms.currency, usd_terms.price_cents) == ("USD", 54000)
    assert usd_terms.unit_list_price_cents == 12000
    # The clinic switches to GBP: its euro override no longer applies.
    await Location.update({Location.currency: "GBP"}).where(Location.id == eur).run()
    with pytest.raises(service.NotAvailable, match="GBP"):
        await service.quote_package(package, eur, at)


async def test_quote_splits_and_taxes_exactly(db) -> None:
    austin = await factories.make_location(slug="austin", tax_rate_bp=825)
    london = await factories.make_location(
        slug="london", currency="GBP", tax_rate_bp=2000, prices_include_tax=True
    )
    svc = await make_service(price=12000)
    package = await make_package(svc, sessions=3, price=34200, validity_days=90)
    at = utcnow()
    terms = await service.quote_package(package, austin, at)
    assert (terms.net_cents, terms.tax_cents, terms.total_cents) == (34200, 2822, 37022)
    assert terms.session_values == (11400, 11400, 11400)
    assert terms.session_totals == (12341, 12341, 12340)
    assert sum(terms.session_totals) == terms.total_cents
    assert (terms.sessions, terms.validity_days, terms.tax_rate_bp) == (3, 90, 825)
    assert terms.unit_list_price_cents == 12000
    # Tax included (20 % VAT): the price is the total.
    await add_price(package, 10000, at - timedelta(seconds=1), location=london, currency="GBP")
    vat = await service.quote_package(package, london, at)
    assert (vat.net_cents, vat.tax_cents, vat.total_cents) == (8333, 1667, 10000)
    assert vat.session_values == (2778, 2778, 2777)
    assert sum(vat.session_values) == vat.net_cents
    assert vat.prices_include_tax


async def test_a_price_change_after_a_sale_changes_nothing_of_it(db) -> None:
    """A sale keeps the quote's snapshot; later versions never touch it or its rows."""
    location = await factories.make_location(slug="portland", tax_rate_bp=825)
    owner = await factories.make_user("owner")
    svc = await make_service(price=12000)
    package = await make_package(svc, sessions=5, price=54000)
    sold_at = utcnow()
    snapshot = await service.quote_package(package, location, sold_at)
    kept = snapshot.as_dict()
    version_rows = await PackagePrice.select().order_by(PackagePrice.id).run()

    # The owner raises the base price and the list price, and adds an override.
    owner_actor = actor(owner.id)
    await service.add_package_price(
        owner_actor, package, service.PriceInput(amount_cents=59000, currency="USD")
    )
    await service.add_service_price(
        owner_actor, svc, service.PriceInput(amount_cents=13000, currency="USD")
    )
    await service.set_override(
        owner_actor, package, location, service.PriceInput(amount_cents=61000, currency="USD")
    )
    await service.update_package(
        owner_actor,
        package,
        service.PackageInput(
            name="Renamed", description="", validity_days=30, sellable_online=True
        ),
    )

    # The snapshot is unchanged, and quoting at the time of sale gives it again
    # (except the name, which is not a price term and was renamed).
    assert snapshot.as_dict() == kept
    again = await service.quote_package(package, location, sold_at)
    assert again.price_version_id == snapshot.price_version_id
    assert (again.price_cents, again.tax_cents, again.session_values) == (
        snapshot.price_cents,
        snapshot.tax_cents,
        snapshot.session_values,
    )
    assert again.unit_list_price_cents == 12000
    # A sale now gets the new terms.
    now_terms = await service.quote_package(package, location, utcnow())
    assert now_terms.price_cents == 61000 and now_terms.price_is_override
    assert now_terms.validity_days == 30 and snapshot.validity_days == 180
    assert now_terms.unit_list_price_cents == 13000
    # The old version rows are untouched: versions are only ever added.
    rows_after = await PackagePrice.select().order_by(PackagePrice.id).run()
    assert rows_after[: len(version_rows)] == version_rows
    assert len(rows_after) == len(version_rows) + 2


async def test_version_rows_are_append_only_in_the_database(db) -> None:
    svc = await make_service(price=12000)
    package = await make_package(svc, price=54000)
    with pytest.raises(Exception, match="append-only"):
        await (
            PackagePrice.update({PackagePrice.amount_cents: 1})
            .where(PackagePrice.package == package)
            .run()
        )
    with pytest.raises(Exception, match="append-only"):
        await PackagePrice.delete().where(PackagePrice.package == package).run()
    with pytest.raises(Exception, match="append-only"):
        await (
            ServicePrice.update({ServicePrice.amount_cents: 1})
            .where(ServicePrice.service == svc)
            .run()
        )
    assert (await PackagePrice.select().first().run())["amount_cents"] == 54000


async def test_quote_refuses_what_is_not_for_sale(db) -> None:
    location = await factories.make_location(slug="x")
    svc = await make_service()
    offline = await make_package(svc, online=False)
    inactive = await make_package(svc, active=False)
    unpriced = await make_package(svc, price=None)
    at = utcnow()
    assert (await service.quote_package(offline, location, at)).price_cents == 54000
    with pytest.raises(service.NotAvailable, match="online"):
        await service.quote_package(offline, location, at, online=True)
    with pytest.raises(service.NotAvailable, match="inactive"):
        await service.quote_package(inactive, location, at)
    with pytest.raises(service.NotAvailable, match="No price"):
        await service.quote_package(unpriced, location, at)
    # A price scheduled for later is not in effect yet.
    await add_price(unpriced, 40000, at + timedelta(days=1))
    with pytest.raises(service.NotAvailable):
        await service.quote_package(unpriced, location, at)
    assert (
        await service.quote_package(unpriced, location, at + timedelta(days=1))
    ).price_cents == 40000


async def test_service_list_price_versions(db) -> None:
    svc = await make_service(price=None)
    await add_service_price(svc, 11000, T - timedelta(days=365))
    await add_service_price(svc, 12000, T)
    assert (await service.service_price_in_effect(svc, T - TICK)).amount_cents == 11000
    assert (await service.service_price_in_effect(svc, T)).amount_cents == 12000
    assert await service.service_price_in_effect(svc, T - timedelta(days=366)) is None


async def test_only_a_one_session_package_becomes_an_introductory_offer(db) -> None:
    owner_actor = actor()
    svc = await make_service(price=12000)
    five = await make_package(svc, price=54000)
    with pytest.raises(Invalid) as refused:
        await service.update_package(
            owner_actor,
            five,
            service.PackageInput(
                name="Five", description="", validity_days=30, sellable_online=True,
                introductory=True,
            ),
        )  # fmt: skip
    assert "single session" in refused.value.errors["introductory"]
    assert not (await service.get_package(five))["introductory"]
