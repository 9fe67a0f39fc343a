"""Links built by templates: ``url_for(...) | query(...)`` and the shared table macro."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader

from portal.web.templating import with_query

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, "/appointments/new"),
        ({"location": 3, "day": "2026-12-01"}, "/appointments/new?location=3&day=2026-12-01"),
        # None leaves a parameter out; an empty string keeps the form's "any" choice.
        ({"location": 3, "therapist": None}, "/appointments/new?location=3"),
        ({"therapist": ""}, "/appointments/new?therapist="),
        # An email and a return path stay one parameter each; slashes stay readable.
        ({"client_email": "a+b@x.test"}, "/appointments/new?client_email=a%2Bb%40x.test"),
        ({"next": "/buy/3?location=x&y=1"}, "/appointments/new?next=/buy/3%3Flocation%3Dx%26y%3D1"),
    ],
)
def test_query_appends_encoded_parameters(params: dict[str, object], expected: str) -> None:
    assert with_query("/appointments/new", **params) == expected


def render_table(rows: list[dict[str, object]], **options: object) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)
    env.globals["url_with"] = lambda request, **params: "?after=" + str(params.get("after"))
    source = (
        '{% from "macros.html" import data_table %}'
        "{% call(r) data_table(rows, head, empty, page, request, cls) %}<tr><td>{{ r.name }}</td></tr>{% endcall %}"
    )
    defaults: dict[str, object] = {
        "head": ["Name", ("Total", "num"), None, ("Open", "visually-hidden")],
        "empty": "Nothing <here>.",
        "page": None,
        "request": None,
        "cls": "striped",
    }
    return env.from_string(source).render(rows=rows, **(defaults | options))


def test_data_table_scrolls_labels_every_column_and_skips_left_out_ones() -> None:
    html = render_table([{"name": "Ann"}, {"name": "<b>Bo</b>"}])
    assert '<div class="overflow-auto">' in html
    assert html.count('<th scope="col"') == 3
    assert '<th scope="col" class="num">Total</th>' in html
    assert '<span class="visually-hidden">Open</span>' in html
    assert "<td>Ann</td>" in html and "&lt;b&gt;Bo&lt;/b&gt;" in html
    assert "Nothing" not in html


def test_data_table_says_so_when_empty_and_pages_when_asked() -> None:
    assert '<p class="muted">Nothing &lt;here&gt;.</p>' in render_table([])
    assert "<table" not in render_table([])

    class Page:
        next_cursor = "abc"

    class Request:
        query_params: dict[str, str] = {}

    html = render_table([{"name": "Ann"}], page=Page(), request=Request())
    assert 'rel="next"' in html and "?after=abc" in html


def test_data_table_numbers_rows_when_the_call_asks_for_the_loop() -> None:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)
    source = (
        '{% from "macros.html" import data_table %}'
        "{% call(r, n) data_table(rows, ['#', 'Name'], '', labelledby='t') %}"
        "<tr><th>{{ n.index }}</th><td>{{ r }}</td></tr>{% endcall %}"
    )
    html = env.from_string(source).render(rows=["a", "a"])
    assert 'aria-labelledby="t"' in html
    assert "<th>1</th><td>a</td>" in html and "<th>2</th><td>a</td>" in html
