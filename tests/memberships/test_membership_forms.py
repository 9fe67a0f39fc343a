"""The staff forms of a membership's page refused: the page again with a 4xx, the reason
beside the form's field (or its button), what was sent kept, and nothing saved."""

from __future__ import annotations

import secrets

from portal.memberships import subscriptions
from portal.payments.tables import Payment
from tests import factories
from tests.memberships.conftest import Club
from tests.memberships.helpers import make_plan
from tests.memberships.test_desk_billing import _enrol, _key, _manager_of, _periods
from tests.memberships.test_desk_freeze_fee import freeze_or_resume


async def test_refused_forms_show_the_page_again_with_the_reason_beside_them(club: Club) -> None:
    plan = await make_plan(
        club.location, club.service, name="Pausable", freeze_allowed=True, freeze_fee=1000
    )
    membership_id, staff = await _enrol(club, plan)
    manager = await _manager_of(club)
    path = f"/memberships/{membership_id}"
    async with factories.make_client(club.app) as web:
        await factories.login(web, manager)
        page = await web.get(path)
        key = _key(page.text)

        # Resume a running membership (a stale page): the page has no such form now, so
        # the reason stands where the forms are.
        resumed = await factories.post_form(web, f"{path}/resume", {"request_key": key})
        assert resumed.status_code == 422
        assert 'role="alert" id="form-error">The membership is already running.' in resumed.text
        # Freeze with the fee paid by a cheque: refused without a key, the choice kept.
        no_key = await factories.post_form(web, f"{path}/freeze", {"method": "cheque"})
        assert no_key.status_code == 400
        assert 'id="form-error">Please press the button again.' in no_key.text
        assert '<option value="cheque" selected>' in no_key.text
        assert not (await subscriptions.get_membership(membership_id))["paused"]

    await freeze_or_resume(staff, membership_id, True, secrets.token_urlsafe(24), "cash")
    async with factories.make_client(club.app) as web:
        await factories.login(web, manager)
        page = await web.get(path)
        key = _key(page.text)
        # Nothing is due while the frozen period is paid for: the payment form is refused
        # with the reason where it stood, and no payment is written.
        payments_before = await Payment.count()
        paid = await factories.post_form(
            web, f"{path}/payment", {"request_key": key, "method": "terminal"}
        )
        assert paid.status_code == 422
        assert (
            '<small class="field-error" id="method-error">The membership is frozen: nothing is '
            "due.</small>" in paid.text
        )
        assert await Payment.count() == payments_before
        assert await _periods(membership_id) == [("paid", 12990)]

        # The cancel form of a membership already set to end: 4xx, the reason beside it.
        confirm = await web.get(f"{path}/cancel")
        ended = await factories.post_form(
            web, f"{path}/cancel", {"request_key": _key(confirm.text)}
        )
        assert ended.status_code == 303
        again = await factories.post_form(  # the confirmation sent again from another tab
            web, f"{path}/cancel", {"request_key": secrets.token_urlsafe(24)}
        )
        assert again.status_code == 409
        assert '<p class="field-error" role="alert">This membership is already set to end.' in (
            again.text
        )
