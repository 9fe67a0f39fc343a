"""The payments and journal CSV downloads, byte for byte, on SQLite and PostgreSQL.

On PostgreSQL the database writes these two files (``reports.copy_csv``: COPY
… TO STDOUT); on SQLite the Python writer (``exports.csv_stream``) does. Both
must give the very same bytes: the same expected file here on both engines,
and on PostgreSQL the COPY output equals the Python writer's for every filter.
The data has refunds (one at the same instant as a payment), cash payments,
tax, DST changes in two zones, a yen and a dinar location, and text that
starts like a formula or holds commas, quotes and line breaks.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from portal.auth.service import CLIENT, OWNER
from portal.auth.tables import User
from portal.payments.tables import Payment, Refund
from portal.reports import copy_csv, sql
from portal.reports import filters as report_filters
from portal.reports import service as report_service
from portal.reports.controllers import (
    JOURNAL_COLUMNS,
    PAYMENT_COLUMNS,
    _journal_rows,
    _payment_rows,
)
from portal.reports.exports import Amount, csv_stream, iterate
from tests import factories
from tests.reports import helpers

MARCH = {"start": ["2026-03-01"], "end": ["2026-03-31"]}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def _bytes(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def _filters(role: str = OWNER, **params: list[str]) -> report_filters.Filters:
    return await report_filters.parse(helpers.actor(role), {**MARCH, **params})


async def _intent(sale_id: int) -> str:
    row = await Payment.select(Payment.payment_intent_id).where(Payment.sale == sale_id).first()
    assert row is not None
    return str(row["payment_intent_id"] or "")


async def _dataset() -> dict[str, int]:
    """Ten succeeded rows in March 2026 (local), one just after, three not succeeded."""
    alpha = await factories.make_location(
        name='=Alpha, "East"', slug="alpha", timezone="America/New_York"
    )
    beta = await factories.make_location(
        name="@Beta\nNorth", slug="beta", timezone="Europe/London", currency="GBP"
    )
    tokyo = await factories.make_location(
        name="Tokyo", slug="tokyo", timezone="Asia/Tokyo", currency="JPY"
    )
    kuwait = await factories.make_location(
        name="Kuwait", slug="kuwait", timezone="Asia/Kuwait", currency="KWD"
    )
    dash = (await factories.make_user(CLIENT, email="-client@example.test")).id
    plain = (await factories.make_user(CLIENT, email="plain@example.test")).id
    # Named as a person, shown by name; the name that looks like a formula is escaped.
    await User.update({User.name: "-Dana Dash"}).where(User.id == dash).run()
    await User.update({User.name: "Pat Plain"}).where(User.id == plain).run()
    # US clocks go forward on 2026-03-08 at 07:00 UTC, UK clocks on 2026-03-29 at 01:00 UTC.
    s1 = await helpers.make_sale(alpha, dash, at=utc(2026, 3, 8, 4, 30), net=10000, tax=1000,
                                 sessions=5, fee=349, item="+5 × 60 min, deep")  # fmt: skip
    s2 = await helpers.make_sale(alpha, plain, at=utc(2026, 3, 9, 4, 30), net=20000,
                                 sessions=2, method="cash", item='Say "hi"')  # fmt: skip
    await helpers.refund(s1, 1, 2200, at=utc(2026, 3, 9, 4, 30))  # the instant of s2
    s5 = await helpers.make_sale(tokyo, plain, at=utc(2026, 3, 10, 16), net=5000, tax=500,
                                 currency="JPY", fee=150, item="@home")  # fmt: skip
    s6 = await helpers.make_sale(kuwait, dash, at=utc(2026, 3, 15, 12), net=12345,
                                 currency="KWD", fee=123, item="\tTabbed")  # fmt: skip
    await helpers.refund(s1, 1, 2200, at=utc(2026, 3, 20, 15))
    s4 = await helpers.make_sale(beta, plain, at=utc(2026, 3, 29, 0, 30), net=4000,
                                 sessions=2, currency="GBP", method="cash",
                                 item="-5")  # fmt: skip
    s3 = await helpers.make_sale(beta, dash, at=utc(2026, 3, 29, 23, 30), net=5000, tax=1000,
                                 currency="GBP", fee=150, item="line one\nline two",
                                 package_id=7)  # fmt: skip
    await helpers.refund(s4, 1, 2000, at=utc(2026, 3, 31, 22, 30))
    s8 = await helpers.make_sale(alpha, plain, at=utc(2026, 4, 1, 3, 30), net=5000,
                                 method="cash", item="-1.5")  # 2026-03-31 23:30 EDT  # fmt: skip
    # 2026-04-01 00:30 BST: April at Beta.
    await helpers.make_sale(beta, plain, at=utc(2026, 3, 31, 23, 30), net=100, currency="GBP",
                            method="cash", item="April")  # fmt: skip
    # Not succeeded: seen only with another status filter.
    await Payment.insert(
        Payment(sale=s2, location=alpha, provider="stripe", method="card", status="failed",
                amount_cents=20000, currency="USD", created_at=utc(2026, 3, 12, 12), payment_intent_id="pi_failed"),
        Payment(sale=s5, location=tokyo, provider="stripe", method="card", status="pending",
                amount_cents=5500, currency="JPY", created_at=utc(2026, 3, 13, 12), payment_intent_id="pi_pending"),
    ).run()  # fmt: skip
    payment3 = await Payment.select(Payment.id).where(Payment.sale == s3).first()
    assert payment3 is not None
    await Refund.insert(
        Refund(sale=s3, payment=payment3["id"], amount_cents=500, currency="GBP",
               status="failed", created_at=utc(2026, 3, 30, 9), reason="test")
    ).run()  # fmt: skip
    return {"alpha": alpha, "beta": beta, "tokyo": tokyo, "kuwait": kuwait, "s1": s1, "s2": s2,
            "s3": s3, "s4": s4, "s5": s5, "s6": s6, "s8": s8}  # fmt: skip


async def _expected_payments(ids: dict[str, int]) -> bytes:
    s = ids
    i1, i3, i5, i6 = [await _intent(s[k]) for k in ("s1", "s3", "s5", "s6")]
    alpha = '"\'=Alpha, ""East"""'
    beta = '"\'@Beta\nNorth"'
    item1 = '"\'+5 × 60 min, deep"'
    lines = [
        ",".join(PAYMENT_COLUMNS),
        f"2026-03-07,{alpha},'-Dana Dash,'-client@example.test,{item1},Card (online),110.00,10.00,0.00,0.00,3.49,"
        f"106.51,USD,{i1},{s['s1']},payment,package",
        f'2026-03-09,{alpha},Pat Plain,plain@example.test,"Say ""hi""",Cash,200.00,0.00,0.00,0.00,0.00,'
        f"200.00,USD,,{s['s2']},payment,package",
        f"2026-03-09,{alpha},'-Dana Dash,'-client@example.test,{item1},Card (online),0.00,-2.00,22.00,0.00,0.00,"
        f"-22.00,USD,{i1},{s['s1']},refund,package",
        f"2026-03-11,Tokyo,Pat Plain,plain@example.test,'@home,Card (online),5500,500,0,0,150,5350,JPY,{i5},"
        f"{s['s5']},payment,package",
        f"2026-03-15,Kuwait,'-Dana Dash,'-client@example.test,'\tTabbed,Card (online),12.345,0.000,0.000,0.000,"
        f"0.123,12.222,KWD,{i6},{s['s6']},payment,package",
        f"2026-03-20,{alpha},'-Dana Dash,'-client@example.test,{item1},Card (online),0.00,-2.00,22.00,0.00,0.00,"
        f"-22.00,USD,{i1},{s['s1']},refund,package",
        f"2026-03-29,{beta},Pat Plain,plain@example.test,-5,Cash,40.00,0.00,0.00,0.00,0.00,40.00,GBP,,"
        f"{s['s4']},payment,package",
        f"2026-03-30,{beta},'-Dana Dash,'-client@example.test,\"line one\nline two\",Card (online),60.00,10.00,"
        f"0.00,0.00,1.50,58.50,GBP,{i3},{s['s3']},payment,package",
        f"2026-03-31,{beta},Pat Plain,plain@example.test,-5,Cash,0.00,0.00,20.00,0.00,0.00,-20.00,GBP,,"
        f"{s['s4']},refund,package",
        f"2026-03-31,{alpha},Pat Plain,plain@example.test,-1.5,Cash,50.00,0.00,0.00,0.00,0.00,50.00,USD,,"
        f"{s['s8']},payment,package",
    ]
    return "".join(line + "\r\n" for line in lines).encode()


async def test_payments_download_is_the_expected_file(db, app):
    ids = await _dataset()
    owner = await factories.make_user(OWNER)
    async with factories.make_client(app) as client:
        await factories.login(client, owner)
        response = await client.get("/reports/payments.csv?start=2026-03-01&end=2026-03-31")
    assert response.status_code == 200
    assert response.content == await _expected_payments(ids)
    f = await _filters()
    python = await _bytes(csv_stream(PAYMENT_COLUMNS, _payment_rows(f)))
    assert python == response.content
    copied = copy_csv.payments_csv(f, PAYMENT_COLUMNS)
    if db.kind == "sqlite":
        assert copied is None  # SQLite: the Python writer
    else:
        assert copied is not None and await _bytes(copied) == response.content


async def test_journal_download_is_the_python_writers_file(db, app):
    ids = await _dataset()
    owner = await factories.make_user(OWNER)
    async with factories.make_client(app) as client:
        await factories.login(client, owner)
        response = await client.get("/reports/journal.csv?start=2026-03-01&end=2026-03-31")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.startswith("entry,date,account,debit,credit,location,memo,reference\r\n")
    s1, s3, s5, s6 = ids["s1"], ids["s3"], ids["s5"], ids["s6"]
    for line in (
        f'2026-03-07,stripe_clearing,110.00,,"\'=Alpha, ""East""",'
        f'"\'+5 × 60 min, deep (Card (online))",sale:{s1}\r\n',
        f'2026-03-07,tax_payable,,10.00,"\'=Alpha, ""East""",'
        f'"\'+5 × 60 min, deep (Card (online))",sale:{s1}\r\n',
        f'2026-03-30,stripe_clearing,60.00,,"\'@Beta\nNorth","line one\nline two '
        f'(Card (online))",sale:{s3}\r\n',
        f"2026-03-11,stripe_clearing,5500,,Tokyo,'@home (Card (online)),sale:{s5}\r\n",
        f"2026-03-15,processing_fees,0.123,,Kuwait,Stripe fee,sale:{s6}\r\n",
        f'2026-03-31,cash_on_hand,,20.00,"\'@Beta\nNorth",Refund of 1 session(s),'
        f"sale:{ids['s4']}\r\n",
    ):
        assert line in body
    assert "April" not in body  # 2026-04-01 00:30 in London
    assert "-1.5 (Cash)" in body  # 2026-03-31 23:30 in New York
    f = await _filters()
    python = await _bytes(csv_stream(JOURNAL_COLUMNS, _journal_rows(f)))
    assert python == response.content
    copied = copy_csv.journal_csv(f, JOURNAL_COLUMNS)
    if db.kind == "sqlite":
        assert copied is None
    else:
        assert copied is not None and await _bytes(copied) == response.content


PAYMENT_FILTERS = [
    ({}, 10),
    ({"status": ["all"]}, 13),
    ({"status": ["failed"]}, 2),  # a failed payment and a failed refund
    ({"status": ["pending"]}, 1),
    ({"method": ["cash"]}, 4),
    ({"package": ["7"]}, 1),
    ({"location": ["{beta}"]}, 3),
    ({"location": ["{alpha}", "{kuwait}"], "method": ["card"]}, 4),
    ({"start": ["2026-03-08"], "end": ["2026-03-09"]}, 2),  # the US change of clocks
    ({"start": ["2026-03-29"], "end": ["2026-03-30"]}, 2),  # the UK change of clocks
    ({"start": ["2026-04-01"], "end": ["2026-04-30"]}, 1),
    ({"start": ["2027-01-01"], "end": ["2027-01-31"]}, 0),
]


@pytest.mark.parametrize(("params", "rows"), PAYMENT_FILTERS)
async def test_payments_filters_give_the_same_bytes(db, params, rows):
    ids = await _dataset()
    params = {k: [v.format(**ids) for v in vs] for k, vs in params.items()}
    f = await _filters(**params)
    python = await _bytes(csv_stream(PAYMENT_COLUMNS, _payment_rows(f)))
    assert len([line for line in python.split(b"\r\n")[1:] if line]) == rows
    copied = copy_csv.payments_csv(f, PAYMENT_COLUMNS)
    if db.kind == "sqlite":
        assert copied is None
    else:
        assert copied is not None and await _bytes(copied) == python


JOURNAL_FILTERS = [
    {},
    {"location": ["{beta}"]},
    {"location": ["{alpha}", "{tokyo}"], "account": ["stripe_clearing", "tax_payable"]},
    {"start": ["2026-03-29"], "end": ["2026-03-30"]},
    {"start": ["2027-01-01"], "end": ["2027-01-31"]},
]


@pytest.mark.parametrize("params", JOURNAL_FILTERS)
async def test_journal_filters_give_the_same_bytes(db, params):
    ids = await _dataset()
    params = {k: [v.format(**ids) for v in vs] for k, vs in params.items()}
    f = await _filters(**params)
    python = await _bytes(csv_stream(JOURNAL_COLUMNS, _journal_rows(f)))
    assert python.startswith(b"entry,date,account,")
    if params.get("location") == [str(ids["beta"])]:
        assert b"Tokyo" not in python and b"'@Beta\nNorth" in python
    copied = copy_csv.journal_csv(f, JOURNAL_COLUMNS)
    if db.kind == "sqlite":
        assert copied is None
    else:
        assert copied is not None and await _bytes(copied) == python


# Text cells: the value, and the cell as written (formula escaping, then CSV quoting).
CELLS = [
    (None, ""),
    ("", ""),
    ("plain", "plain"),
    ("=1+2", "'=1+2"),
    ("+1", "'+1"),
    ("-1", "-1"),
    ("-1.5", "-1.5"),
    ("-1.", "'-1."),
    ("-.5", "'-.5"),
    ("+5 apples", "'+5 apples"),
    ("@x", "'@x"),
    ("\tx", "'\tx"),
    ("\rx", '"\'\rx"'),
    ("\nx", '"\nx"'),
    ("a,b", '"a,b"'),
    ('a"b', '"a""b"'),
    ('"', '""""'),
    ("a\nb", '"a\nb"'),
    ("a\r\nb", '"a\r\nb"'),
    ("-5\n", '"-5\n"'),
    ("-5\n\n", '"\'-5\n\n"'),
    ("-\u0661", "'-\u0661"),  # Arabic-Indic digit one: not a plain number
    ("\u0661\u0662", "\u0661\u0662"),
    (" -5", " -5"),
    ("\u20135", "\u20135"),  # en dash
    ("=", "'="),
    ("-", "'-"),
    ("'quoted", "'quoted"),
    ("\U0001f600, ok", '"\U0001f600, ok"'),
    ("\\.", "\\."),
    ('=a,"b"\nc', '"\'=a,""b""\nc"'),
]
# Amounts: minor units, currency, and the cell as written.
AMOUNTS = [
    (0, "USD", "0.00"),
    (-5, "USD", "-0.05"),
    (123456, "USD", "1234.56"),
    (-123456789012345, "USD", "-1234567890123.45"),
    (5, "JPY", "5"),
    (-1500, "JPY", "-1500"),
    (1234, "KWD", "1.234"),
    (-1, "KWD", "-0.001"),
    (0, "KWD", "0.000"),
    (12345, "CLF", "1.2345"),
    (-5, "CLF", "-0.0005"),
    (100, "ZZZ", "1.00"),  # unknown: two decimals
]


async def test_cells_escaping_and_amounts(db):
    rows = [
        (value, cents, currency)
        for (value, _), (cents, currency, _) in zip(CELLS, itertools.cycle(AMOUNTS))
    ]
    rows += [(None, c, cur) for c, cur, _ in AMOUNTS]
    expected = "text,amount\r\n" + "".join(
        f"{cell},{amount}\r\n"
        for (_, cell), (_, _, amount) in zip(
            CELLS + [(None, "")] * len(AMOUNTS),
            list(itertools.islice(itertools.cycle(AMOUNTS), len(CELLS))) + AMOUNTS,
        )
    )
    python = await _bytes(
        csv_stream(["text", "amount"], iterate([(v, Amount(c, cur)) for v, c, cur in rows]))
    )
    assert python == expected.encode()
    if db.kind == "sqlite":
        assert not copy_csv.available()
        return
    query = (
        f"WITH {copy_csv.currency_cte()} "
        f"SELECT {copy_csv.cell('t.v')}, {copy_csv.amount('t.c')} "
        "FROM unnest({}::text[], {}::bigint[], {}::text[]) WITH ORDINALITY AS t(v, c, cur, n) "
        "LEFT JOIN cur ON cur.code = t.cur ORDER BY t.n"
    )
    args = [[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]]
    copied = await _bytes(copy_csv.copy_stream(["text", "amount"], (query, args)))
    assert copied == expected.encode()


def test_line_ends_outside_quotes_become_crlf_across_any_chunks():
    data = b'a,"x\ny",b\n"q""",c\n"\n",d\n"""\n""",e\nz\n'
    expected = b'a,"x\ny",b\r\n"q""",c\r\n"\n",d\r\n"""\n""",e\r\nz\r\n'
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            crlf = copy_csv.CrLf()
            assert crlf(data[:i]) + crlf(data[i:j]) + crlf(data[j:]) == expected, (i, j)


async def _copy_backend(marker: str) -> list[dict[str, object]]:
    return await sql.fetch(
        "SELECT pid, state, wait_event FROM pg_stat_activity "
        "WHERE query LIKE {} AND pid <> pg_backend_pid()",
        [f"COPY (SELECT '{marker}'%"],
    )


async def test_copy_waits_for_a_slow_reader_and_stops_when_the_reader_goes(db):
    if db.kind == "sqlite":
        # The Python writer reads a keyset page at a time, only when asked.
        assert copy_csv.payments_csv(await _filters(), PAYMENT_COLUMNS) is None
        return
    query = ("SELECT 'slow-reader', g, repeat('x', 200) FROM generate_series(1, {}::int) g",
             [2_000_000])  # fmt: skip
    stream = copy_csv.copy_stream(["marker", "n", "x"], query)
    assert await anext(stream) == b"marker,n,x\r\n"
    assert (await anext(stream)).startswith(b"slow-reader,1,xxx")
    # About 400 MB would follow; with nobody reading, the server waits on us.
    waiting = None
    for _ in range(200):
        backends = await _copy_backend("slow-reader")
        if backends and backends[0]["wait_event"] == "ClientWrite":
            waiting = backends[0]
            break
        await asyncio.sleep(0.05)
    assert waiting is not None, await _copy_backend("slow-reader")
    await stream.aclose()
    for _ in range(200):
        if not [b for b in await _copy_backend("slow-reader") if b["state"] == "active"]:
            break
        await asyncio.sleep(0.05)
    assert not [b for b in await _copy_backend("slow-reader") if b["state"] == "active"]
    # The pooled connection came back usable.
    results = await asyncio.gather(*(sql.fetch("SELECT 1 AS one", []) for _ in range(8)))
    assert all(r[0]["one"] == 1 for r in results)


async def test_copy_error_reaches_the_reader(db):
    if db.kind == "sqlite":
        assert copy_csv.journal_csv(await _filters(), JOURNAL_COLUMNS) is None
        return
    query = ("SELECT 'broken', 1 / (g - 50000) FROM generate_series(1, {}::int) g", [100_000])
    stream = copy_csv.copy_stream(["marker", "n"], query)
    with pytest.raises(asyncpg.exceptions.DivisionByZeroError):
        await _bytes(stream)
    assert (await sql.fetch("SELECT 1 AS one", []))[0]["one"] == 1


async def test_journal_is_in_date_order_with_entry_numbers(db, app):
    """Lines are dated in their own zone; Tokyo's 2026-03-11 01:00 comes after New
    York's 2026-03-10 16:00 although it happened earlier in UTC."""
    ids = await _dataset()
    late = await helpers.make_sale(ids["alpha"], (await factories.make_user(CLIENT)).id,
                                   at=utc(2026, 3, 10, 20), net=700, method="cash",
                                   item="Evening")  # fmt: skip
    owner = await factories.make_user(OWNER)
    async with factories.make_client(app) as client:
        await factories.login(client, owner)
        response = await client.get("/reports/journal.csv?start=2026-03-01&end=2026-03-31")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:2] == ["entry", "date"]
    body = rows[1:]
    dates = [r[1] for r in body]
    assert dates == sorted(dates)
    evening = [i for i, r in enumerate(body) if r[7] == f"sale:{late}"]
    tokyo = [i for i, r in enumerate(body) if r[7] == f"sale:{ids['s5']}"]
    assert max(evening) < min(tokyo)
    # Each entry's lines stand together under one number, and balance per currency.
    entries = [r[0] for r in body]
    seen: list[str] = []
    for entry in entries:
        if not seen or seen[-1] != entry:
            assert entry not in seen
            seen.append(entry)
    # The page reads the same order, a few lines at a time.
    f = await _filters()
    paged, cursor = [], None
    while True:
        rows_page, cursor = await report_service.journal_lines(f, after=cursor, limit=3)
        paged += [(str(r.entry), r.date.isoformat(), r.account) for r in rows_page]
        if cursor is None:
            break
    assert paged == [(r[0], r[1], r[2]) for r in body]
    copied = copy_csv.journal_csv(f, JOURNAL_COLUMNS)
    if copied is not None:
        assert await _bytes(copied) == response.content
