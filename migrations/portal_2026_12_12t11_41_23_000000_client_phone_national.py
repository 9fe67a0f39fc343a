"""Clients found by phone from an index: ``client_profile.phone_national`` holds each
profile's phone as its national digits (``portal.clients.phones.phone_digits``, the
function the staff's search turns what was typed into), so "(503) 555-0142",
"+1 503.555.0142" and "5035550142" are all ``5035550142`` and a search compares by
equality, where it stripped every profile's phone of its punctuation and compared its
end. Written with the phone from now on; filled here for the profiles already saved
(NULL for a phone that is no number: that client is not found by phone). Running the
fill again only reads the profiles still without digits."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.querystring import QueryString

from portal.clients.phones import phone_digits

ID = "2026-12-12T11:41:23:000000"
VERSION = "1.38.0"
DESCRIPTION = "client phone national"

BATCH = {"postgres": 2000, "sqlite": 300}  # rows a statement (SQLite: under 999 values)


async def fill(engine) -> int:
    """Set ``phone_national`` of every profile with a phone and none yet; how many were set.

    A batch of profiles by id at a time: PostgreSQL updates each batch from two arrays,
    SQLite from a CASE of the batch's ids (both read the rows by their primary key)."""
    postgres = engine.engine_type == "postgres"
    last, written = 0, 0
    while True:
        rows = await engine.run_querystring(
            QueryString(
                "SELECT id, phone FROM client_profile WHERE id > {} AND phone <> '' "
                "AND phone_national IS NULL ORDER BY id LIMIT {}",
                last,
                BATCH.get(engine.engine_type, 300),
            )
        )
        if not rows:
            return written
        last = int(rows[-1]["id"])
        found = [(int(r["id"]), d) for r in rows if (d := phone_digits(str(r["phone"])))]
        if not found:
            continue
        ids, digits = [i for i, _ in found], [d for _, d in found]
        if postgres:
            query = QueryString(
                "UPDATE client_profile SET phone_national = v.digits "
                "FROM unnest({}::int[], {}::text[]) AS v(id, digits) "
                "WHERE client_profile.id = v.id",
                ids,
                digits,
            )
        else:
            cases = " ".join(["WHEN {} THEN {}"] * len(found))
            marks = ", ".join(["{}"] * len(found))
            query = QueryString(
                f"UPDATE client_profile SET phone_national = CASE id {cases} END "
                f"WHERE id IN ({marks})",
                *[value for pair in found for value in pair],
                *ids,
            )
        await engine.run_querystring(query)
        written += len(found)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="portal", description=DESCRIPTION)

    async def phone_national():
        engine = engine_finder()
        await engine.run_ddl(
            "ALTER TABLE client_profile ADD COLUMN phone_national VARCHAR(20) NULL"
        )
        await fill(engine)
        await engine.run_ddl(
            "CREATE INDEX client_profile_phone_national ON client_profile (phone_national)"
        )

    manager.add_raw(phone_national)
    return manager
