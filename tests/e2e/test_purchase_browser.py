"""A client buys "5 × 60 min" from Portland's public page through the stand-in's hosted
payment page; the webhook activates it and the client sees 5 sessions. The Portland
manager refunds 2 unused sessions; the client sees the refund and 3 sessions; the
stand-in shows the refund on the payment."""

from __future__ import annotations

import re
import sqlite3

import httpx
from playwright.async_api import Browser, Page, expect

from portal.demo import DEMO_PASSWORD
from stripe_standin import STANDIN_API_KEY
from tests.e2e.conftest import LiveServer, sign_in

PACKAGE = "Neuromuscular series — 5 × 60 min"
# Portland: $540.00, no sales tax. With no session used yet, the location's rule
# (paid minus used sessions at the list price, minus the kept sessions' paid share)
# refunds the paid share of two sessions: 540 − 3 × 108 = $216.00.
REFUND_CENTS = 21600


def _stripe_ids(server: LiveServer) -> tuple[int, str]:
    """The sale and PaymentIntent of the portal's latest Stripe payment (from its database)."""
    with sqlite3.connect(server.var_dir / "portal.sqlite3") as conn:
        row = conn.execute(
            "SELECT sale, payment_intent_id FROM payment WHERE provider = 'stripe' "
            "AND status = 'succeeded' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert row is not None and row[1], "no Stripe payment recorded"
    return int(row[0]), str(row[1])


async def test_client_buys_manager_refunds_two_sessions(
    page: Page, browser: Browser, live_server: LiveServer
) -> None:
    # The public page, signed out: "Buy" asks for a sign-in (or a new account) first.
    await page.goto(f"{live_server.url}/book/portland-pearl")
    card = page.locator("article.package-card", has_text=PACKAGE)
    await card.get_by_role("button", name=re.compile(r"^Buy")).click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(page.get_by_role("link", name="Create an account")).to_be_visible()
    await page.get_by_label("Email").fill("client@demo.clinic")
    await page.get_by_label("Password").fill(DEMO_PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()

    # The order summary, then Stripe's (the stand-in's) hosted page.
    await expect(page.get_by_role("heading", name="Your order")).to_be_visible()
    await expect(page.locator(".order-summary")).to_contain_text(PACKAGE)
    await expect(page.locator(".order-summary")).to_contain_text("$540.00")
    await page.get_by_role("button", name="Pay $540.00 with card").click()
    await page.wait_for_url(re.compile(re.escape(live_server.stripe.base_url) + r"/checkout/pay/"))
    await expect(page.get_by_role("heading", name="Pay 540.00 USD")).to_be_visible()
    await page.get_by_role("button", name="Pay 540.00 USD").click()

    # Back on the portal: confirming until the webhook activates the sale (htmx polling).
    await page.wait_for_url(re.compile(re.escape(live_server.url) + r"/purchases/\d+"))
    purchase_url = page.url.split("?")[0]
    sale_id = int(purchase_url.rsplit("/", 1)[1])
    await expect(page.locator("#purchase-status")).to_contain_text(
        "Payment confirmed. You have 5 of 5 sessions to book.", timeout=15_000
    )
    await page.get_by_role("link", name="My purchases", exact=True).click()
    row = page.locator("table tbody tr", has=page.locator(f'a[href="/purchases/{sale_id}"]'))
    await expect(row).to_contain_text(PACKAGE)
    await expect(row).to_contain_text("5 of 5")
    await expect(row).to_contain_text("active")
    assert _stripe_ids(live_server)[0] == sale_id
    payment_intent = _stripe_ids(live_server)[1]

    # The Portland manager refunds two unused sessions from the sale's page.
    staff_context = await browser.new_context(viewport={"width": 1280, "height": 900})
    staff_context.set_default_timeout(10_000)
    manager = await staff_context.new_page()
    try:
        await sign_in(manager, live_server, "manager.portland@demo.clinic", DEMO_PASSWORD)
        await manager.get_by_role("link", name="Sales", exact=True).click()
        await manager.get_by_role("link", name=f"{sale_id:06d}").click()
        await expect(manager.locator("h1")).to_contain_text(PACKAGE)
        await manager.get_by_label("Sessions to refund").fill("2")
        await manager.get_by_role("button", name="Preview").click()
        await expect(manager.locator(".refund-preview")).to_contain_text(
            "Refund $216.00 for 2 session(s)"
        )
        # No reason: refused, nothing sent.
        await manager.get_by_role("button", name="Review the refund").click()
        await expect(manager.locator("#reason-error")).to_contain_text("Give a reason")
        await manager.get_by_label("Reason").fill("Moving to another city")
        await manager.get_by_role("button", name="Review the refund").click()
        # The confirm step: the amount, the sessions revoked, what the client is told.
        await expect(manager.locator("[data-client-notice]")).to_contain_text("$216.00 refunded")
        await manager.get_by_role("button", name="Refund $216.00").click()
        await expect(manager.get_by_role("status").first).to_contain_text("Refund done")
        await expect(manager.locator("dl.details")).to_contain_text("3 available")
        await expect(manager.locator("dl.details")).to_contain_text("2 refunded")
    finally:
        await staff_context.close()

    # The client sees the refund and three sessions left.
    await page.reload()
    await expect(row).to_contain_text("3 of 5")
    await row.get_by_role("link", name=PACKAGE).click()
    await expect(page.locator("#purchase-status")).to_contain_text(
        "You have 3 of 5 sessions to book."
    )
    await expect(page.locator(".purchase-refunds")).to_contain_text("$216.00 — 2 session(s)")

    # The stand-in (Stripe) shows the refund on the payment.
    async with httpx.AsyncClient(
        base_url=live_server.stripe.base_url,
        headers={"Authorization": f"Bearer {STANDIN_API_KEY}"},
        timeout=10,
    ) as stripe:
        intent = (
            await stripe.get(
                f"/v1/payment_intents/{payment_intent}", params={"expand[]": "latest_charge"}
            )
        ).json()
        charge = intent["latest_charge"]
        assert charge["amount"] == 54000 and charge["amount_refunded"] == REFUND_CENTS
        refunds = (await stripe.get("/v1/refunds", params={"charge": charge["id"]})).json()["data"]
    assert [(r["amount"], r["status"]) for r in refunds] == [(REFUND_CENTS, "succeeded")]
    assert refunds[0]["metadata"]["sale_id"] == str(sale_id)
