"""The owners' outbox pages: list (search, filters, keyset pages) and one message."""

from __future__ import annotations

from portal.email import service
from tests import factories


async def _fill(settings, count: int, to: str = "list@example.test") -> list[int]:
    return [
        await service.send(to, "welcome", {"name": f"N{i}"}, "welcome", settings=settings)
        for i in range(count)
    ]


async def test_owner_lists_messages_newest_first_in_keyset_pages(owner_client, settings):
    ids = await _fill(settings, 53)
    await service.send(
        "other@example.test",
        "password_reset",
        {"name": "O", "reset_url": "http://x/r", "valid_minutes": 60},
        "password_reset",
        settings=settings,
    )
    first = await owner_client.get("/outbox")
    assert first.status_code == 200
    assert first.text.index("other@example.test") < first.text.index("list@example.test")
    assert first.text.count('href="/outbox/') == 50
    assert "Kept in outbox" in first.text
    cursor = first.text.split("after=")[1].split('"')[0]
    second = await owner_client.get(f"/outbox?after={cursor}")
    assert second.status_code == 200
    shown = {int(part.split('"')[0]) for part in second.text.split('href="/outbox/')[1:]}
    assert shown == set(ids[:4])
    assert "Next page" not in second.text

    found = await owner_client.get("/outbox?q=OTHER@")
    assert found.text.count('href="/outbox/') == 1
    assert "Reset your Clinic Portal password" in found.text
    by_kind = await owner_client.get("/outbox?kind=password_reset")
    assert by_kind.text.count('href="/outbox/') == 1
    none = await owner_client.get("/outbox?status=sent")
    assert "No messages match." in none.text


async def test_owner_reads_one_message_and_its_html_in_a_sandbox(owner_client, settings):
    message_id = await service.send(
        "read@example.test", "welcome", {"name": "Reader"}, "welcome", settings=settings
    )
    page = await owner_client.get(f"/outbox/{message_id}")
    assert page.status_code == 200
    assert "read@example.test" in page.text and "Hello Reader," in page.text
    assert f'<iframe class="mail-preview" sandbox src="/outbox/{message_id}/html"' in page.text
    html = await owner_client.get(f"/outbox/{message_id}/html")
    assert html.status_code == 200
    assert "Welcome, Reader" in html.text
    policy = html.headers["content-security-policy"]
    assert "sandbox" in policy and "default-src 'none'" in policy and "script-src" not in policy
    assert (await owner_client.get("/outbox/999999")).status_code == 404


async def test_only_owners_read_the_outbox(app, db, locations, settings):
    message_id = (await _fill(settings, 1))[0]
    for role, location_ids in (
        ("manager", [locations[0]]),
        ("accountant", []),
        ("therapist", [locations[0]]),
        ("client", []),
    ):
        account = await factories.make_user(role, location_ids=location_ids)
        async with factories.make_client(app) as client:
            await factories.login(client, account)
            for url in ("/outbox", f"/outbox/{message_id}", f"/outbox/{message_id}/html"):
                response = await client.get(url)
                assert response.status_code == 403, (role, url)
