"""`make run`: the embedded portal with everything it needs locally.

Starts the local Stripe stand-in (unless ``STRIPE_SECRET_KEY`` points at a
real Stripe account), wires its webhooks to this portal, serves on
127.0.0.1:$PORT (default 8000) and prints the demo sign-ins. Ctrl-C stops
everything this started. Unset, ``BASE_URL`` follows ``PORT`` (settings); one
naming this machine on another port stops it before anything starts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import uvicorn

from portal import logs
from portal.cli import uvicorn_options
from portal.demo import DEMO_ACCOUNTS, DEMO_PASSWORD
from portal.settings import ConfigurationError, Settings, check_served_address, get_settings

HOST = "127.0.0.1"


@contextlib.contextmanager
def stripe_standin(port: int) -> Iterator[str]:
    if os.environ.get("STRIPE_SECRET_KEY"):
        yield "your Stripe account (STRIPE_SECRET_KEY)"
        return
    try:
        # A development tool outside the portal (standin/); `make` installs it.
        from stripe_standin import standin_process
    except ModuleNotFoundError as exc:
        if exc.name != "stripe_standin":
            raise
        raise SystemExit(
            "The local Stripe stand-in is not installed. Install it with "
            "`pip install -e ./standin` (`make run` does), or set STRIPE_SECRET_KEY "
            "(and STRIPE_WEBHOOK_SECRET) to use a Stripe test account."
        ) from None

    secret = os.environ.get("STRIPE_WEBHOOK_SECRET") or "whsec_local_" + secrets.token_hex(16)
    with standin_process(
        webhook_urls=[f"http://127.0.0.1:{port}/stripe/webhook"],
        webhook_secret=secret,
        port=int(os.environ.get("STRIPE_STANDIN_PORT") or 0),
        quiet=True,
    ) as base_url:
        os.environ["STRIPE_API_BASE"] = base_url
        os.environ["STRIPE_WEBHOOK_SECRET"] = secret
        yield f"the local Stripe stand-in at {base_url}"


def main() -> None:
    # Read uncached: the stand-in below adds its address and webhook secret to
    # the environment, and the app's settings must see them.
    try:
        settings = Settings.from_env()
        check_served_address(settings, HOST, settings.port)
    except ConfigurationError as exc:
        raise SystemExit(f"portal: {exc}") from None
    port = settings.port
    with stripe_standin(port) as stripe_description:
        print(f"\nClinic Portal: {settings.base_url}/")
        print(f"Payments go to {stripe_description}.")
        print(f"Demo sign-ins (password {DEMO_PASSWORD}):")
        for email, role, _name, _locations in DEMO_ACCOUNTS:
            print(f"  {role:<11} {email}")
        print()
        settings = get_settings()
        logs.configure(settings.log_format, level=settings.log_level)
        # As `portal serve`: the app's own request lines, only a named proxy's headers.
        uvicorn.run("portal.asgi:app", host=HOST, port=port, **uvicorn_options())


if __name__ == "__main__":
    main()
