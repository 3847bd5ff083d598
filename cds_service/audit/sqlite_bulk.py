"""Decision records into SQLite with one statement per table for a whole batch (JSON1 `json_each`).

Why: the writer runs on a thread beside a busy event loop. SQLite releases the GIL while it
works, but a row-by-row insert (`executemany`) takes the GIL back for every row, and each time
waits up to a switch interval (5 ms) for the loop to let it go: under load the writer fell
behind without bound. Here each table's rows travel as one JSON array of arrays and SQLite
expands it itself, so the thread holds the GIL only to build the arrays and start three
statements, and the event loop keeps the CPU it needs for answers. JSON columns (`detail`,
`phi`, `facts`) travel as JSON text inside the array: SQLite copies them, it does not walk them.

The columns and their order come from the table definitions and datetimes are stored in the
dialect's own format (SQLAlchemy's converter), so a row written here reads back exactly like one
written through SQLAlchemy (tests/test_audit_bulk.py compares them).
"""

from __future__ import annotations

from typing import Any, Callable

import orjson
from sqlalchemy import Connection, Table, text

from cds_service.audit.models import decision_cards, decision_rules, decisions

JSON_DEFAULTS = {"detail": {}, "phi": None, "facts": {}}
"""JSON columns and what is stored when a record has none."""


def _insert(table: Table, columns: list[str]) -> Any:
    """INSERT INTO table (columns) SELECT value->[i] ... FROM json_each(:rows), in array order."""
    names = ", ".join(columns)
    values = ", ".join(f"json_extract(r.value, '$[{i}]')" for i in range(len(columns)))
    return text(f"INSERT INTO {table.name} ({names}) SELECT {values} FROM json_each(:rows) AS r ORDER BY r.key")


def _json_text(value: Any, column: str) -> str | None:
    if value is None:
        value = JSON_DEFAULTS[column]
    return None if value is None else orjson.dumps(value).decode()


DECISION_COLUMNS = [c.name for c in decisions.columns]
CARD_COLUMNS = ["decision_id", "card_uuid", "outcome", "indicator", "summary"]
RULE_COLUMNS = ["decision_id", "rule_id", "outcome", "reason", "facts"]
INSERT_DECISIONS = _insert(decisions, DECISION_COLUMNS)
INSERT_CARDS = _insert(decision_cards, CARD_COLUMNS)
INSERT_RULES = _insert(decision_rules, RULE_COLUMNS)


def insert_decisions(connection: Connection, records: list[dict[str, Any]], created_at: Callable[[dict[str, Any]], Any]) -> None:
    """Insert decision records (not already stored: the caller filters) with their cards and rules.

    `created_at(record)` gives the column's stored value (the dialect's datetime format).
    """
    if not records:
        return
    decision_rows, card_rows, rule_rows = [], [], []
    for record in records:
        row = []
        for column in DECISION_COLUMNS:
            if column == "created_at":
                row.append(created_at(record))
            elif column in JSON_DEFAULTS:
                row.append(_json_text(record.get(column), column))
            else:
                row.append(record.get(column))
        decision_rows.append(row)
        for card in record.get("cards", []):
            card_rows.append([record["id"], card["uuid"], card.get("outcome"), card.get("indicator"), card.get("summary")])
        for fired in record.get("fired", []):
            rule_rows.append([record["id"], fired["rule"], fired["outcome"], fired.get("reason"), _json_text(fired.get("facts"), "facts")])
    for statement, rows in ((INSERT_DECISIONS, decision_rows), (INSERT_CARDS, card_rows), (INSERT_RULES, rule_rows)):
        if rows:
            connection.execute(statement, {"rows": orjson.dumps(rows).decode()})
