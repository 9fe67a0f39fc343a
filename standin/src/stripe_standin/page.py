"""The hosted payment page of the stand-in, in place of Stripe's Checkout page.

Plain HTML forms, no JavaScript: "Pay" and "Decline" post back to the same
URL; a link returns to the portal's ``cancel_url``. It is deliberately
labelled as a test page so nobody mistakes it for a real payment form.
"""

from __future__ import annotations

from decimal import Decimal
from html import escape
from typing import Any

from stripe_standin.resources import ZERO_DECIMAL

_STYLE = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
 background:#f6f8fa;color:#1a1f36}
.banner{background:#ffefc2;color:#6b4b00;text-align:center;padding:.5rem 1rem;font-size:.875rem}
main{max-width:28rem;margin:3rem auto;background:#fff;border-radius:12px;
 box-shadow:0 2px 12px rgba(26,31,54,.12);padding:2rem}
h1{font-size:1.25rem;margin:0 0 1.5rem}
table{width:100%;border-collapse:collapse;margin-bottom:1.5rem}
td{padding:.5rem 0;border-bottom:1px solid #e3e8ee;vertical-align:top}
td.amount{text-align:right;white-space:nowrap}
tr.total td{font-weight:600;border-bottom:none;font-size:1.125rem}
.muted{color:#697386;font-size:.875rem}
label{display:block;font-size:.875rem;margin-bottom:.25rem}
input[type=email]{width:100%;padding:.6rem;border:1px solid #c1c9d2;border-radius:6px;
 font:inherit;margin-bottom:1rem}
.card{border:1px dashed #c1c9d2;border-radius:6px;padding:.6rem;margin-bottom:1.25rem;
 color:#3c4257;font-family:ui-monospace,monospace}
.actions{display:flex;gap:.75rem}
button{flex:1;padding:.75rem;border:0;border-radius:6px;font:inherit;font-weight:600;cursor:pointer}
button.pay{background:#635bff;color:#fff}
button.decline{background:#fff;color:#df1b41;border:1px solid #df1b41}
.message{padding:.75rem 1rem;border-radius:6px;margin-bottom:1.25rem}
.message.error{background:#fde8ec;color:#a41c32}
.message.info{background:#e8f0fe;color:#1a3c8f}
a{color:#635bff}
.back{display:inline-block;margin-top:1.25rem;font-size:.875rem}
"""


def format_amount(amount: int, currency: str) -> str:
    if currency.lower() in ZERO_DECIMAL:
        return f"{amount:,} {currency.upper()}"
    return f"{Decimal(amount).scaleb(-2):,.2f} {currency.upper()}"


def _document(title: str, body: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        '<div class="banner">Test mode: local Stripe stand-in. No real card is charged.</div>'
        f"<main>{body}</main></body></html>\n"
    )


def _items(session: Any) -> str:
    rows = []
    for item in session._line_items:
        unit = item["price"]["unit_amount"]
        quantity = item["quantity"]
        detail = (
            f'<div class="muted">{quantity} × {escape(format_amount(unit, item["currency"]))}</div>'
            if quantity != 1
            else ""
        )
        description = item["price"]["product"].get("description")
        if description:
            detail += f'<div class="muted">{escape(description)}</div>'
        rows.append(
            f"<tr><td>{escape(item['description'])}{detail}</td>"
            f'<td class="amount">{escape(format_amount(item["amount_total"], item["currency"]))}'
            "</td></tr>"
        )
    total = escape(format_amount(session.amount_total, session.currency))
    rows.append(f'<tr class="total"><td>Total due</td><td class="amount">{total}</td></tr>')
    return "<table>" + "".join(rows) + "</table>"


def render(session: Any, message: str | None = None) -> str:
    """The page for ``session`` in its current state; ``message`` after a decline."""
    total = format_amount(session.amount_total, session.currency)
    if session.status == "complete":
        link = escape(session._success_redirect())
        body = (
            "<h1>Payment complete</h1>"
            '<div class="message info">This checkout session has already been paid.</div>'
            f"{_items(session)}"
            f'<a class="back" href="{link}">Return to the merchant</a>'
        )
        return _document("Payment complete", body)
    if session.status == "expired":
        back = (
            f'<a class="back" href="{escape(session.cancel_url)}">Return to the merchant</a>'
            if session.cancel_url
            else ""
        )
        body = (
            "<h1>Checkout session expired</h1>"
            '<div class="message info">This checkout session has expired; nothing was '
            "charged. Start again from the merchant's site.</div>"
            f"{back}"
        )
        return _document("Checkout session expired", body)

    notice = f'<div class="message error" role="alert">{escape(message)}</div>' if message else ""
    email = session.customer_email or ""
    readonly = " readonly" if session.customer_email else ""
    cancel = (
        f'<a class="back" href="{escape(session.cancel_url)}">← Cancel and return</a>'
        if session.cancel_url
        else ""
    )
    body = (
        f"<h1>Pay {escape(total)}</h1>"
        f"{notice}"
        f"{_items(session)}"
        f'<form method="post" action="/checkout/pay/{escape(session.id)}">'
        '<label for="email">Email</label>'
        f'<input type="email" id="email" name="email" value="{escape(email)}"'
        f' autocomplete="email"{readonly}>'
        '<div class="card" aria-label="Test card">Visa test card •••• 4242 · 12/34</div>'
        '<div class="actions">'
        f'<button class="pay" type="submit" name="action" value="pay">Pay {escape(total)}</button>'
        '<button class="decline" type="submit" name="action" value="decline">Decline</button>'
        "</div></form>"
        f"{cancel}"
    )
    return _document(f"Pay {total}", body)


def not_found(session_id: str) -> str:
    body = (
        "<h1>Checkout session not found</h1>"
        f'<div class="message error">There is no checkout session {escape(session_id)}.</div>'
    )
    return _document("Not found", body)


def card_page(session: Any) -> str:
    """The hosted card update: a card that pays, or one that is declined (to test)."""
    body = (
        "<h1>Update your card</h1>"
        "<p>The new card is used for your next payments; unpaid invoices are paid with it.</p>"
        f'<form method="post" action="/billing_portal/{escape(session.id)}">'
        '<button class="pay" type="submit" name="action" value="save">Save card</button> '
        '<button type="submit" name="action" value="decline">Save a card that is declined'
        "</button></form>"
        f'<p><a href="{escape(session.return_url)}">Back</a></p>'
    )
    return _document("Update your card", body)
