"""The period bounds of `writ attest export --since/--until`: any time in any offset, dates at midnight UTC, garbage refused."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from writ.engine.core.errors import InputError
from writ.engine.wiring.bundle_period import human_size, parse_bound, period

offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
times = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 12, 30), timezones=offsets)


@given(times)
def test_any_iso_time_with_an_offset_is_that_instant(t: datetime) -> None:
    assert parse_bound(t.isoformat(), "--since") == t
    assert parse_bound(t.astimezone(UTC).isoformat().replace("+00:00", "Z"), "--since") == t


@given(st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)))
def test_a_date_is_midnight_utc(d: date) -> None:
    assert parse_bound(d.isoformat(), "--until") == datetime(d.year, d.month, d.day, tzinfo=UTC)


@given(st.text(max_size=40))
def test_any_text_is_a_time_or_an_input_error_naming_the_option(text: str) -> None:
    try:
        parse_bound(text, "--since")
    except InputError as e:
        assert e.message.startswith("--since ")


def test_until_defaults_to_now_and_an_empty_period_is_refused() -> None:
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    assert period("2026-11-22", None, now=now) == (datetime(2026, 11, 22, tzinfo=UTC), now)
    with pytest.raises(InputError, match=r"--since 2026-11-23T00:00:00Z is not before --until 2026-11-22T12:00:00Z"):
        period("2026-11-23", None, now=now)


def test_sizes_read_like_a_progress_line() -> None:
    assert [human_size(n) for n in (812, 34_500, 1_234_567)] == ["812 B", "34.5 kB", "1.2 MB"]
