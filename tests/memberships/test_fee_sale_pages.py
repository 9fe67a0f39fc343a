"""A membership's fee is shown as the fee it is: its sale has no sessions (``sales.is_fee``),
so the staff's sale page, the client's purchase page, the receipt and My purchases name
the fee and link its membership instead of counting sessions ("0 available · 0 booked …");
a package's pages still count its sessions.

The plan's freeze fee: $10.00 + 8.25 % tax = $10.83, paid in cash at the desk."""

from __future__ import annotations

from portal.auth.service import MANAGER
from portal.sales import service as sales
from tests import factories
from tests.bookings.conftest import give_package
from tests.memberships.conftest import Club
from tests.memberships.test_fee_payments import _fee_sale
from tests.memberships.test_fee_refunds import _refund
from tests.memberships.test_report_kinds import frozen_with_a_fee, paid_package

SESSIONS_LINE = "<dt>Sessions</dt>"


async def _frozen_with_a_fee(club: Club) -> tuple[int, int]:
    """A desk member frozen with the plan's fee taken in cash: (membership, fee's sale)."""
    membership_id = await frozen_with_a_fee(club)
    return membership_id, int((await _fee_sale(membership_id))["id"])


async def test_the_staff_sale_page_shows_a_fee_and_no_sessions_line(club: Club) -> None:
    membership_id, fee_sale = await _frozen_with_a_fee(club)
    package_sale = await give_package(club.member.id, club.location, club.service, sessions=2)
    name = str((await sales.get_sale(fee_sale))["item_name"])
    assert name.startswith(f"Freeze fee of membership {membership_id} (Pausable) for the period")
    manager = await factories.make_user(MANAGER, location_ids=[club.location])
    async with factories.make_client(club.app) as web:
        await factories.login(web, manager)
        fee_page = await web.get(f"/sales/{fee_sale}")
        package_page = await web.get(f"/sales/{package_sale}")
    assert fee_page.status_code == 200
    assert f'<dd data-testid="fee">{name}; no sessions</dd>' in fee_page.text
    assert f'<a href="/memberships/{membership_id}">Membership {membership_id}</a>' in (
        fee_page.text
    )
    assert SESSIONS_LINE not in fee_page.text and "available ·" not in fee_page.text
    assert "<dt>Terms</dt>" not in fee_page.text and "0 ×" not in fee_page.text
    assert "Refund the fee" in fee_page.text
    # A package: its terms and its sessions line, as before.
    assert package_page.status_code == 200
    assert SESSIONS_LINE in package_page.text
    assert "<dd>2 available · 0 booked · 0 given · 0 refunded · 0 expired</dd>" in (
        package_page.text
    )
    assert "<dt>Terms</dt><dd>2 × NMT 60, 180 days" in package_page.text
    assert 'data-testid="fee"' not in package_page.text


async def test_the_clients_pages_show_a_fee_and_no_sessions(club: Club) -> None:
    membership_id, fee_sale = await _frozen_with_a_fee(club)
    package_sale = await paid_package(club)
    async with factories.make_client(club.app) as web:
        await factories.login(web, club.member)
        purchase = await web.get(f"/purchases/{fee_sale}")
        receipt = await web.get(f"/sales/{fee_sale}/receipt")
        mine = await web.get("/account/purchases")
        package = await web.get(f"/purchases/{package_sale}")
    assert purchase.status_code == 200
    assert 'data-testid="fee"' in purchase.text and "no sessions" in purchase.text
    assert f'<a href="/memberships/{membership_id}">Your membership</a>' in purchase.text
    assert "sessions to book" not in purchase.text and SESSIONS_LINE not in purchase.text
    assert "Payment confirmed." in purchase.text
    assert receipt.status_code == 200 and "Freeze fee of membership" in receipt.text
    assert "× Neuromuscular" not in receipt.text and "valid 0 days" not in receipt.text
    # My purchases: the fee says so; the package counts its sessions left.
    fee_row = mine.text.split(f'href="/purchases/{fee_sale}"', 1)[1].split("</tr>", 1)[0]
    package_row = mine.text.split(f'href="/purchases/{package_sale}"', 1)[1].split("</tr>", 1)[0]
    assert "None: a fee" in fee_row and "sessions left" not in fee_row
    assert "sessions left" in package_row and "None: a fee" not in package_row
    assert "You have <strong>2</strong> of 2 sessions to book." in package.text
    assert SESSIONS_LINE in package.text and 'data-testid="fee"' not in package.text


async def test_a_fees_refunds_count_no_sessions(club: Club) -> None:
    _, fee_sale = await _frozen_with_a_fee(club)
    manager = await factories.make_user(MANAGER, location_ids=[club.location])
    async with factories.make_client(club.app) as web:
        await factories.login(web, manager)
        await _refund(web, fee_sale, "4.00", "Froze a week late")
        staff_page = await web.get(f"/sales/{fee_sale}")
    async with factories.make_client(club.app) as web:
        await factories.login(web, club.member)
        purchase = await web.get(f"/purchases/{fee_sale}")
        receipt = await web.get(f"/sales/{fee_sale}/receipt")
    refunds = staff_page.text.split("<h2>Refunds</h2>", 1)[1].split("</table>", 1)[0]
    assert "$4.00" in refunds and "Froze a week late" in refunds
    assert "Sessions" not in refunds
    assert "$4.00" in purchase.text and "session(s)" not in purchase.text
    assert "−$4.00" in receipt.text and "session(s)" not in receipt.text
