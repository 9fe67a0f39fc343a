"""Redirect parameters cannot send a user off-site.

The portal follows one user-supplied target, ``next`` (sign-in and sign-up,
by GET when already signed in and by POST), and sends buyers to Stripe with
success and cancel URLs it builds itself. (Every page, as every role, is also
asked with the usual redirect parameter names by ``test_xss``'s final crawl.)
"""

from __future__ import annotations

from typing import Any

from portal.payments.tables import Payment
from tests import factories
from tests.payments.conftest import shop
from tests.payments.helpers import Shop
from tests.security.harness import (
    HOSTILE,
    STRONG_PASSWORD,
    csrf,
    leaves_site,
    make_client,
    off_site,
)
from tests.stripe_standin import StandIn

__all__ = ["shop"]  # the payments tests' fixture: a clinic that sells a package


def test_the_browser_model_reads_each_hostile_target_as_off_site() -> None:
    assert [t for t in HOSTILE if not leaves_site(t)] == []
    assert not leaves_site("/rooms?status=all")
    assert not leaves_site("/%2F%2Fevil.example")


async def test_next_never_leaves_the_site(app: Any, owner: Any, cheap_hashing: None) -> None:
    """``next`` on sign-in and sign-up, posted and (signed in) in the URL."""
    failures: list[str] = []
    for n, target in enumerate(HOSTILE):
        # Sign-in, then the signed-in GETs of both pages.
        async with make_client(app) as client:
            token = await csrf(client)
            page = await client.get("/login", params={"next": target})
            assert page.status_code == 200
            response = await client.post(
                "/login",
                data={
                    "email": owner.email,
                    "password": owner.password,
                    "next": target,
                    "_csrf_token": token,
                },
            )
            assert response.status_code == 303, response.text[:300]
            for label, r in (
                ("POST /login", response),
                ("GET /login signed in", await client.get("/login", params={"next": target})),
                ("GET /signup signed in", await client.get("/signup", params={"next": target})),
            ):
                if off_site(r):
                    failures.append(f"{label} next={target!r} -> {r.headers['location']!r}")
        # Sign-up, then sign-up again while signed in.
        async with make_client(app) as client:
            token = await csrf(client)
            await client.get("/signup", params={"next": target})
            response = await client.post(
                "/signup",
                data={
                    "name": "Redirect Test",
                    "email": f"redirect{n}@example.test",
                    "password": STRONG_PASSWORD,
                    "confirm_password": STRONG_PASSWORD,
                    "consent": "on",
                    "next": target,
                    "_csrf_token": token,
                },
            )
            assert response.status_code == 303, response.text[:300]
            again = await client.post("/signup", data={"next": target, "_csrf_token": token})
            for label, r in (("POST /signup", response), ("POST /signup signed in", again)):
                if off_site(r):
                    failures.append(f"{label} next={target!r} -> {r.headers['location']!r}")
    assert not failures, "\n".join(failures)
    # A local target is still followed.
    async with make_client(app) as client:
        response = await factories.post_form(
            client,
            "/login",
            {"email": owner.email, "password": owner.password, "next": "/rooms?status=all"},
        )
        assert response.headers["location"] == "/rooms?status=all"


async def test_checkout_returns_only_to_the_portal(shop: Shop, stripe_standin: StandIn) -> None:
    """The buyer goes to Stripe and comes back to the portal's own pages,
    whatever the form or the Host header say: the URLs come from BASE_URL."""
    async with make_client(shop.app) as client:
        await factories.login(client, shop.client)
        response = await client.post(
            f"/buy/{shop.package_id}",
            data={
                "location": "shop",
                "success_url": "https://evil.example/ok",
                "cancel_url": "https://evil.example/cancel",
                "next": "https://evil.example",
                "_csrf_token": await csrf(client),
            },
            headers={"x-forwarded-host": "evil.example", "x-forwarded-proto": "https"},
        )
    assert response.status_code == 303, response.text[:500]
    assert response.headers["location"].startswith(stripe_standin.base_url)
    payment = await Payment.select().where(Payment.checkout_session_id.is_not_null()).first().run()
    assert payment is not None
    stored = await stripe_standin.api(
        "GET", f"/v1/checkout/sessions/{payment['checkout_session_id']}"
    )
    session: dict[str, Any] = stored.json()
    base = "http://testserver"  # the suite's BASE_URL
    assert session["success_url"].startswith(f"{base}/purchases/"), session["success_url"]
    assert session["cancel_url"] == f"{base}/book/shop", session["cancel_url"]
