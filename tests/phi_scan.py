"""Log capture for the whole test session, scanned for patient data at the end.

Every record any logger emits while the tests run is formatted the way production writes it
(cds_service.logging_setup.JsonFormatter) and, when it carries an exception, with the full
traceback a stock handler would print. The session fails if a patient's name, birth date or id
from cds_service.fixtures shows up in any of it.
"""

from __future__ import annotations

import logging
import re
import traceback

from cds_service.observability.logging import JsonFormatter
from cds_service.tooling import fixtures as fx

_patient = fx.patient()
PHI_PATTERNS = {
    "given name": re.compile(rf"\b{re.escape(_patient['name'][0]['given'][0])}\b"),
    "family name": re.compile(rf"\b{re.escape(_patient['name'][0]['family'])}\b"),
    "birth date": re.compile(re.escape(_patient["birthDate"])),
    "patient id": re.compile(rf"(?<![\w-]){re.escape(fx.DEFAULT_PATIENT)}(?![\w-])"),
}


class CaptureHandler(logging.Handler):
    """Keeps every formatted record (and exception text) of the session in memory."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.json = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.json.format(record))
            if record.exc_info and record.exc_info[0] is not None:
                self.lines.append("".join(traceback.format_exception(*record.exc_info)))
        except Exception:  # a capture must never break the test it observes
            self.lines.append(f"<unformattable record from {record.name}>")


def leaks(lines: list[str], patterns: dict[str, re.Pattern[str]] = PHI_PATTERNS) -> list[str]:
    """Each captured line that matches a patient-data pattern, with what matched."""
    found = []
    for line in lines:
        for what, pattern in patterns.items():
            if pattern.search(line):
                found.append(f"{what}: {line[:300]}")
    return found


SESSION = CaptureHandler()


def install() -> None:
    logging.getLogger().addHandler(SESSION)


def report() -> list[str]:
    logging.getLogger().removeHandler(SESSION)
    return leaks(SESSION.lines)
