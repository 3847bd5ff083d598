"""FHIR date, dateTime and instant values to UTC calendar dates (one convention everywhere).

A partial date counts from its first day (2026-03 -> 2026-03-01), except a birthDate, which counts
from its last possible day (`last_possible_day`). A dateTime with a time must carry a timezone
(FHIR requires it); one without is unusable rather than guessed.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timezone
from typing import Any

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")


def _partial(text: str) -> tuple[int, int | None, int | None] | None:
    m = _PARTIAL.match(text)
    if not m:
        return None
    year, month, dd = int(m.group(1)), m.group(2), m.group(3)
    return year, int(month) if month else None, int(dd) if dd else None


def parse_instant(value: Any) -> datetime | None:
    """An aware UTC datetime from a FHIR dateTime/instant with a time and timezone, else None."""
    if not isinstance(value, str) or not _DATETIME.match(value):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(timezone.utc)


def utc_date(value: Any) -> date | None:
    """The UTC calendar date of a FHIR date/dateTime/instant (a partial date: its first day)."""
    if not isinstance(value, str):
        return None
    if "T" in value:
        moment = parse_instant(value)
        return moment.date() if moment else None
    parts = _partial(value)
    if parts is None:
        return None
    year, month, dd = parts
    try:
        return date(year, month or 1, dd or 1)
    except ValueError:
        return None


def last_possible_day(value: Any) -> date | None:
    """The last day a partial date can mean (1975 -> 1975-12-31; 1975-04 -> 1975-04-30)."""
    if not isinstance(value, str):
        return None
    parts = _partial(value)
    if parts is None:
        return utc_date(value)
    year, month, dd = parts
    try:
        if month is None:
            return date(year, 12, 31)
        if dd is None:
            return date(year, month, calendar.monthrange(year, month)[1])
        return date(year, month, dd)
    except ValueError:
        return None


def period_start(period: Any) -> date | None:
    return utc_date(period.get("start")) if isinstance(period, dict) else None


def effective_date(resource: dict[str, Any]) -> date | None:
    """effectiveDateTime, effectiveInstant or effectivePeriod.start (Timing is not a date)."""
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in resource:
            return utc_date(resource.get(key))
    if "effectivePeriod" in resource:
        return period_start(resource.get("effectivePeriod"))
    return None


def completed_years(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def completed_months(born: date, today: date) -> int:
    return (today.year - born.year) * 12 + today.month - born.month - (today.day < born.day)
