"""Eight clients take the same therapist at the same minute: one booked, seven told "taken".

Each client holds a session of their own, signs in in their own browser and sends
the booking form at the same moment, spread over both server processes. The
bookers of one therapist (and room) queue on the booking's lock, so each loser
meets the winner's committed appointment and is refused with the "taken"
message (409), never a 5xx; the losers' sessions stay available.
"""

from __future__ import annotations

from portal.bookings.tables import Appointment
from portal.payments import service as payments
from portal.sales.tables import Sale, SaleSession
from tests import factories
from tests.races.conftest import Clinic, at_once, describe, local_ten_am
from tests.races.invariants import assert_whole
from tests.servers import Portal, refusal_message

CLIENTS = 8


async def test_clients_taking_one_therapist_at_the_same_minute(
    portal: Portal, clinic: Clinic
) -> None:
    start = local_ten_am(6)
    clients = [clinic.client] + [await factories.make_user("client") for _ in range(CLIENTS - 1)]
    for client in clients:
        await payments.record_in_clinic_sale(
            clinic.as_manager(), client_id=client.id, package_id=clinic.large_package,
            location_id=clinic.location_id, method="cash",
        )  # fmt: skip
    page = (
        f"/appointments/new?location={clinic.location_id}&service={clinic.service_id}"
        f"&therapist={clinic.therapist_id}&day={start.date().isoformat()}"
    )
    forms = []
    for n, client in enumerate(clients):
        browser = await portal.signed_in(client, f"client-{n}")
        fields = await browser.form(page, "/appointments")
        fields.update(
            location=str(clinic.location_id),
            service=str(clinic.service_id),
            therapist=str(clinic.therapist_id),
            start=start.isoformat(),
        )
        forms.append((browser, fields))
    answers = await at_once(
        browser.post("/appointments", fields, process=n)
        for n, (browser, fields) in enumerate(forms)
    )
    everything = describe(answers)
    assert not [a for a in answers if a.status_code >= 500], everything
    booked = [a for a in answers if a.status_code == 303]
    assert len(booked) == 1, f"exactly one booking: {everything}"
    for answer in answers:
        if answer.status_code != 303:
            assert answer.status_code == 409, everything
            assert "taken" in refusal_message(answer.text).lower(), answer.text[:500]
    appointments = (
        await Appointment.select(Appointment.id, Appointment.client)
        .where((Appointment.therapist == clinic.therapist_id) & (Appointment.start_at == start))
        .run()
    )
    assert len(appointments) == 1
    held = (
        await SaleSession.select(SaleSession.sale.client)
        .where((SaleSession.sale.location == clinic.location_id) & (SaleSession.state == "held"))
        .run()
    )
    assert [r["sale.client"] for r in held] == [appointments[0]["client"]]
    sales = await Sale.count().where(Sale.location == clinic.location_id).run()
    assert sales == CLIENTS
    await assert_whole(portal)
