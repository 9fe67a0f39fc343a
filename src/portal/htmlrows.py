"""The rows of long list tables, written in Python.

Fifty rows of six to eight cells, each a template expression (a macro call
through the ``data_table`` macro's caller), were the largest part of a list
page's time (sales, clients, appointments). Such a page's template keeps the
table's head, pager and the rest, and hands ``data_table`` its ``body``:
``rows`` writes each ``<tr>`` from the cells a list's own function gives for
one row (``cell``), laid out as the template wrote them.

Every value in a cell is escaped: ``text`` for the values a page repeats
(places, names of services, labels, amounts; escaped once and kept), ``escape``
for the rest. The fixed pieces the templates share (``active_badge``, the
``status_badge`` macro's badge) are written once, here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TypeVar

from markupsafe import Markup, escape

__all__ = ["active_badge", "cell", "escape", "link", "rows", "text"]

Row = TypeVar("Row")

_ACTIVE = '<span class="badge badge-ok">Active</span>'
_INACTIVE = '<span class="badge badge-muted">Inactive</span>'


@lru_cache(maxsize=4096)
def text(value: str) -> str:
    """``value`` escaped, once for the values a page repeats."""
    return str(escape(value))


def cell(content: str, cls: str = "") -> str:
    """A ``<td>`` of HTML already escaped; ``cls`` its class."""
    return f'<td class="{cls}">{content}</td>' if cls else f"<td>{content}</td>"


def link(href: str, content: str) -> str:
    """A link of HTML already escaped to an address the portal wrote (a route's path)."""
    return f'<a href="{escape(href)}">{content}</a>'


def active_badge(active: object) -> Markup:
    """An active or inactive row's badge (the ``status_badge`` macro)."""
    return Markup(_ACTIVE if active else _INACTIVE)  # noqa: S704 (fixed text)


def rows(items: Iterable[Row], cells: Callable[[Row], Iterable[str]]) -> Markup:
    """The ``<tr>`` of each item, its cells from ``cells`` (``<td>`` written escaped)."""
    out = ["  <tr>\n    " + "\n    ".join(cells(item)) + "\n  </tr>\n" for item in items]
    return Markup("".join(out))  # noqa: S704 (every cell is written escaped)
