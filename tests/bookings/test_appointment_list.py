"""The staff list of appointments (/appointments/list): newest first, paged by
cursor, filtered by location, therapist, status, local days and client, and
scoped to what each role may see."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from piccolo.query.methods.select import Select

from portal.auth.service import (
    ACCOUNTANT,
    CLIENT,
    MANAGER,
    OWNER,
    THERAPIST,
    CurrentUser,
    open_session,
)
from portal.auth.tables import User
from portal.bookings import listing
from portal.bookings.tables import Appointment
from portal.catalog.tables import Service
from portal.errors import Forbidden
from portal.rooms.tables import Room
from portal.staff.tables import Therapist, TherapistLocation
from portal.timeutil import utcnow
from portal.web.pagination import encode_cursor
from tests import factories

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
ROW_RE = re.compile(r'<td class="nowrap"><a href="/appointments/(\d+)">')
NEXT_RE = re.compile(r'<a href="([^"]*)" role="button" class="secondary outline" rel="next">')


@dataclass
class Chain:
    ny: int
    london: int
    service: int
    therapists: dict[str, int]  # name -> id
    rooms: dict[str, int]  # therapist name -> their room
    clients: dict[str, int]  # name -> user id
    accounts: dict[str, factories.Account]  # role -> account (manager and therapist: NY)

    def location_of(self, therapist: str) -> int:
        return self.london if therapist == "Lena" else self.ny


async def _therapist(name: str, location: int, account: int | None = None) -> int:
    now = utcnow()
    tid = (
        await Therapist.insert(
            Therapist(name=name, account=account, created_at=now, updated_at=now)
        ).returning(Therapist.id).run()
    )[0]["id"]  # fmt: skip
    await TherapistLocation.insert(TherapistLocation(therapist=tid, location=location)).run()
    return int(tid)


async def _room(name: str, location: int) -> int:
    now = utcnow()
    return int(
        (
            await Room.insert(
                Room(location=location, name=name, created_at=now, updated_at=now)
            ).returning(Room.id).run()
        )[0]["id"]
    )  # fmt: skip


@pytest.fixture
async def chain(db) -> Chain:
    ny = await factories.make_location(name="New York", slug="ny", timezone="America/New_York")
    london = await factories.make_location(name="London", slug="ldn", timezone="Europe/London")
    now = utcnow()
    service = (
        await Service.insert(
            Service(name="Massage 50", duration_minutes=50, created_at=now, updated_at=now)
        ).returning(Service.id).run()
    )[0]["id"]  # fmt: skip
    accounts = {
        OWNER: await factories.make_user(OWNER),
        MANAGER: await factories.make_user(MANAGER, location_ids=[ny]),
        ACCOUNTANT: await factories.make_user(ACCOUNTANT),
        THERAPIST: await factories.make_user(THERAPIST, location_ids=[ny]),
        CLIENT: await factories.make_user(CLIENT),
    }
    therapists = {
        "Theresa": await _therapist("Theresa", ny, accounts[THERAPIST].id),
        "Nora": await _therapist("Nora", ny),
        "Lena": await _therapist("Lena", london),
    }
    rooms = {
        "Theresa": await _room("Room 1", ny),
        "Nora": await _room("Room 2", ny),
        "Lena": await _room("Garden room", london),
    }
    clients = {}
    for name, email in (("Alice Andrews", "alice@example.test"), ("Bob Brown", "bob@example.test")):
        account = await factories.make_user(CLIENT, email=email)
        await User.update({User.name: name}).where(User.id == account.id).run()
        clients[name] = account.id
    return Chain(ny, london, int(service), therapists, rooms, clients, accounts)


async def add(
    chain: Chain,
    start: datetime,
    *,
    therapist: str = "Theresa",
    client: str = "Alice Andrews",
    status: str = "completed",
) -> int:
    now = utcnow()
    return int(
        (
            await Appointment.insert(
                Appointment(
                    client=chain.clients[client], therapist=chain.therapists[therapist],
                    room=chain.rooms[therapist], location=chain.location_of(therapist),
                    service=chain.service, start_at=start, end_at=start + timedelta(minutes=50),
                    busy_until=start + timedelta(minutes=50), status=status, created_at=now,
                    updated_at=now,
                )
            ).returning(Appointment.id).run()
        )[0]["id"]
    )  # fmt: skip


def local(day: date, hour: int, minute: int, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz).astimezone(UTC)


async def signed_in(app: Any, settings: Any, account: factories.Account) -> httpx.AsyncClient:
    client = factories.make_client(app)
    client.cookies.set("portal_session", await open_session(settings, account.id))
    return client


async def walk(client: httpx.AsyncClient, url: str) -> tuple[list[int], int]:
    """Every appointment id the list shows, following "Next page" to the end; and the pages."""
    ids: list[int] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        response = await client.get(next_url)
        assert response.status_code == 200, response.text[:500]
        pages += 1
        ids += [int(i) for i in ROW_RE.findall(response.text)]
        match = NEXT_RE.search(response.text)
        next_url = html.unescape(match.group(1)) if match else None
        assert pages < 50
    return ids, pages


def as_user(chain: Chain, role: str) -> CurrentUser:
    account = chain.accounts[role]
    locations = frozenset({chain.ny}) if role in (MANAGER, THERAPIST) else frozenset()
    return CurrentUser(account.id, account.email, "", role, locations)


async def ordered_ids(where: Any = None) -> list[int]:
    query = Appointment.select(Appointment.id)
    if where is not None:
        query = query.where(where)
    rows = await query.order_by(Appointment.start_at, Appointment.id, ascending=False).run()
    return [int(r["id"]) for r in rows]


# -- order and paging ---------------------------------------------------------------


async def test_paging_walks_every_appointment_once_newest_first(app, settings, chain):
    base = datetime(2026, 5, 4, 13, 0, tzinfo=UTC)
    # 40 hours × the three therapists: three appointments share each start, so
    # page boundaries fall inside groups of equal times.
    for hour in range(40):
        for name in ("Theresa", "Nora", "Lena"):
            await add(chain, base + timedelta(hours=hour), therapist=name)
    expected = await ordered_ids()
    assert len(expected) == 120
    async with await signed_in(app, settings, chain.accounts[OWNER]) as client:
        ids, pages = await walk(client, "/appointments/list")
        first = (await client.get("/appointments/list")).text
    assert ids == expected and len(set(ids)) == 120
    assert pages == 3  # 50 + 50 + 20
    # Each row: time in its clinic's zone, client, therapist, service, room, clinic, status.
    newest = expected[0]
    row = first[first.index(f'href="/appointments/{newest}"') :].split("</tr>")[0]
    when = (base + timedelta(hours=39)).astimezone(NY if "New York" in row else LONDON)
    assert when.strftime("%a %Y-%m-%d %H:%M") in row
    assert "Alice Andrews" in row and "Massage 50" in row and "Completed" in row
    assert 'aria-current="page">All appointments' in first


async def test_cursor_of_the_service_matches_the_page_and_a_forged_one_starts_over(chain):
    base = datetime(2026, 1, 10, 15, 0, tzinfo=UTC)
    for hour in range(7):
        await add(chain, base + timedelta(hours=hour))
    owner = as_user(chain, OWNER)
    first = await listing.list_appointments(owner, listing.ListFilters(), limit=3)
    second = await listing.list_appointments(
        owner, listing.ListFilters(), after=first.next_cursor, limit=3
    )
    third = await listing.list_appointments(
        owner, listing.ListFilters(), after=second.next_cursor, limit=3
    )
    walked = [r["id"] for p in (first, second, third) for r in p.rows]
    assert walked == await ordered_ids() and third.next_cursor is None
    # A cursor in another form of the same instant (an offset, a "T") lands in the same place.
    last = second.rows[-1]
    moved = last["start_at"].astimezone(NY).isoformat()
    again = await listing.list_appointments(
        owner, listing.ListFilters(), after=encode_cursor(moved, last["id"]), limit=3
    )
    assert [r["id"] for r in again.rows] == [r["id"] for r in third.rows]
    for forged in (
        "bm9wZQ",
        encode_cursor("not a time", 5),
        encode_cursor("9999-12-31T23:59:59-05:00", 1),
    ):
        page = await listing.list_appointments(owner, listing.ListFilters(), after=forged, limit=3)
        assert [r["id"] for r in page.rows] == [r["id"] for r in first.rows]


# -- filters ------------------------------------------------------------------------


async def test_filters_location_therapist_status_and_client(app, settings, chain):
    base = datetime(2026, 6, 1, 14, 0, tzinfo=UTC)
    theresa = await add(chain, base, therapist="Theresa", client="Alice Andrews")
    nora = await add(chain, base, therapist="Nora", client="Bob Brown", status="no_show")
    lena = await add(chain, base + timedelta(hours=1), therapist="Lena", status="cancelled")
    booked = await add(chain, base + timedelta(days=30), therapist="Theresa", status="booked")
    async with await signed_in(app, settings, chain.accounts[OWNER]) as client:

        async def shown(query: str) -> list[int]:
            response = await client.get(f"/appointments/list?{query}")
            assert response.status_code == 200, response.text[:500]
            return [int(i) for i in ROW_RE.findall(response.text)]

        assert await shown("") == [booked, lena, nora, theresa]
        assert await shown(f"location={chain.ny}") == [booked, nora, theresa]
        assert await shown(f"location={chain.london}") == [lena]
        assert await shown(f"therapist={chain.therapists['Theresa']}") == [booked, theresa]
        assert await shown("status=no_show") == [nora]
        assert await shown(f"location={chain.ny}&status=booked") == [booked]
        assert await shown(f"location={chain.london}&status=booked") == []
        assert await shown("q=bob") == [nora]
        assert await shown("q=ALICE%20andrews") == [booked, lena, theresa]
        assert await shown("q=alice@example") == [booked, lena, theresa]
        # Many matching clients: the list tests each row's client instead of naming them.
        assert await shown("q=example.test") == [booked, lena, nora, theresa]
        listing_limit = listing.CLIENT_IDS_MAX
        try:
            listing.CLIENT_IDS_MAX = 1
            assert await shown("q=example.test") == [booked, lena, nora, theresa]
            assert await shown("q=bob") == [nora]
        finally:
            listing.CLIENT_IDS_MAX = listing_limit
        empty = await client.get("/appointments/list?q=nobody")
        assert "No appointments match" in empty.text and 'href="/appointments/list"' in empty.text


@pytest.mark.parametrize(
    ("day", "hours"),
    [
        (date(2026, 3, 8), 23),  # New York springs forward: 02:00 → 03:00
        (date(2026, 11, 1), 25),  # New York falls back: 02:00 → 01:00
    ],
)
async def test_date_range_is_local_days_of_each_clinic_across_dst(app, settings, chain, day, hours):
    before, after = day - timedelta(days=1), day + timedelta(days=1)
    assert local(after, 0, 0, NY) - local(day, 0, 0, NY) == timedelta(hours=hours)
    ny_late_before = await add(chain, local(before, 23, 30, NY))
    ny_first = await add(chain, local(day, 0, 30, NY), therapist="Nora")
    ny_last = await add(chain, local(day, 23, 30, NY))
    ny_next = await add(chain, local(after, 0, 30, NY), therapist="Nora")
    # London keeps its own days: 23:30 the day before is out, 00:30 is in.
    ldn_before = await add(chain, local(before, 23, 30, LONDON), therapist="Lena")
    ldn_first = await add(chain, local(day, 0, 30, LONDON), therapist="Lena")
    ldn_next = await add(chain, local(after, 0, 10, LONDON), therapist="Lena")
    owner = as_user(chain, OWNER)

    async def ids(**filters: Any) -> set[int]:
        page = await listing.list_appointments(owner, listing.ListFilters(**filters))
        return {r["id"] for r in page.rows}

    one_day = {"day_from": day, "day_to": day}
    assert await ids(location_id=chain.ny, **one_day) == {ny_first, ny_last}
    assert await ids(location_id=chain.london, **one_day) == {ldn_first}
    assert await ids(**one_day) == {ny_first, ny_last, ldn_first}
    assert await ids(day_from=after) == {ny_next, ldn_next}
    assert await ids(day_to=before) == {ny_late_before, ldn_before}
    assert await ids(location_id=chain.ny, day_from=before, day_to=day) == {
        ny_late_before,
        ny_first,
        ny_last,
    }
    async with await signed_in(app, settings, chain.accounts[OWNER]) as client:
        response = await client.get(f"/appointments/list?location={chain.ny}&start={day}&end={day}")
    assert [int(i) for i in ROW_RE.findall(response.text)] == [ny_last, ny_first]
    assert f'value="{day}"' in response.text


async def test_bad_filters_are_explained_beside_the_field_and_kept(app, settings, chain):
    await add(chain, datetime(2026, 2, 2, 15, 0, tzinfo=UTC))
    async with await signed_in(app, settings, chain.accounts[OWNER]) as client:
        response = await client.get("/appointments/list?start=2026-13-01&status=lost&q=al")
        assert response.status_code == 422
        assert factories.field_error(response.text, "start") == "Enter a date such as 2026-03-08."
        assert factories.field_error(response.text, "status") == "Choose a status from the list."
        assert factories.input_value(response.text, "start") == "2026-13-01"
        assert factories.input_value(response.text, "q") == "al"
        assert not ROW_RE.findall(response.text)
        response = await client.get("/appointments/list?start=2026-03-09&end=2026-03-08")
        assert response.status_code == 422
        assert factories.field_error(response.text, "end") == (
            "The last day must not be before the first."
        )
        response = await client.get("/appointments/list?therapist=x%C2%B2&location=1e3")
        assert response.status_code == 422
        assert factories.field_error(response.text, "therapist")
        assert factories.field_error(response.text, "location")


# -- who sees what ------------------------------------------------------------------


async def test_manager_sees_only_their_locations_and_other_locations_are_refused(
    app, settings, chain
):
    base = datetime(2026, 4, 20, 14, 0, tzinfo=UTC)
    own = [await add(chain, base + timedelta(hours=i)) for i in range(3)]
    elsewhere = await add(chain, base, therapist="Lena")
    async with await signed_in(app, settings, chain.accounts[MANAGER]) as client:
        ids, _ = await walk(client, "/appointments/list")
        assert ids == own[::-1] and elsewhere not in ids
        refused = await client.get(f"/appointments/list?location={chain.london}")
        assert refused.status_code == 403
        # Another clinic's therapist named on purpose shows nothing of theirs.
        lena = await client.get(f"/appointments/list?therapist={chain.therapists['Lena']}")
        assert lena.status_code == 200 and not ROW_RE.findall(lena.text)
        page = (await client.get("/appointments/list")).text
        assert "London" not in page and "Lena" not in page
    async with await signed_in(app, settings, chain.accounts[ACCOUNTANT]) as client:
        ids, _ = await walk(client, "/appointments/list")
        assert set(ids) == {*own, elsewhere}
    with pytest.raises(Exception) as refused_service:
        await listing.list_appointments(
            as_user(chain, MANAGER), listing.ListFilters(location_id=chain.london)
        )
    assert isinstance(refused_service.value, Forbidden)


async def test_therapist_sees_only_their_own_appointments(app, settings, chain):
    base = datetime(2026, 4, 21, 14, 0, tzinfo=UTC)
    mine = [await add(chain, base + timedelta(hours=i)) for i in range(2)]
    await add(chain, base, therapist="Nora")
    await add(chain, base, therapist="Lena")
    async with await signed_in(app, settings, chain.accounts[THERAPIST]) as client:
        ids, _ = await walk(client, "/appointments/list")
        assert ids == mine[::-1]
        # Naming a colleague changes nothing: the list stays theirs.
        other = await client.get(f"/appointments/list?therapist={chain.therapists['Nora']}")
        assert [int(i) for i in ROW_RE.findall(other.text)] == mine[::-1]
        assert (await client.get(f"/appointments/list?location={chain.london}")).status_code == 403
        page = (await client.get("/appointments/list")).text
        assert "All my appointments" in page and 'id="therapist"' not in page
    # A therapist without a profile sees nothing, not everything.
    stranger = await factories.make_user(THERAPIST, location_ids=[chain.ny])
    async with await signed_in(app, settings, stranger) as client:
        response = await client.get("/appointments/list")
        assert response.status_code == 200 and not ROW_RE.findall(response.text)


async def test_clients_are_refused_and_staff_pages_link_to_the_list(app, settings, chain):
    async with await signed_in(app, settings, chain.accounts[CLIENT]) as client:
        assert (await client.get("/appointments/list")).status_code == 403
    for role in (OWNER, MANAGER, ACCOUNTANT, THERAPIST):
        async with await signed_in(app, settings, chain.accounts[role]) as client:
            schedule = await client.get("/appointments")
            assert schedule.status_code == 200
            assert 'href="/appointments/list"' in schedule.text, role


# -- the queries walk indexes ----------------------------------------------------------


NO_SORTS = ("enable_seqscan", "enable_sort", "enable_incremental_sort", "enable_bitmapscan")


async def _plan(db, query: Select) -> str:
    sql = str(query)
    if db.kind == "sqlite":
        rows = await Appointment.raw("EXPLAIN QUERY PLAN " + sql).run()
        return "\n".join(str(r["detail"]) for r in rows)
    async with Appointment._meta.db.transaction():
        for setting in NO_SORTS:
            await Appointment.raw(f"SET LOCAL {setting} = off").run()
        rows = await Appointment.raw("EXPLAIN " + sql).run()
    return "\n".join(str(r["QUERY PLAN"]) for r in rows)


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, "appointment_time_id"),
        ({"status": "no_show"}, "appointment_status_time"),
        ({"location": True, "status": "completed"}, "appointment_location_status_time"),
        ({"location": True}, "appointment_location_time"),
    ],
)
async def test_list_pages_are_read_in_order_from_an_index(db, chain, monkeypatch, filters, index):
    """Page 1 and a deep page are index walks in the list's order, without a sort.

    The planner is told to avoid sorting and sequential scans, so a plan
    without a sort proves an index returns the rows in (start_at, id) order.
    """
    for hour in range(5):
        start = datetime(2026, 7, 1, 12, tzinfo=UTC) + timedelta(hours=hour)
        await add(chain, start, status=filters.get("status", "completed"))
    sent: list[Select] = []
    run = Select.run

    def capture(self: Select, *args: Any, **kwargs: Any) -> Any:
        if self.table is Appointment and "LIMIT" in str(self):  # the page, not its names
            sent.append(self)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(Select, "run", capture)
    chosen = listing.ListFilters(
        location_id=chain.ny if filters.get("location") else None, status=filters.get("status", "")
    )
    owner = as_user(chain, OWNER)
    first = await listing.list_appointments(owner, chosen, limit=2)
    assert first.next_cursor is not None
    await listing.list_appointments(owner, chosen, after=first.next_cursor, limit=2)
    monkeypatch.undo()
    assert len(sent) == 2
    # SQLite's index on start_at alone ends in the rowid (the id), so it serves too.
    allowed = [index] if db.kind == "postgres" else [index, "appointment_start_at"]
    for query in sent:
        plan = await _plan(db, query)
        assert any(f"INDEX {name}" in plan or f"using {name}" in plan for name in allowed), plan
        assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
    # The deep page seeks to the cursor instead of filtering every row before it.
    deep = await _plan(db, sent[1])
    if db.kind == "postgres":
        assert re.search(r"Index Cond: .*start_at <=", deep), deep
    else:
        assert "start_at<?" in deep.replace(" ", "") or "start_at<" in deep, deep
