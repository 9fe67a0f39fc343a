"""Therapist pages over HTTP: bad input is shown beside the field (422, nothing
saved), past expiry dates are saved with a warning, and each role sees what it may."""

from __future__ import annotations

from portal.audit.tables import AuditLog
from portal.auth.service import ACCOUNTANT, MANAGER, THERAPIST
from portal.staff import service
from portal.staff.tables import Therapist, WorkingHours
from tests import factories
from tests.staff import helpers


async def test_bad_profile_input_is_shown_beside_the_fields(db, locations, manager_client):
    a, _ = locations
    response = await factories.post_form(
        manager_client,
        "/therapists",
        {"name": "", "email": "not-an-email", "phone": "+1 555", "location_ids": [a]},
    )
    assert response.status_code == 422
    assert factories.field_error(response.text, "name") == "Name is required."
    assert "valid email" in (factories.field_error(response.text, "email") or "")
    assert factories.input_value(response.text, "email") == "not-an-email"
    assert factories.input_value(response.text, "phone") == "+1 555"
    assert await Therapist.count().run() == 0


async def test_unknown_services_are_refused(db, locations, manager_client):
    a, _ = locations
    response = await factories.post_form(
        manager_client,
        "/therapists",
        {"name": "Ana Silva", "location_ids": [a], "service_ids": ["999"]},
    )
    assert response.status_code == 422
    assert "Unknown service (999)" in (factories.field_error(response.text, "service_ids") or "")
    assert factories.input_value(response.text, "name") == "Ana Silva"
    assert await Therapist.count().run() == 0


async def test_a_past_expiry_date_is_saved_with_a_visible_warning(db, locations, manager_client):
    a, _ = locations
    massage = await helpers.make_service("Neuromuscular massage, 60 min")
    response = await factories.post_form(
        manager_client,
        "/therapists",
        {
            "name": "Ana Silva",
            "location_ids": [a],
            "service_ids": [massage],
            "licence_expires": "2021-03-31",
            "insurance_expires": "2099-01-01",
        },
    )
    assert response.status_code == 303
    page = await manager_client.get(response.headers["location"])
    assert "flash-warning" in page.text
    assert "The licence expired on 2021-03-31" in page.text
    assert "Expired 2021-03-31" in page.text
    row = await Therapist.select().first().run()
    assert row["name"] == "Ana Silva"
    edit = await manager_client.get(f"/therapists/{row['id']}/edit")
    assert 'id="licence_expires-warning"' in edit.text


async def test_hours_form_refuses_bad_intervals_beside_the_field(db, locations, manager_client):
    a, _ = locations
    t = await helpers.make_therapist(name="Ana Silva", location_ids=[a])
    url = f"/therapists/{t}/hours/{a}"
    assert (await manager_client.get(url)).status_code == 200
    response = await factories.post_form(
        manager_client,
        url,
        {"d0_0_start": "12:00", "d0_0_end": "09:00", "d1_0_start": "09:00", "d1_0_end": "12:00"},
    )
    assert response.status_code == 422
    assert "before the start" in (factories.field_error(response.text, "d0_0_end") or "")
    assert factories.input_value(response.text, "d0_0_start") == "12:00"
    assert factories.input_value(response.text, "d1_0_end") == "12:00"
    assert await WorkingHours.count().run() == 0
    response = await factories.post_form(
        manager_client,
        url,
        {"d0_0_start": "09:00", "d0_0_end": "12:00", "d0_1_start": "13:00", "d0_1_end": "18:00"},
    )
    assert response.status_code == 303
    detail = await manager_client.get(f"/therapists/{t}")
    assert "09:00–12:00, 13:00–18:00" in detail.text


async def test_hours_overlapping_another_location_are_refused_with_its_name(
    db, locations, owner_client
):
    a, _ = locations
    c = await factories.make_location(name="Harlem", slug="harlem", timezone="America/New_York")
    t = await helpers.make_therapist(location_ids=[a, c])
    await helpers.add_hours(t, c, 0, "09:00-12:00")
    response = await factories.post_form(
        owner_client, f"/therapists/{t}/hours/{a}", {"d0_0_start": "11:00", "d0_0_end": "13:00"}
    )
    assert response.status_code == 422
    message = factories.field_error(response.text, "d0_0_start") or ""
    assert "Overlaps Monday 09:00–12:00 at Harlem" in message
    assert await WorkingHours.count().where(WorkingHours.location == a).run() == 0


async def test_managers_see_their_locations_only(db, locations, app, manager_client):
    a, b = locations
    mine = await helpers.make_therapist(name="Mine", location_ids=[a])
    shared = await helpers.make_therapist(name="Shared", location_ids=[a, b])
    theirs = await helpers.make_therapist(name="Theirs", location_ids=[b])
    listing = await manager_client.get("/therapists")
    assert "Mine" in listing.text and "Shared" in listing.text and "Theirs" not in listing.text
    assert (await manager_client.get(f"/therapists/{theirs}")).status_code == 403
    assert (await manager_client.get(f"/therapists/{theirs}/edit")).status_code == 403
    assert (await manager_client.get(f"/therapists/{shared}/edit")).status_code == 200
    # Hours of the shared therapist: at A yes, at B no.
    assert (await manager_client.get(f"/therapists/{shared}/hours/{a}")).status_code == 200
    assert (await manager_client.get(f"/therapists/{shared}/hours/{b}")).status_code == 403
    response = await factories.post_form(
        manager_client,
        f"/therapists/{shared}/hours/{b}",
        {"d0_0_start": "09:00", "d0_0_end": "10:00"},
    )
    assert response.status_code == 403
    # The manager of B sees the shared therapist too, but not A-only ones.
    other = await factories.make_user(MANAGER, location_ids=[b])
    async with factories.make_client(app) as c:
        await factories.login(c, other)
        assert (await c.get(f"/therapists/{shared}")).status_code == 200
        assert (await c.get(f"/therapists/{mine}/edit")).status_code == 403
    filtered = await manager_client.get(f"/therapists?location={a}&q=sha")
    assert "Shared" in filtered.text and "Mine" not in filtered.text


async def test_a_therapist_reads_their_own_profile_and_nothing_else(db, locations, app):
    a, _ = locations
    account = await factories.make_user(THERAPIST, location_ids=[a])
    mine = await helpers.make_therapist(name="Theresa N", location_ids=[a], account=account.id)
    await helpers.add_hours(mine, a, 0, "09:00-12:00")
    colleague = await helpers.make_therapist(location_ids=[a])
    async with factories.make_client(app) as c:
        await factories.login(c, account)
        me = await c.get("/therapists/me")
        assert me.status_code == 200 and "Theresa N" in me.text and "09:00–12:00" in me.text
        assert "Edit hours" not in me.text and "Deactivate" not in me.text
        assert (await c.get(f"/therapists/{mine}")).status_code == 200
        assert (await c.get(f"/therapists/{colleague}")).status_code == 403
        assert (await c.get(f"/therapists/{mine}/edit")).status_code == 403
        assert (await c.get("/therapists")).status_code == 403
        assert (await c.get("/rooms")).status_code == 403


async def test_accountants_and_clients_have_no_access(db, locations, app):
    a, _ = locations
    t = await helpers.make_therapist(location_ids=[a])
    for role in (ACCOUNTANT, "client"):
        account = await factories.make_user(role)
        async with factories.make_client(app) as c:
            await factories.login(c, account)
            for url in ("/therapists", f"/therapists/{t}", "/therapists/compliance", "/rooms"):
                assert (await c.get(url)).status_code == 403, (role, url)


async def test_owner_history_and_deactivation_flow(db, locations, owner_client):
    a, _ = locations
    t = await helpers.make_therapist(name="Ana Silva", location_ids=[a])
    await factories.post_form(
        owner_client,
        f"/therapists/{t}/edit",
        {"name": "Ana Silva-Lopes", "location_ids": [a], "licence_expires": "2099-01-01"},
    )
    confirm = await owner_client.get(f"/therapists/{t}/deactivate")
    assert confirm.status_code == 200 and "Deactivate Ana Silva-Lopes?" in confirm.text
    done = await factories.post_form(owner_client, f"/therapists/{t}/deactivate", {})
    assert done.status_code == 303
    assert (await Therapist.select(Therapist.active).where(Therapist.id == t).first().run())[
        "active"
    ] is False
    history = await owner_client.get(f"/therapists/{t}/history")
    assert history.status_code == 200
    assert "Ana Silva-Lopes" in history.text and "deactivate" in history.text
    assert await AuditLog.count().where(AuditLog.entity == "therapist").run() == 2


async def test_time_off_form(db, locations, manager_client):
    a, _ = locations
    t = await helpers.make_therapist(location_ids=[a])
    bad = await factories.post_form(
        manager_client,
        f"/therapists/{t}/time-off",
        {"location_id": a, "start_date": "2026-12-10", "end_date": "2026-12-08", "reason": "Trip"},
    )
    assert bad.status_code == 422
    assert "before the first day" in (factories.field_error(bad.text, "end_date") or "")
    assert factories.input_value(bad.text, "reason") == "Trip"
    good = await factories.post_form(
        manager_client,
        f"/therapists/{t}/time-off",
        {"location_id": a, "start_date": "2026-12-10", "end_date": "2026-12-12", "reason": "Trip"},
    )
    assert good.status_code == 303
    [row] = await service.list_time_off(t)
    page = await manager_client.get(f"/therapists/{t}/time-off/{row['id']}/remove")
    assert "2026-12-10 to 2026-12-12 (whole days, America/New_York)" in page.text


async def test_photo_upload_and_placeholder(db, locations, manager_client):
    a, _ = locations
    t = await helpers.make_therapist(name="Ana Silva", location_ids=[a])
    placeholder = await manager_client.get(f"/therapists/{t}/photo")
    assert placeholder.headers["content-type"].startswith("image/svg+xml")
    assert ">AS</text>" in placeholder.text
    token = await factories.csrf_token(manager_client)
    bad = await manager_client.post(
        f"/therapists/{t}/photo",
        data={"_csrf_token": token},
        files={"photo": ("x.svg", b"<svg onload=alert(1)></svg>", "image/png")},
    )
    assert bad.status_code == 422
    assert "JPEG, PNG or WebP" in (factories.field_error(bad.text, "photo") or "")
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    good = await manager_client.post(
        f"/therapists/{t}/photo",
        data={"_csrf_token": token},
        files={"photo": ("me.png", png, "image/png")},
    )
    assert good.status_code == 303
    served = await manager_client.get(f"/therapists/{t}/photo")
    assert served.headers["content-type"] == "image/png" and served.content == png
    assert served.headers["x-content-type-options"] == "nosniff"


async def test_compliance_page(db, locations, manager_client):
    a, _ = locations
    await helpers.make_therapist(name="Lapsed Licence", location_ids=[a], licence_expires=None)
    page = await manager_client.get("/therapists/compliance")
    assert page.status_code == 200
    assert "Alpha Clinic" in page.text and "Beta Clinic" not in page.text
    assert "Lapsed Licence" in page.text and "Not on file" in page.text


async def test_hours_form_reports_every_error_at_once(db, locations, owner_client):
    a, _ = locations
    c = await factories.make_location(name="Harlem", slug="harlem", timezone="America/New_York")
    t = await helpers.make_therapist(location_ids=[a, c])
    await helpers.add_hours(t, c, 2, "09:00-12:00")
    response = await factories.post_form(
        owner_client,
        f"/therapists/{t}/hours/{a}",
        {
            "d0_0_start": "9am", "d0_0_end": "12:00",  # not a time
            "d1_0_start": "12:00", "d1_0_end": "09:00",  # ends before it starts
            "d2_0_start": "11:00", "d2_0_end": "13:00",  # overlaps Harlem's Wednesday
            "d3_0_start": "09:00", "d3_0_end": "",  # half filled
        },
    )  # fmt: skip
    assert response.status_code == 422
    assert "such as 09:00" in (factories.field_error(response.text, "d0_0_start") or "")
    assert "before the start" in (factories.field_error(response.text, "d1_0_end") or "")
    assert "at Harlem" in (factories.field_error(response.text, "d2_0_start") or "")
    assert "end time" in (factories.field_error(response.text, "d3_0_end") or "")
    assert await WorkingHours.count().where(WorkingHours.location == a).run() == 0


async def test_a_day_copied_to_the_other_weekdays_is_shown_then_saved(
    db, locations, manager_client
):
    a, _ = locations
    t = await helpers.make_therapist(location_ids=[a])
    url = f"/therapists/{t}/hours/{a}"
    monday = {
        "d0_0_start": "09:00",
        "d0_0_end": "12:00",
        "d0_1_start": "13:00",
        "d0_1_end": "17:30",
    }
    copied = await factories.post_form(
        manager_client,
        url,
        {**monday, "d2_0_start": "08:00", "d2_0_end": "10:00", "d5_0_start": "10:00",
         "d5_0_end": "14:00", "copy_from": "0"},
    )  # fmt: skip
    assert copied.status_code == 200
    assert "copied to Tuesday, Wednesday, Thursday, Friday" in copied.text
    for day in range(1, 5):
        assert factories.input_value(copied.text, f"d{day}_0_start") == "09:00"
        assert factories.input_value(copied.text, f"d{day}_1_end") == "17:30"
    assert factories.input_value(copied.text, "d5_0_start") == "10:00"  # Saturday kept
    assert await WorkingHours.count().run() == 0  # nothing saved until "Save hours"

    form = {
        k: factories.input_value(copied.text, k) or ""
        for k in (
            f"d{d}_{n}_{part}" for d in range(7) for n in range(3) for part in ("start", "end")
        )
    }
    saved = await factories.post_form(manager_client, url, form)
    assert saved.status_code == 303
    rows = await WorkingHours.select().where(WorkingHours.therapist == t).run()
    assert sorted((r["weekday"], r["start_minute"], r["end_minute"]) for r in rows) == sorted(
        [(d, 540, 720) for d in range(5)] + [(d, 780, 1050) for d in range(5)] + [(5, 600, 840)]
    )
