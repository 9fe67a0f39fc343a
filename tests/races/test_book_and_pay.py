"""Book and pay, sent at once against two real servers.

* One client sends two book-and-pay forms for the introductory offer (two times)
  at the same moment: one order is started, one time held; the other form is
  told the offer is once per client, and its time is not held.
* Several newcomers pay for the same time at once: one holds it, the others
  are told it was taken; nobody else is left with a pending order.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from portal.bookings.tables import Appointment
from portal.catalog.tables import Package, PackagePrice
from portal.sales.tables import IntroClaim, Sale
from portal.timeutil import utcnow
from tests import factories
from tests.races.conftest import Clinic, at_once, describe, local_ten_am
from tests.races.invariants import assert_whole
from tests.servers import Portal

NEWCOMERS = 4


async def _single(clinic: Clinic, *, introductory: bool) -> int:
    now = utcnow() - timedelta(minutes=5)
    name = f"{'First visit' if introductory else 'Single'} {clinic.slug}"
    package = (
        await Package.insert(
            Package(
                name=name, service=clinic.service_id, sessions=1, validity_days=90,
                sellable_online=True, active=True, introductory=introductory, created_at=now,
            )
        ).returning(Package.id).run()
    )[0]["id"]  # fmt: skip
    await PackagePrice.insert(
        PackagePrice(package=package, amount_cents=6000, currency="USD", effective_from=now)
    ).run()
    return int(package)


def _page(clinic: Clinic, hours: int) -> tuple[str, dict[str, str]]:
    start = (local_ten_am(5) + timedelta(hours=hours)).isoformat()
    query = {"location": str(clinic.location_id), "service": str(clinic.service_id)}
    query["start"] = start
    return "/appointments/checkout?" + urlencode(query), query


async def test_two_introductory_purchases_at_once_start_one(portal: Portal, clinic: Clinic) -> None:
    intro = await _single(clinic, introductory=True)
    browser = await portal.signed_in(clinic.client, "client")
    forms = []
    for hours in (0, 2):
        page, query = _page(clinic, hours)
        fields = await browser.form(page, "/appointments/checkout")
        fields.update(query, package=str(intro))
        forms.append(fields)

    answers = await at_once(
        browser.post("/appointments/checkout", fields, process=n) for n, fields in enumerate(forms)
    )

    everything = describe(answers)
    assert sorted(a.status_code for a in answers) == [303, 409], everything
    [refused] = [a for a in answers if a.status_code == 409]
    assert "once per client" in (factories.field_error(refused.text, "package") or "")
    orders = await Sale.select().where(Sale.client == clinic.client.id).run()
    assert [o["status"] for o in orders] == ["pending"], orders
    claims = await IntroClaim.select().where(IntroClaim.client == clinic.client.id).run()
    assert [c["sale_id"] for c in claims] == [orders[0]["id"]]
    held = await Appointment.select().where(Appointment.client == clinic.client.id).run()
    assert [(h["status"], h["hold_sale"]) for h in held] == [("held", orders[0]["id"])]
    await assert_whole(portal)


async def test_newcomers_paying_for_one_time_at_once_hold_it_once(
    portal: Portal, clinic: Clinic
) -> None:
    single = await _single(clinic, introductory=False)
    page, query = _page(clinic, 1)
    forms = []
    for n in range(NEWCOMERS):
        browser = await portal.signed_in(await factories.make_user("client"), f"newcomer-{n}")
        fields = await browser.form(page, "/appointments/checkout")
        fields.update(query, package=str(single))
        forms.append((browser, fields))

    answers = await at_once(
        browser.post("/appointments/checkout", fields, process=n)
        for n, (browser, fields) in enumerate(forms)
    )

    everything = describe(answers)
    assert not [a for a in answers if a.status_code >= 500], everything
    assert sorted(a.status_code for a in answers) == [303] + [409] * (NEWCOMERS - 1), everything
    for answer in answers:
        if answer.status_code == 409:
            assert "taken a moment ago" in (factories.field_error(answer.text, "start") or "")
    held = await Appointment.select().where(Appointment.location == clinic.location_id).run()
    assert [h["status"] for h in held] == ["held"], held
    orders = await Sale.select().where(Sale.location == clinic.location_id).run()
    assert [o["id"] for o in orders] == [held[0]["hold_sale"]], orders
    await assert_whole(portal)
