"""The payments pages through the app: buying, the front desk, refunds, receipts, purchases."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import unquote

import httpx

from portal.auth.service import ACCOUNTANT, CLIENT, MANAGER, THERAPIST
from portal.email.tables import OutboxMessage
from portal.payments import service as payments
from portal.payments.tables import Payment, Refund
from portal.sales import service as sales
from portal.sales.tables import Sale, SaleSession
from tests import factories
from tests.payments.helpers import Shop, pay, start_purchase
from tests.stripe_standin import StandIn, WebhookReceiver


@asynccontextmanager
async def signed_in(
    shop: Shop, account: factories.Account | None
) -> AsyncIterator[httpx.AsyncClient]:
    async with factories.make_client(shop.app) as client:
        if account is not None:
            await factories.login(client, account)
        yield client


def _flash(response: httpx.Response) -> None:
    assert response.status_code == 303, response.text[:500]


async def _desk_sale(
    manager: httpx.AsyncClient, shop: Shop, method: str, **fields: str
) -> httpx.Response:
    """The front desk's sale form for the shop's client and package, sent once."""
    form = {
        "client_email": shop.client.email,
        "location_id": str(shop.location_id),
        "package_id": str(shop.package_id),
        "method": method,
    }
    return await factories.post_form(manager, "/sales", {**form, **fields})


def _text(html: str) -> str:
    """The page's words, tags removed, whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


# -- buying online --------------------------------------------------------------------------


async def test_public_catalog_links_to_buying(shop: Shop) -> None:
    async with signed_in(shop, None) as visitor:
        page = await visitor.get("/book/shop")
        assert page.status_code == 200
        assert f'href="/buy/{shop.package_id}?location=shop"' in page.text
        assert "coming soon" not in page.text
        # Anonymous visitors sign in (or create an account) on the way.
        buy = await visitor.get(f"/buy/{shop.package_id}?location=shop")
        assert buy.status_code == 303
        target = buy.headers["location"]
        assert unquote(target) == f"/login?next=/buy/{shop.package_id}?location=shop"
        login = await visitor.get(target)
        assert "Create an account" in login.text and 'href="/signup?next=' in login.text


async def test_buy_page_and_checkout_redirect(shop: Shop, stripe_standin: StandIn) -> None:
    async with signed_in(shop, shop.client) as client:
        page = await client.get(f"/buy/{shop.package_id}?location=shop")
        assert page.status_code == 200
        text = _text(page.text)
        assert "5 × 60 min neuromuscular" in text and "$487.13" in text
        assert "Tax (8.25 %) $37.13" in text
        # The form posts and is redirected to the payment page: its origin must be allowed.
        policy = page.headers["content-security-policy"]
        assert f"form-action 'self' {stripe_standin.base_url}" in policy
        response = await factories.post_form(
            client, f"/buy/{shop.package_id}", {"location": "shop"}
        )
        assert response.status_code == 303
        assert response.headers["location"].startswith(f"{stripe_standin.base_url}/checkout/pay/")
    sale = await Sale.select().first().run()
    assert sale is not None and sale["status"] == sales.PENDING and sale["client"] == shop.client.id


async def test_buy_refuses_staff_and_unknown_places(shop: Shop) -> None:
    async with signed_in(shop, shop.manager) as manager:
        assert (await manager.get(f"/buy/{shop.package_id}?location=shop")).status_code == 403
    async with signed_in(shop, shop.client) as client:
        assert (await client.get(f"/buy/{shop.package_id}?location=nowhere")).status_code == 404
        assert (await client.get("/buy/999999?location=shop")).status_code == 404


async def test_purchase_page_polls_until_the_webhook_confirms(
    shop: Shop, stripe_standin: StandIn, portal_webhook: WebhookReceiver
) -> None:
    sale_id, payment = await start_purchase(shop)
    async with signed_in(shop, shop.client) as client:
        page = await client.get(f"/purchases/{sale_id}?session_id={payment['checkout_session_id']}")
        assert page.status_code == 200 and "Confirming your payment" in page.text
        fragment = await client.get(f"/purchases/{sale_id}/status", headers={"HX-Request": "true"})
        assert fragment.status_code == 200
        assert "<html" not in fragment.text and 'hx-trigger="every 2s"' in fragment.text
        assert (await sales.get_sale(sale_id))["status"] == sales.PENDING  # looking changes nothing

        await stripe_standin.complete_session(payment["checkout_session_id"])
        await stripe_standin.drain()
        fragment = await client.get(f"/purchases/{sale_id}/status", headers={"HX-Request": "true"})
        assert "hx-trigger" not in fragment.text  # polling stops
        assert "Payment confirmed. You have 5 of 5 sessions to book." in _text(fragment.text)
    stranger = await factories.make_user(CLIENT)
    async with signed_in(shop, stranger) as other:
        assert (await other.get(f"/purchases/{sale_id}/status")).status_code == 403
        assert (await other.get(f"/purchases/{sale_id}")).status_code == 403


async def test_my_purchases_and_receipts(
    shop: Shop, stripe_standin: StandIn, portal_webhook: WebhookReceiver
) -> None:
    sale_id, _ = await pay(shop, stripe_standin)
    pending_id, _ = await start_purchase(shop)
    payment = (await payments.payments_of(sale_id))[0]
    async with signed_in(shop, shop.client) as client:
        mine = await client.get("/account/purchases")
        assert mine.status_code == 200
        text = _text(mine.text)
        assert "5 of 5" in text and "awaiting payment" in text
        assert f'href="/sales/{sale_id}/receipt"' in mine.text
        assert f'href="/sales/{pending_id}/receipt"' not in mine.text
        assert 'href="/account/purchases"' in mine.text  # "My purchases" in the navigation
        receipt = await client.get(f"/sales/{sale_id}/receipt")
        assert receipt.status_code == 200
        text = _text(receipt.text)
        for expected in (
            "Receipt",
            f"No. {sale_id:06d}",
            "5 × 60 min neuromuscular",
            "$450.00",
            "Tax (8.25 %) $37.13",
            "Total $487.13",
            "Paid by Card (online)",
            f"Stripe reference {payment['payment_intent_id']}",
        ):
            assert expected in text, expected
        assert (await client.get(f"/sales/{pending_id}/receipt")).status_code == 404
    for role in (MANAGER, ACCOUNTANT):
        staff = shop.manager if role == MANAGER else await factories.make_user(ACCOUNTANT)
        async with signed_in(shop, staff) as client:
            receipt = await client.get(f"/sales/{sale_id}/receipt")
            assert receipt.status_code == 200 and "Total $487.13" in _text(receipt.text)
            assert f'href="/sales/{sale_id}"' in receipt.text  # back to the staff page
    stranger = await factories.make_user(CLIENT)
    async with signed_in(shop, stranger) as other:
        assert (await other.get(f"/sales/{sale_id}/receipt")).status_code == 403
        assert "5 × 60" not in (await other.get("/account/purchases")).text


# -- the front desk ------------------------------------------------------------------------


async def test_front_desk_form_keeps_input_and_explains_errors(shop: Shop) -> None:
    async with signed_in(shop, shop.manager) as manager:
        form = await manager.get("/sales/new")
        assert form.status_code == 200
        for field in ("client_email", "location_id", "package_id", "method"):
            assert f'<label for="{field}">' in form.text
        response = await factories.post_form(
            manager,
            "/sales",
            {"client_email": "nobody@example.test", "location_id": str(shop.location_id)},
        )
        assert response.status_code == 422
        html = response.text
        assert "No client account with this email" in (
            factories.field_error(html, "client_email") or ""
        )
        assert factories.field_error(html, "package_id") == "Choose a package."
        assert factories.field_error(html, "method") == "Choose how the client pays."
        assert factories.field_error(html, "location_id") is None
        assert factories.input_value(html, "client_email") == "nobody@example.test"
        assert re.search(rf'<option value="{shop.location_id}"\s+selected', html)
        assert 'role="alert"' in html
    assert await Sale.count().run() == 0


async def test_front_desk_cash_sale_is_active_at_once(shop: Shop) -> None:
    async with signed_in(shop, shop.manager) as manager:
        response = await _desk_sale(manager, shop, "cash", client_email=shop.client.email.upper())
        _flash(response)
        sale_id = int(response.headers["location"].rsplit("/", 1)[1])
        page = await manager.get(f"/sales/{sale_id}")
        assert page.status_code == 200
        text = _text(page.text)
        assert "Sale recorded; the sessions are available now." in text
        assert "5 available" in text and "Cash" in text
    sale = await sales.get_sale(sale_id)
    assert (sale["status"], sale["payment_method"], sale["channel"]) == (
        "active",
        "cash",
        "front_desk",
    )


async def test_the_card_terminal_reads_the_same_on_every_page(shop: Shop) -> None:
    """The desk's form, the sale page, the payments report (page and CSV) and the receipt
    name the card terminal in one wording."""
    words = "Card terminal in the clinic"
    async with signed_in(shop, shop.manager) as manager:
        form = await manager.get("/sales/new")
        assert f">{words}</option>" in form.text
        response = await _desk_sale(manager, shop, "terminal")
        _flash(response)
        sale_id = int(response.headers["location"].rsplit("/", 1)[1])
        shown = {
            "sale": _text((await manager.get(f"/sales/{sale_id}")).text),
            "sales": _text((await manager.get("/sales/")).text),
            "report": _text((await manager.get("/reports/payments")).text),
            "csv": (await manager.get("/reports/payments.csv")).text,
        }
    receipt = await OutboxMessage.select(OutboxMessage.body_text).where(
        OutboxMessage.kind == "receipt"
    )
    shown["receipt"] = " ".join(receipt[0]["body_text"].split())
    assert {page: words in text for page, text in shown.items()} == dict.fromkeys(shown, True)


async def test_front_desk_checkout_link_is_shown(shop: Shop, stripe_standin: StandIn) -> None:
    async with signed_in(shop, shop.manager) as manager:
        response = await _desk_sale(manager, shop, "checkout_link")
        _flash(response)
        sale_id = int(response.headers["location"].rsplit("/", 1)[1])
        page = await manager.get(f"/sales/{sale_id}")
        payment = await Payment.select().where(Payment.sale == sale_id).first().run()
        assert payment is not None and payment["checkout_url"].startswith(stripe_standin.base_url)
        assert f'href="{payment["checkout_url"]}"' in page.text
        assert "Waiting for the client to pay." in page.text
        assert f'value="{payment["checkout_url"]}" readonly' in page.text
    assert (await sales.get_sale(sale_id))["status"] == sales.PENDING


async def test_front_desk_refuses_other_locations(shop: Shop) -> None:
    elsewhere = await factories.make_location(slug="elsewhere")
    async with signed_in(shop, shop.manager) as manager:
        response = await _desk_sale(manager, shop, "cash", location_id=str(elsewhere))
        assert response.status_code == 403
        form = await manager.get("/sales/new")
        assert f'value="{elsewhere}"' not in form.text  # only the manager's own locations
    assert await Sale.count().run() == 0


# -- refunds --------------------------------------------------------------------------------


async def test_refund_form_previews_requires_a_reason_and_is_scoped(
    shop: Shop, stripe_standin: StandIn, portal_webhook: WebhookReceiver
) -> None:
    sale_id, _ = await pay(shop, stripe_standin)
    for position in (1, 2):  # two sessions given
        await (
            SaleSession.update({SaleSession.state: sales.REDEEMED})
            .where((SaleSession.sale == sale_id) & (SaleSession.position == position))
            .run()
        )
    async with signed_in(shop, shop.manager) as manager:
        pro_rata = await manager.get(f"/sales/{sale_id}?sessions=2&rule=pro_rata")
        assert pro_rata.status_code == 200
        # The paid share of the two latest sessions: 2 × 97.42.
        assert "Refund $194.84 for 2 session(s)" in _text(pro_rata.text)
        list_price = await manager.get(f"/sales/{sale_id}?sessions=2&rule=list_price")
        # Paid 487.13 − 2 used × 108.25 (list price with tax) − the kept one's share 97.43.
        text = _text(list_price.text)
        assert "Refund $173.20 for 2 session(s)" in text
        assert (
            "paid $487.13 − 2 used × list price $108.25 − 1 kept at their paid share $97.43" in text
        )

        missing = await factories.post_form(
            manager,
            f"/sales/{sale_id}/refunds",
            {"sessions": "2", "rule": "pro_rata", "reason": " "},
        )
        assert missing.status_code == 422
        assert factories.field_error(missing.text, "reason") == "Give a reason for the refund."
        assert "Refund $194.84 for 2 session(s)" in _text(missing.text)  # the preview stays
        assert await Refund.count().run() == 0
        assert (await sales.session_counts(sale_id)).available == 3

        too_many = await factories.post_form(
            manager, f"/sales/{sale_id}/refunds", {"sessions": "4", "reason": "x"}
        )
        assert too_many.status_code == 422
        assert "between 1 and 3" in (factories.field_error(too_many.text, "sessions") or "")
        assert factories.input_value(too_many.text, "reason") == "x"

    other = await factories.make_user(MANAGER, location_ids=[await factories.make_location()])
    async with signed_in(shop, other) as outsider:
        assert (await outsider.get(f"/sales/{sale_id}")).status_code == 403
        refused = await factories.post_form(
            outsider, f"/sales/{sale_id}/refunds", {"sessions": "2", "reason": "Not mine"}
        )
        assert refused.status_code == 403
    accountant = await factories.make_user(ACCOUNTANT)
    async with signed_in(shop, accountant) as reader:
        page = await reader.get(f"/sales/{sale_id}")
        assert page.status_code == 200 and "Refund unused sessions" not in page.text
        refused = await factories.post_form(
            reader, f"/sales/{sale_id}/refunds", {"sessions": "2", "reason": "Books"}
        )
        assert refused.status_code == 403
    assert await Refund.count().run() == 0

    async with signed_in(shop, shop.manager) as manager:
        done = await factories.post_form(
            manager,
            f"/sales/{sale_id}/refunds",
            {"sessions": "2", "rule": "pro_rata", "reason": "Moving away", "confirmed": "1"},
        )
        _flash(done)
        page = await manager.get(done.headers["location"])
        text = _text(page.text)
        assert "Refund done; the unused sessions it covers were revoked." in text
        assert "1 available" in text and "2 refunded" in text and "Moving away" in text
    async with signed_in(shop, shop.client) as client:
        text = _text((await client.get(f"/purchases/{sale_id}")).text)
        assert "You have 1 of 5 sessions to book" in text
        assert "$194.84 — 2 session(s)" in text


async def test_sales_list_filters_and_navigation(
    shop: Shop, stripe_standin: StandIn, portal_webhook: WebhookReceiver
) -> None:
    sale_id, _ = await pay(shop, stripe_standin)
    pending_id, _ = await start_purchase(shop)
    async with signed_in(shop, shop.manager) as manager:
        listing = await manager.get("/sales")
        assert listing.status_code == 200
        assert f'href="/sales/{sale_id}"' in listing.text
        assert f'href="/sales/{pending_id}"' in listing.text
        assert 'href="/sales" aria-current="page"' in listing.text
        active = await manager.get("/sales?status=active")
        assert f'href="/sales/{sale_id}"' in active.text
        assert f'href="/sales/{pending_id}"' not in active.text
    therapist = await factories.make_user(THERAPIST, location_ids=[shop.location_id])
    async with signed_in(shop, therapist) as client:
        assert (await client.get("/sales")).status_code == 403
        assert 'href="/sales"' not in (await client.get("/")).text


async def test_buy_without_a_clinic_offers_the_clinics_that_sell_it(shop: Shop) -> None:
    closed = await factories.make_location(slug="closed", active=False)
    assert closed
    async with signed_in(shop, shop.client) as client:
        page = await client.get(f"/buy/{shop.package_id}")
        assert page.status_code == 200
        assert f'href="/buy/{shop.package_id}?location=shop"' in page.text
        assert "location=closed" not in page.text
        assert "$487.13" in _text(page.text)


async def test_retrying_a_pending_refund(
    shop: Shop, stripe_standin: StandIn, portal_webhook: WebhookReceiver
) -> None:
    from portal.payments.gateway import StripeGateway

    sale_id, _ = await pay(shop, stripe_standin)
    dead = StripeGateway(api_key="sk_test_x", api_base="http://127.0.0.1:9", max_network_retries=0)
    try:
        refund = await payments.refund_sale(
            dead, shop.manager_user, sale_id, sessions=1, reason="Injury"
        )
    finally:
        await dead.aclose()
    assert refund["status"] == payments.PENDING
    async with signed_in(shop, shop.manager) as manager:
        page = await manager.get(f"/sales/{sale_id}")
        retry_url = f"/sales/{sale_id}/refunds/{refund['id']}/retry"
        assert f'action="{retry_url}"' in page.text
        done = await factories.post_form(manager, retry_url)
        _flash(done)
        assert "Refund done." in _text((await manager.get(done.headers["location"])).text)
        again = await factories.post_form(manager, retry_url)
        _flash(again)
        assert "no longer pending" in _text((await manager.get(again.headers["location"])).text)
        other_sale, _ = await start_purchase(shop)
        wrong = await factories.post_form(
            manager, f"/sales/{other_sale}/refunds/{refund['id']}/retry"
        )
        assert wrong.status_code == 404
    assert (await sales.session_counts(sale_id)).revoked == 1
    assert await Refund.count().run() == 1


async def test_webhook_without_stripe_settings_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/stripe/webhook", content=b"{}", headers={"stripe-signature": "t=1,v1=x"}
    )
    assert response.status_code == 400
