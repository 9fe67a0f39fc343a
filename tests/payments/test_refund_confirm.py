"""A refund is confirmed before it is made: the amount, the sessions it revokes and what
the client will be told; only the confirmed form refunds, and the client is emailed."""

from __future__ import annotations

from portal.email.tables import OutboxMessage
from portal.payments import service as payments
from portal.payments.tables import Refund
from tests import factories
from tests.payments.helpers import Shop


async def test_a_refund_asks_before_it_is_made(shop: Shop):
    sale_id = await payments.record_in_clinic_sale(
        shop.manager_user, client_id=shop.client.id, package_id=shop.package_id,
        location_id=shop.location_id, method="cash",
    )  # fmt: skip
    async with factories.make_client(shop.app) as desk:
        await factories.login(desk, shop.manager)
        page = await desk.get(f"/sales/{sale_id}?sessions=2")
        key = factories.input_value(page.text, "request_key")
        form = {"sessions": "2", "rule": "pro_rata", "reason": "Moving away", "request_key": key}
        review = await factories.post_form(desk, f"/sales/{sale_id}/refunds", form)
        assert review.status_code == 200
        assert await Refund.count().run() == 0, "the confirm step refunds nothing"
        text = " ".join(review.text.split())
        assert "Confirm the refund" in text and "Refund $194.84" in text
        assert "2 unused sessions; the client can no longer book them" in text
        assert f"An email to {shop.client.email}" in text and "at the clinic" in text
        assert factories.input_value(review.text, "request_key") == key
        assert factories.input_value(review.text, "confirmed") == "1"

        done = await factories.post_form(
            desk, f"/sales/{sale_id}/refunds", {**form, "confirmed": "1"}
        )
        assert done.status_code == 303
        again = await factories.post_form(
            desk, f"/sales/{sale_id}/refunds", {**form, "confirmed": "1"}
        )
        assert again.status_code == 303
    [refund] = await Refund.select().run()
    assert (refund["amount_cents"], refund["sessions_revoked"]) == (19484, 2)
    notices = await OutboxMessage.select().where(OutboxMessage.kind == "refund_notice").run()
    assert [n["to_address"] for n in notices] == [shop.client.email]
