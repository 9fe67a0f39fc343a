"""The portal without Stripe's settings: what needs Stripe answers plainly, what does
not (a cash sale and its refund) works as ever. The gateway is built only when a
handler asks for it (``gateway``) or takes it from its lazy source (``gateways``)."""

from __future__ import annotations

from typing import Any

from portal.auth.service import CLIENT
from portal.payments import service as payments
from portal.payments.tables import Refund
from portal.sales import service as sales
from portal.sales.tables import Sale
from tests import factories
from tests.payments.helpers import make_package


async def _shop() -> tuple[int, int, factories.Account, factories.Account]:
    location = await factories.make_location(slug="shop")
    package = await make_package()
    client = await factories.make_user(CLIENT)
    manager = await factories.make_user("manager", location_ids=[location])
    return location, package, client, manager


async def _front_desk_sale(
    desk: Any, client: factories.Account, location: int, package: int, method: str
) -> Any:
    return await factories.post_form(
        desk,
        "/sales",
        {
            "client_email": client.email,
            "location_id": str(location),
            "package_id": str(package),
            "method": method,
        },
    )


async def test_cash_sale_and_its_refund_need_no_stripe(app: Any) -> None:
    location, package, client, manager = await _shop()
    assert getattr(app.state, "stripe_gateway", None) is None
    async with factories.make_client(app) as desk:
        await factories.login(desk, manager)
        sold = await _front_desk_sale(desk, client, location, package, "cash")
        assert sold.status_code == 303, sold.text[:300]
        sale_id = int(sold.headers["location"].rsplit("/", 1)[1])
        refunded = await factories.post_form(
            desk,
            f"/sales/{sale_id}/refunds",
            {"sessions": "2", "reason": "Moved away", "confirmed": "1"},
        )
        assert refunded.status_code == 303, refunded.text[:300]
    (refund,) = await Refund.select().where(Refund.sale == sale_id).run()
    assert refund["status"] == payments.SUCCEEDED
    counts = sales.count_states(await sales.sessions_of(sale_id), 5)
    assert counts.available == 3
    assert getattr(app.state, "stripe_gateway", None) is None  # never built


async def test_what_needs_stripe_answers_503_and_changes_nothing(app: Any) -> None:
    location, package, client, manager = await _shop()
    async with factories.make_client(app) as buyer:
        await factories.login(buyer, client)
        page = await buyer.get(f"/buy/{package}?location=shop")
        assert page.status_code == 200  # the offer itself needs no Stripe
        bought = await factories.post_form(buyer, f"/buy/{package}", {"location": "shop"})
        assert bought.status_code == 503
        assert "Temporarily unavailable" in bought.text
    async with factories.make_client(app) as desk:
        await factories.login(desk, manager)
        link = await _front_desk_sale(desk, client, location, package, "checkout_link")
        assert link.status_code == 503
    assert await Sale.count().run() == 0


async def test_webhook_without_stripe_settings_is_refused_like_a_bad_signature(
    app: Any,
) -> None:
    async with factories.make_client(app) as stripe:
        response = await stripe.post(
            "/stripe/webhook",
            content=b'{"id": "evt_1", "type": "checkout.session.completed"}',
            headers={"stripe-signature": "t=1,v1=00", "content-type": "application/json"},
        )
    assert response.status_code == 400
    assert response.json() == {"error": "webhooks are not configured"}
