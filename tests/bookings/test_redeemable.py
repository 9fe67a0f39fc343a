"""A package's sessions are booked where its rule allows (only at the clinic that sold it,
or at every clinic), and the catalog, the receipt and the booking page say the same."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from portal.bookings import service as bookings
from portal.bookings.credits import NoCredit
from portal.catalog import inputs
from portal.errors import Invalid
from portal.locations.tables import Location
from portal.rooms.tables import Room
from portal.sales import service as sales
from portal.sales.tables import Sale
from portal.staff import hours as h
from portal.timeutil import utcnow
from tests import factories
from tests.bookings.conftest import add_therapist

LA = ZoneInfo("America/Los_Angeles")


async def _rule(sale_id: int, rule: str) -> None:
    await Sale.update({Sale.redeemable: rule}).where(Sale.id == sale_id).run()


async def test_a_package_of_this_clinic_only_is_refused_elsewhere_with_a_clear_message(app, clinic):
    other = clinic.other_location_id
    await add_therapist("Sam", other, clinic.service_id)
    now = utcnow()
    await Room.insert(
        Room(location=other, name="West", active=True, created_at=now, updated_at=now)
    ).run()
    sold_at = (await Location.select(Location.name).where(Location.id == clinic.location_id)
               .first().run())["name"]  # fmt: skip
    start = h.wall_to_utc((datetime.now(LA) + timedelta(days=5)).date(), 11 * 60, LA)
    booking = {
        "client_id": clinic.client.id, "location_id": other,
        "service_id": clinic.service_id, "start_at": start,
    }  # fmt: skip
    await _rule(clinic.sale_id, inputs.SELLING_CLINIC)
    with pytest.raises(NoCredit) as refused:
        await bookings.book(clinic.as_client(), **booking)
    assert str(refused.value) == (
        f"Your package “5 × 60” cannot be used here. Sessions can be booked only at {sold_at}."
    )
    # At every clinic: the same booking goes through.
    await _rule(clinic.sale_id, inputs.ALL_CLINICS)
    assert await bookings.book(clinic.as_client(), **booking)


async def test_the_rule_is_stated_the_same_on_the_booking_page_and_the_receipt(app, clinic):
    await _rule(clinic.sale_id, inputs.SELLING_CLINIC)
    name = (await Location.select(Location.name).where(Location.id == clinic.location_id)
            .first().run())["name"]  # fmt: skip
    wording = inputs.redeemable_text(inputs.SELLING_CLINIC, name)
    assert wording == f"Sessions can be booked only at {name}."
    async with factories.make_client(app) as client:
        await factories.login(client, clinic.client)
        page = await client.get(
            f"/appointments/new?location={clinic.location_id}&service={clinic.service_id}"
        )
        assert page.status_code == 200 and wording in page.text
        receipt = await client.get(f"/sales/{clinic.sale_id}/receipt")
        assert receipt.status_code == 200 and wording in receipt.text
        assert "redeemable at" not in receipt.text


@pytest.mark.nodb
def test_the_rule_is_a_package_field_kept_on_each_sale():
    values = {"name": "Five", "description": "", "validity_days": "90", "redeemable": "moon"}
    with pytest.raises(Invalid) as refused:
        inputs.parse_package_form(values, creating=False)
    assert refused.value.errors == {"redeemable": "Choose where the sessions can be booked."}
    data, _ = inputs.parse_package_form({**values, "redeemable": "selling_clinic"}, creating=False)
    assert data.as_dict()["redeemable"] == inputs.SELLING_CLINIC
    assert "redeemable" in sales._FROZEN_TERMS  # a sale keeps the rule it was sold under
