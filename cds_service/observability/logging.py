"""Structured logs: one JSON object per line, carrying the request id and decision id.

A request's context (request id, service, decision id, rules fired) lives in a context
variable: the access middleware opens it, the route adds to it with `bind(...)`, and every log
line written while the request runs carries it. Bodies, tokens and patient data are never
logged; `extra` fields are limited to plain scalars and short lists of them.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import traceback
from datetime import datetime, timezone
from typing import Any

import orjson

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("cds_log_context", default=None)

# LogRecord attributes that are not `extra` fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_MAX_STRING = 200
_HANDLER_NAME = "cds-json"


def open_context(**fields: Any) -> contextvars.Token:
    """Start the log context of one request (returns the token to close it)."""
    return _context.set(dict(fields))


def close_context(token: contextvars.Token) -> None:
    _context.reset(token)


def bind(**fields: Any) -> None:
    """Add fields (e.g. decision_id, rules) to the current request's log context, if any."""
    current = _context.get()
    if current is not None:
        current.update(fields)


def current_context() -> dict[str, Any]:
    return dict(_context.get() or {})


def _plain(value: Any) -> Any:
    """Scalars and short lists of scalars pass; anything else is reduced to its type name."""
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)  # JSON numbers of 64 bits
    if isinstance(value, str):
        return value[:_MAX_STRING]
    if isinstance(value, (list, tuple, set, frozenset)) and len(value) <= 50:
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else list(value)
        if all(v is None or isinstance(v, (str, bool, int, float)) for v in items):
            return [_plain(v) for v in items]
    return f"<{type(value).__name__}>"


def _frames(record: logging.LogRecord) -> list[str] | None:
    """Where an exception happened (file:line function), without its message or local values."""
    if not record.exc_info or not record.exc_info[2]:
        return None

    return [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}" for f in traceback.extract_tb(record.exc_info[2])][-12:]


class JsonFormatter(logging.Formatter):
    """One JSON line per record: time, level, logger, message, request context, plain extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage()[:1000],
        }
        entry.update({k: _plain(v) for k, v in current_context().items()})
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = _plain(value)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["exc_where"] = _frames(record)
        return orjson.dumps(entry, default=str).decode()


class PlainFormatter(logging.Formatter):
    """Human-readable lines for development (CDS_LOG_JSON=false); same no-PHI rules."""

    def format(self, record: logging.LogRecord) -> str:
        context = current_context()
        extras = {k: _plain(v) for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
        fields = " ".join(f"{k}={v}" for k, v in {**context, **extras}.items())
        line = f"{datetime.fromtimestamp(record.created).strftime('%H:%M:%S')} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if record.exc_info and record.exc_info[0] is not None:
            line += f" [{record.exc_info[0].__name__} at {(_frames(record) or ['?'])[-1]}]"
        return f"{line} {fields}".rstrip()


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    """Install the service's handler on the `cds_service` logger (idempotent).

    Uvicorn's access log is switched off: the service writes its own access line per request,
    with the request id and without query strings.
    """
    logger = logging.getLogger("cds_service")
    logger.setLevel(level.upper())
    formatter: logging.Formatter = JsonFormatter() if json_lines else PlainFormatter()
    for handler in logger.handlers:
        if handler.get_name() == _HANDLER_NAME:
            handler.setFormatter(formatter)
            break
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logging.getLogger("uvicorn.access").disabled = True
