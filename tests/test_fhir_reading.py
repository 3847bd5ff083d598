"""The element readers' date syntax: a full date is accepted exactly when it is a calendar day."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import TypeAdapter, ValidationError

from fhir_mappings import reading

DATE = TypeAdapter(reading.Date)
DATE_TIME = TypeAdapter(reading.DateTime)
YEARS = [0, 1, 4, 99, 100, 400, 1600, 1700, 1800, 1899, 1900, 1996, 2000, 2023, 2024, 2026, 2028, 2100, 2400, 9996, 9999]


def reads(adapter: TypeAdapter, text: str) -> bool:
    try:
        adapter.validate_python(text)
    except ValidationError:
        return False
    return True


def is_calendar_day(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("year", YEARS)
def test_a_full_date_reads_exactly_when_it_is_a_calendar_day(year: int) -> None:
    for month in range(0, 14):
        for day in range(0, 33):
            text = f"{year:04d}-{month:02d}-{day:02d}"
            expected = is_calendar_day(year, month, day)
            assert reads(DATE, text) is expected, text
            assert reads(DATE_TIME, text + "T08:30:00Z") is expected, text


@pytest.mark.parametrize("text", ["2026", "0000", "2026-02", "2026-12", "2024-02-29T23:59:59.5+14:00", "2026-03-01T10:00+01:00"])
def test_partial_dates_and_times_read(text: str) -> None:
    assert reads(DATE_TIME, text)


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "26-01-01", "2026-1-01", "2026-02-29", "2026-04-31", "2026-01-01T10:00", "2026-01-01 ", "2026-01-01T24:00Z"])
def test_malformed_dates_do_not_read(text: str) -> None:
    assert not reads(DATE_TIME, text)
