"""Health flags from the client's intake show where staff plan and meet the session: the
schedule (day, week, a therapist's agenda) and the appointment page, with a link to the
intake for those who may read it."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from portal.auth.service import ACCOUNTANT
from portal.bookings import service as bookings
from portal.clients import intake
from portal.clients import service as clients
from portal.staff import hours as h
from tests import factories

NY = ZoneInfo("America/New_York")
FLAG = "Blood thinners (anticoagulants)"


async def _flagged(clinic) -> tuple[int, str]:
    values = {
        "pain_level": "5", "pain_duration": "3_to_12_months", "work_posture": "desk",
        "pressure": "medium", "consent": "on", "goals": "Less pain",
        "health_details": "Warfarin daily", "concerns_other": "", "pain_where": "",
        "pain_worse": "", "pain_better": "", "daily_activities": "", "sports": "",
        "concerns": "", "regions": "", "health_flags": "",
    }  # fmt: skip
    multi = {"concerns": ["neck_shoulder_tension"], "regions": ["neck"],
             "health_flags": ["blood_thinners"]}  # fmt: skip
    await clients.save_intake(
        clinic.as_client(), clinic.client.id, intake.parse_intake(values, multi)
    )
    day = (datetime.now(NY) + timedelta(days=3)).date()
    appointment_id = await bookings.book(
        clinic.as_client(), client_id=clinic.client.id, location_id=clinic.location_id,
        service_id=clinic.service_id, start_at=h.wall_to_utc(day, 10 * 60, NY),
    )  # fmt: skip
    return appointment_id, day.isoformat()


async def test_staff_see_health_flags_on_the_schedule_and_the_appointment(app, clinic):
    appointment_id, day = await _flagged(clinic)
    intake_link = f'href="/clients/{clinic.client.id}/intake"'
    async with factories.make_client(app) as manager:
        await factories.login(manager, clinic.manager)
        for url in (
            f"/appointments/{appointment_id}",
            f"/appointments?location={clinic.location_id}&day={day}",
            f"/locations/{clinic.location_id}/day?date={day}",
            f"/locations/{clinic.location_id}/week?date={day}",
        ):
            page = await manager.get(url)
            assert page.status_code == 200, url
            assert FLAG in page.text and intake_link in page.text, url
    async with factories.make_client(app) as therapist:
        await factories.login(therapist, clinic.therapist_account)
        for url in (f"/appointments/{appointment_id}", "/appointments"):
            page = await therapist.get(url)
            assert page.status_code == 200 and FLAG in page.text, url
            assert intake_link not in page.text  # therapists do not open the intake page
    async with factories.make_client(app) as accountant:
        await factories.login(accountant, await factories.make_user(ACCOUNTANT))
        page = await accountant.get(f"/appointments/{appointment_id}")
        assert page.status_code == 200 and FLAG not in page.text
