"""The rows of the sales list, written in Python (``portal.htmlrows``): number, local
date, client, package, location, total, method and status, every value escaped."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from markupsafe import Markup

from portal.formatting import local_dt, money
from portal.htmlrows import cell, escape, link, rows, text

__all__ = ["sale_rows"]

_DISPUTED = ' <span class="badge badge-muted">Disputed</span>'


def sale_rows(
    sales: Sequence[Mapping[str, Any]],
    methods: Mapping[str, str],
    statuses: Mapping[str, str],
    href: Callable[[int], str],
) -> Markup:
    """The sales list's rows (``listing.sales_query``'s rows); ``href`` a sale's page."""

    def cells(s: Mapping[str, Any]) -> list[str]:
        name, email = s["client_name"], s["client_email"]
        client = str(escape(email))
        if name:
            client = f'{escape(name)}<br><small class="muted">{client}</small>'
        method, status = s["payment_method"], s["status"]
        sale_id = int(s["id"])
        return [
            cell(link(href(sale_id), f"{sale_id:06d}")),
            cell(text(local_dt(s["created_at"], s["location_timezone"], "%Y-%m-%d"))),
            cell(client),
            cell(text(str(s["item_name"]))),
            cell(text(str(s["location_name"]))),
            cell(text(money(s["total_cents"], s["currency"])), "num"),
            cell(text(str(methods.get(method, method)))),
            cell(
                f'<span class="badge sale-{text(str(status))}">'
                f"{text(str(statuses.get(status, status)))}</span>"
                f"{_DISPUTED if s['frozen'] else ''}"
            ),
        ]

    return rows(sales, cells)
