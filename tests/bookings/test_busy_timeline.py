"""The free-slot search's busy timeline answers as a scan of every busy span would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from portal.bookings.availability import Timeline
from portal.staff.hours import Span

BASE = datetime(2026, 3, 1, tzinfo=UTC)


def _span(start: int, length: int) -> Span:
    return Span(BASE + timedelta(minutes=start), BASE + timedelta(minutes=start + length))


spans = st.builds(_span, st.integers(0, 600), st.integers(1, 120))


@given(busy=st.lists(spans, max_size=12), asked=st.lists(spans, min_size=1, max_size=20))
def test_timeline_overlap_equals_a_scan_of_every_span(busy, asked):
    timeline = Timeline(busy)
    for span in asked:
        assert timeline.overlaps(span) == any(span.overlaps(b) for b in busy)


def test_touching_spans_leave_their_edges_free():
    timeline = Timeline([_span(60, 60), _span(120, 60)])  # 10:00–11:00, 11:00–12:00
    assert timeline.overlaps(_span(90, 60))
    assert not timeline.overlaps(_span(0, 60)) and not timeline.overlaps(_span(180, 15))
    assert not Timeline([]).overlaps(_span(0, 15))
