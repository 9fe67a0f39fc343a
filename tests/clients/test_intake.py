"""The intake: validation, versions kept, who reads it, the shared regions list."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

import pytest

from portal.audit.tables import AuditLog
from portal.auth.service import CurrentUser
from portal.clients import intake, regions, service
from portal.clients.tables import ClientIntake, ClientProfile
from portal.web.forms import ValidationFailed
from tests import factories

FORM = {
    "concerns": ["neck_shoulder_tension", "tension_headaches"],
    "concerns_other": "",
    "pain_where": "Right side of the neck, into the temple",
    "pain_duration": "3_to_12_months",
    "pain_worse": "Laptop work",
    "pain_better": "Heat",
    "pain_level": "6",
    "regions": ["neck", "upper_trapezius", "suboccipitals"],
    "work_posture": "desk",
    "daily_activities": "Designer, 8 hours at a screen",
    "sports": "Yoga weekly",
    "goals": "Fewer headaches",
    "health_flags": [],
    "health_details": "",
    "pressure": "medium",
    "consent": "on",
}


def _parse(**change):
    data = {**FORM, **change}
    values = {k: (v[-1] if isinstance(v, list) and v else v) for k, v in data.items()}
    values = {k: ("" if isinstance(v, list) else v) for k, v in values.items()}
    multi = {k: (v if isinstance(v, list) else [v]) for k, v in data.items()}
    return intake.parse_intake(values, multi)


@pytest.mark.nodb
@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"pain_level": "11"}, "pain_level", "0 (none) to 10"),
        ({"pain_level": "-1"}, "pain_level", "0 (none) to 10"),
        ({"pain_level": "seven"}, "pain_level", "whole number"),
        ({"pain_level": ""}, "pain_level", "Rate your pain"),
        ({"regions": ["neck", "left_wing"]}, "regions", "from the list"),
        ({"concerns": ["alien_abduction"]}, "concerns", "from the list"),
        ({"concerns": [], "concerns_other": ""}, "concerns", "at least one"),
        ({"consent": ""}, "consent", "consent is needed"),
        ({"health_flags": ["pregnancy"], "health_details": ""}, "health_details", "more"),
        ({"health_flags": ["broken_heart"]}, "health_flags", "from the list"),
        ({"pressure": "crushing"}, "pressure", "from the list"),
        ({"pressure": ""}, "pressure", "from the list"),
        ({"pain_duration": "forever"}, "pain_duration", "from the list"),
        ({"goals": "x" * 2001}, "goals", "at most 2000"),
    ],
)
def test_bad_intake_answers_are_refused_per_field(change, field, message):
    with pytest.raises(ValidationFailed) as caught:
        _parse(**change)
    assert field in caught.value.errors, caught.value.errors
    assert message in caught.value.errors[field]


@pytest.mark.nodb
def test_a_good_intake_parses_to_codes():
    parsed = _parse(concerns=[], concerns_other="Jaw clenching", pain_level="0")
    assert parsed.concerns == [] and parsed.concerns_other == "Jaw clenching"
    assert parsed.pain_level == 0
    assert parsed.regions == ["neck", "upper_trapezius", "suboccipitals"]
    full = _parse(health_flags=["pregnancy", "pregnancy"], health_details="Week 20")
    assert full.health_flags == ["pregnancy"]


@pytest.mark.nodb
def test_the_regions_list_holds_every_trigger_point_region_and_general_areas():
    muscles = {r.label for r in regions.REGIONS if r.group == regions.MUSCLE}
    assert {
        "Upper trapezius",
        "Levator scapulae",
        "Suboccipitals",
        "Sternocleidomastoid",
        "Scalenes",
        "Rhomboids",
        "Infraspinatus",
        "Supraspinatus",
        "Pectoralis minor",
        "Forearm extensors",
        "Forearm flexors",
        "Quadratus lumborum",
        "Iliopsoas",
        "Gluteus medius",
        "Gluteus minimus",
        "Piriformis",
        "Hamstrings",
        "Gastrocnemius / soleus",
    } == muscles
    general = {r.code for r in regions.REGIONS if r.group == regions.GENERAL}
    assert {"neck", "upper_back", "lower_back", "shoulders", "hips"} <= general
    assert len(regions.CODES) == len(regions.REGIONS)
    assert all(r.referral for r in regions.REGIONS if r.group == regions.MUSCLE)
    assert regions.label("retired_code") == "retired_code"


@asynccontextmanager
async def _client_session(app, **kwargs):
    account = await factories.make_user("client", **kwargs)
    async with factories.make_client(app) as http:
        await factories.login(http, account)
        yield account, http


async def test_a_client_fills_in_and_updates_the_intake_and_every_version_is_kept(app, db):
    async with _client_session(app) as (account, http):
        empty = await http.get("/account/intake")
        assert empty.status_code == 200
        assert "Fill in the intake form" in empty.text
        form = await http.get("/account/intake/edit")
        assert form.status_code == 200
        for region in regions.REGIONS:
            assert f'value="{region.code}"' in form.text
        assert 'for="regions-piriformis"' in form.text

        saved = await factories.post_form(http, "/account/intake/edit", FORM)
        assert saved.status_code == 303 and saved.headers["location"] == "/account/intake"
        second = {**FORM, "pain_level": "3", "regions": ["neck"], "goals": "Turn my head"}
        saved = await factories.post_form(http, "/account/intake/edit", second)
        assert saved.status_code == 303

        rows = await ClientIntake.select().order_by(ClientIntake.version).run()
        assert [(r["client"], r["version"], r["pain_level"]) for r in rows] == [
            (account.id, 1, 6),
            (account.id, 2, 3),
        ]
        assert json.loads(rows[0]["regions"]) == ["neck", "upper_trapezius", "suboccipitals"]
        assert rows[0]["consent_at"] is not None

        page = await http.get("/account/intake")
        assert "Version 2" in page.text and "Turn my head" in page.text
        assert 'href="/account/intake?version=1"' in page.text
        assert "updated (version 2)" in page.text
        old = await http.get("/account/intake?version=1")
        assert old.status_code == 200
        assert "Fewer headaches" in old.text and "Upper trapezius" in old.text
        assert "the current one is version 2" in old.text
        assert (await http.get("/account/intake?version=9")).status_code == 404
        # The form starts from the current version; consent is asked again.
        again = await http.get("/account/intake/edit")
        assert "Turn my head" in again.text
        assert 'id="consent" name="consent" checked' not in again.text

        account_page = await http.get("/account")
        assert "Version 2" in account_page.text
    audits = await AuditLog.select().where(AuditLog.action == "intake").run()
    assert len(audits) == 2
    # The audit trail records that a version was saved, not the health answers.
    assert "neck" not in audits[0]["after"] and "intake_version" in audits[0]["after"]


async def test_bad_intake_input_is_shown_beside_fields_kept_and_not_saved(app, db):
    async with _client_session(app) as (_, http):
        bad = {
            **FORM,
            "pain_level": "12",
            "regions": ["neck", "tail"],
            "consent": "",
            "goals": "Keep this text",
        }
        response = await factories.post_form(http, "/account/intake/edit", bad)
        assert response.status_code == 422
        assert "0 (none) to 10" in factories.field_error(response.text, "pain_level")
        assert "from the list" in factories.field_error(response.text, "regions")
        assert "consent" in factories.field_error(response.text, "consent")
        assert factories.input_value(response.text, "pain_level") == "12"
        assert "Keep this text" in response.text
        assert 'value="neck" checked' in response.text
        assert 'value="tension_headaches" checked' in response.text
        assert 'value="medium" checked' in response.text
    assert await ClientIntake.count().run() == 0


async def test_staff_read_intake_accountants_and_therapists_never(app, db, locations):
    async with _client_session(app) as (client_account, http):
        await factories.post_form(http, "/account/intake/edit", FORM)
        # A client cannot open the staff pages, not even for themselves.
        assert (await http.get(f"/clients/{client_account.id}/intake")).status_code == 403
    # A client of location B (their preferred location): B's managers read them, A's do not.
    await (
        ClientProfile.update({ClientProfile.preferred_location: locations[1]})
        .where(ClientProfile.user == client_account.id)
        .run()
    )
    if not await ClientProfile.exists().where(ClientProfile.user == client_account.id).run():
        await ClientProfile.insert(
            ClientProfile(user=client_account.id, preferred_location=locations[1])
        ).run()
    for role, location_ids, expected in (
        ("owner", [], 200),
        ("manager", [locations[1]], 200),
        ("manager", [locations[0]], 403),
        ("accountant", [], 403),
        ("therapist", [locations[0]], 403),
    ):
        staff = await factories.make_user(role, location_ids=location_ids)
        async with factories.make_client(app) as staff_http:
            await factories.login(staff_http, staff)
            for url in (
                f"/clients/{client_account.id}/intake",
                f"/clients/{client_account.id}/intake?version=1",
                f"/clients/{client_account.id}",
            ):
                response = await staff_http.get(url)
                assert response.status_code == expected, (role, url)
            if expected == 200:
                assert "Right side of the neck" in response.text or "Version 1" in response.text
    actor = CurrentUser(
        id=999, email="acc@example.test", name="", role="accountant", location_ids=frozenset()
    )
    with pytest.raises(Exception, match="access"):
        await service.get_client_for(actor, client_account.id)


async def test_only_the_client_writes_their_intake(db):
    client_account = await factories.make_user("client")
    other = await factories.make_user("client")
    parsed = _parse()
    for role, user_id in (("client", other.id), ("owner", 1), ("manager", 2)):
        actor = CurrentUser(
            id=user_id, email="x@example.test", name="", role=role, location_ids=frozenset()
        )
        with pytest.raises(Exception, match="own intake"):
            await service.save_intake(actor, client_account.id, parsed)
    assert await ClientIntake.count().run() == 0


async def test_concurrent_saves_get_consecutive_versions(db):
    account = await factories.make_user("client")
    actor = CurrentUser(
        id=account.id, email=account.email, name="", role="client", location_ids=frozenset()
    )
    parsed = _parse()
    versions = await asyncio.gather(
        *[service.save_intake(actor, account.id, parsed) for _ in range(5)]
    )
    assert sorted(versions) == [1, 2, 3, 4, 5]
    rows = await ClientIntake.select(ClientIntake.version).run()
    assert sorted(r["version"] for r in rows) == [1, 2, 3, 4, 5]
