"""The rows of the sales list, written in Python.

Fifty rows of eight cells, each a template expression through the ``data_table``
macro's caller, were the largest part of the first sales page's time. The
template keeps the table's head, pager and the rest; this writes the ``<tr>``
rows of its body as the template wrote them, every value escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from markupsafe import Markup, escape

from portal.formatting import local_dt, money

__all__ = ["sale_rows"]

_DISPUTED = ' <span class="badge badge-muted">Disputed</span>'


@lru_cache(maxsize=4096)
def _text(value: str) -> str:
    """``value`` escaped, once for the values a page repeats (places, packages,
    labels, amounts)."""
    return str(escape(value))


def sale_rows(
    rows: Sequence[Mapping[str, Any]], methods: Mapping[str, str], statuses: Mapping[str, str]
) -> Markup:
    """The sales list's rows (``listing.sales_query``'s rows): number, local date,
    client, package, location, total, method and status."""
    out = []
    for s in rows:
        name, email = s["client_name"], s["client_email"]
        client = str(escape(email))
        if name:
            client = f'{escape(name)}<br><small class="muted">{client}</small>'

        method, status = s["payment_method"], s["status"]
        sale_id = int(s["id"])
        out.append(
            f'  <tr>\n    <td><a href="/sales/{sale_id}">{sale_id:06d}</a></td>\n'
            f"    <td>{_text(local_dt(s['created_at'], s['location_timezone'], '%Y-%m-%d'))}</td>\n"
            f"    <td>{client}</td>\n"
            f"    <td>{_text(str(s['item_name']))}</td>\n"
            f"    <td>{_text(str(s['location_name']))}</td>\n"
            f'    <td class="num">{_text(money(s["total_cents"], s["currency"]))}</td>\n'
            f"    <td>{_text(str(methods.get(method, method)))}</td>\n"
            f'    <td><span class="badge sale-{_text(str(status))}">'
            f"{_text(str(statuses.get(status, status)))}</span>"
            f"{_DISPUTED if s['frozen'] else ''}</td>\n  </tr>\n"
        )
    return Markup("".join(out))  # noqa: S704 (every value above is escaped)
