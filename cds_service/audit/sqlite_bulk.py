"""Decision records into SQLite with one statement per table for a whole batch (JSON1 `json_each`).

Why: the writer runs on a thread beside a busy event loop. SQLite releases the GIL while it
works, but a row-by-row insert (`executemany`) takes the GIL back for every row, and each time
waits up to a switch interval (5 ms) for the loop to let it go: under load the writer fell
behind without bound. Here the batch travels as one JSON text and SQLite expands it itself, so
the thread holds the GIL only to start each of three statements, and the event loop keeps the
CPU it needs for answers.

The columns, their order and their storage formats come from the table definitions (SQLAlchemy
writes datetimes as text on SQLite; this module uses the dialect's own converter), so a row
written here reads back exactly like one written through SQLAlchemy (tests compare them).
"""

from __future__ import annotations

from typing import Any, Callable

import orjson
from sqlalchemy import Connection, Table, text

from cds_service.audit.models import decision_cards, decision_rules, decisions

JSON_COLUMNS = {"detail": "{}", "phi": None, "facts": "{}"}
"""JSON columns and the text stored when the record has none (`{}` where the column is NOT NULL)."""


def _insert(table: Table, columns: list[tuple[str, str]], from_clause: str, order: str) -> Any:
    """INSERT INTO table (columns) SELECT <expressions> FROM <json_each ...> ORDER BY <order>."""
    names = ", ".join(name for name, _ in columns)
    expressions = ", ".join(expression for _, expression in columns)
    return text(f"INSERT INTO {table.name} ({names}) SELECT {expressions} FROM {from_clause} ORDER BY {order}")


def _extract(source: str, key: str, column: str) -> str:
    expression = f"json_extract({source}.value, '$.{key}')"
    if column in JSON_COLUMNS and JSON_COLUMNS[column] is not None:
        return f"coalesce({expression}, '{JSON_COLUMNS[column]}')"
    return expression


_DECISION_COLUMNS = [(c.name, _extract("r", c.name, c.name)) for c in decisions.columns]
_CARD_KEYS = {"decision_id": ("r", "id"), "card_uuid": ("c", "uuid"), "outcome": ("c", "outcome"), "indicator": ("c", "indicator"), "summary": ("c", "summary")}
_RULE_KEYS = {"decision_id": ("r", "id"), "rule_id": ("f", "rule"), "outcome": ("f", "outcome"), "reason": ("f", "reason"), "facts": ("f", "facts")}

INSERT_DECISIONS = _insert(decisions, _DECISION_COLUMNS, "json_each(:batch) AS r", "r.key")
INSERT_CARDS = _insert(
    decision_cards,
    [(name, _extract(source, key, name)) for name, (source, key) in _CARD_KEYS.items()],
    "json_each(:batch) AS r, json_each(r.value, '$.cards') AS c",
    "r.key, c.key",
)
INSERT_RULES = _insert(
    decision_rules,
    [(name, _extract(source, key, name)) for name, (source, key) in _RULE_KEYS.items()],
    "json_each(:batch) AS r, json_each(r.value, '$.fired') AS f",
    "r.key, f.key",
)


def insert_decisions(connection: Connection, records: list[dict[str, Any]], created_at: Callable[[Any], Any]) -> None:
    """Insert decision records (not already stored: the caller filters) with their cards and rules.

    `created_at(record)` gives the column's stored value (the dialect's datetime format).
    """
    if not records:
        return
    rows = [{**record, "created_at": created_at(record)} for record in records]
    batch = orjson.dumps(rows).decode()
    connection.execute(INSERT_DECISIONS, {"batch": batch})
    connection.execute(INSERT_CARDS, {"batch": batch})
    connection.execute(INSERT_RULES, {"batch": batch})
