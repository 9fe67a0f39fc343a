"""The staff sales list (/sales): its location filter and its client search, by role.

The filter form always sends every field, so "All my locations" arrives as an
empty ``location``; owners see every clinic's sales there, managers only their
own clinics' (``portal.access``). The search finds a sale by number, or by its
client's name or email in any letter case.
"""

from __future__ import annotations

import re

import pytest

from portal.auth.service import CLIENT, OWNER
from portal.auth.tables import User
from portal.payments import service as payments
from portal.payments.tables import Payment
from tests import factories
from tests.payments.helpers import Shop, as_user
from tests.payments.test_pages import signed_in


async def _client(name: str, email: str) -> factories.Account:
    account = await factories.make_user(CLIENT, email=email)
    await User.update({User.name: name}).where(User.id == account.id).run()
    return account


async def _cash_sale(shop: Shop, client: factories.Account, location_id: int) -> int:
    owner = as_user(await factories.make_user(OWNER))
    return await payments.record_in_clinic_sale(
        owner,
        client_id=client.id,
        package_id=shop.package_id,
        location_id=location_id,
        method="cash",
    )


def _listed(page: str) -> set[int]:
    """The sale numbers the list shows."""
    return {int(n) for n in re.findall(r'href="/sales/(\d+)"', page)}


def _chosen_location(page: str) -> str:
    """The value of the selected option of the location filter ("" when none is)."""
    select = re.search(r'<select id="location".*?</select>', page, re.S)
    assert select is not None
    chosen = re.search(r'<option value="([^"]*)" selected', select.group(0))
    return chosen.group(1) if chosen else ""


@pytest.fixture
async def two_clinics(shop: Shop) -> dict[str, int]:
    """A sale at the shop (Riley Brooks) and one at another clinic (Sam Okafor)."""
    elsewhere = await factories.make_location(slug="elsewhere")
    riley = await _client("Riley Brooks", "rb.1987@example.test")
    sam = await _client("Sam Okafor", "sam@okafor.example")
    return {
        "elsewhere": elsewhere,
        "here": await _cash_sale(shop, riley, shop.location_id),
        "there": await _cash_sale(shop, sam, elsewhere),
    }


# The query the filter form sends when nothing is chosen.
UNFILTERED = "/sales?q=&location=&status="


async def test_all_my_locations_for_a_manager_is_their_clinics(
    shop: Shop, two_clinics: dict[str, int]
) -> None:
    async with signed_in(shop, shop.manager) as manager:
        page = await manager.get(UNFILTERED)
        assert page.status_code == 200, page.text[:300]
        assert _listed(page.text) == {two_clinics["here"]}
        assert _chosen_location(page.text) == ""  # "All my locations" stays chosen
        chosen = await manager.get(f"/sales?q=&location={shop.location_id}&status=")
        assert _listed(chosen.text) == {two_clinics["here"]}
        assert _chosen_location(chosen.text) == str(shop.location_id)
        elsewhere = await manager.get(f"/sales?q=&location={two_clinics['elsewhere']}&status=")
        assert elsewhere.status_code == 403
        assert two_clinics["there"] not in _listed(elsewhere.text)


async def test_all_my_locations_for_an_owner_is_every_clinic(
    shop: Shop, two_clinics: dict[str, int]
) -> None:
    owner = await factories.make_user(OWNER)
    async with signed_in(shop, owner) as client:
        page = await client.get(UNFILTERED)
        assert page.status_code == 200, page.text[:300]
        assert _listed(page.text) == {two_clinics["here"], two_clinics["there"]}
        active = await client.get("/sales?q=&location=&status=active")
        assert _listed(active.text) == {two_clinics["here"], two_clinics["there"]}
        one = await client.get(f"/sales?q=&location={two_clinics['elsewhere']}&status=")
        assert _listed(one.text) == {two_clinics["there"]}


async def test_search_finds_a_client_by_name_or_email_in_any_case(
    shop: Shop, two_clinics: dict[str, int]
) -> None:
    owner = await factories.make_user(OWNER)
    here, there = two_clinics["here"], two_clinics["there"]
    async with signed_in(shop, owner) as client:
        for q, expected in [
            ("Riley", {here}),
            ("riley brooks", {here}),
            ("BROOKS", {here}),
            ("okaf", {there}),
            ("rb.1987", {here}),  # part of the email only, not of the name
            ("SAM@OKAFOR", {there}),
            (f"#{there:06d}", {there}),  # the sale number, as the list shows it
            ("nobody", set()),
        ]:
            page = await client.get("/sales", params={"q": q, "location": "", "status": ""})
            assert page.status_code == 200, (q, page.text[:300])
            assert _listed(page.text) == expected, q
        page = await client.get("/sales")
        assert 'placeholder="Client name, email or sale no."' in page.text
    async with signed_in(shop, shop.manager) as manager:
        # A manager's search stays inside their clinics.
        assert _listed((await manager.get("/sales?q=okafor&location=&status=")).text) == set()
        assert _listed((await manager.get("/sales?q=riley&location=&status=")).text) == {here}


async def test_the_list_names_clients_and_words_statuses(
    shop: Shop, two_clinics: dict[str, int]
) -> None:
    owner = await factories.make_user(OWNER)
    async with signed_in(shop, owner) as client:
        page = (await client.get(UNFILTERED)).text
    rows = page.split("<tbody>")[1].split("</tbody>")[0]
    assert "<td>Riley Brooks<br>" in rows and "<td>Sam Okafor<br>" in rows
    assert ">Active</span>" in rows and ">active</span>" not in rows
    assert '<option value="pending">Awaiting payment</option>' in page


async def test_the_list_rows_escape_what_clients_typed(shop: Shop) -> None:
    """The rows are written in Python (``payments.html.sale_rows``): every value escaped
    as the template escaped it."""
    marked = await _client('<b>Ann & "Co"</b>', "ann'<x>@example.test")
    sale_id = await _cash_sale(shop, marked, shop.location_id)
    owner = await factories.make_user(OWNER)
    async with signed_in(shop, owner) as client:
        page = (await client.get(UNFILTERED)).text
    rows = page.split("<tbody>")[1].split("</tbody>")[0]
    assert "<b>" not in rows and "<x>" not in rows
    assert (
        f'  <tr>\n    <td><a href="/sales/{sale_id}">{sale_id:06d}</a></td>\n' in rows
        and "<td>&lt;b&gt;Ann &amp; &#34;Co&#34;&lt;/b&gt;<br>"
        '<small class="muted">ann&#39;&lt;x&gt;@example.test</small></td>'
        in rows
    )


async def test_a_payment_carries_its_sales_location(
    shop: Shop, two_clinics: dict[str, int]
) -> None:
    """The payments report reads one clinic's payments by ``payment.location``."""
    for sale, location in (("here", shop.location_id), ("there", two_clinics["elsewhere"])):
        rows = await Payment.select(Payment.location).where(Payment.sale == two_clinics[sale])
        assert [r["location"] for r in rows] == [location]
