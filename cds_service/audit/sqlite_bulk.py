"""Decision records into SQLite with one statement per table for a whole batch (JSON1 `json_each`).

Why: the writer runs on a thread beside a busy event loop, and every moment it holds the GIL the
loop waits. A row-by-row insert (`executemany`) takes the GIL back for every row, each time after
up to a switch interval (5 ms): under load the writer fell behind without bound. Here a batch is
prepared as three JSON arrays of rows (`prepare`, pure Python, which the writer runs on the event
loop a few records at a time), and the thread only starts a handful of statements, during which
SQLite expands the arrays itself without the GIL. JSON columns (`detail`, `phi`, `facts`) travel
as JSON text inside the arrays: SQLite copies them, it does not walk them.

The columns and their order come from the table definitions and datetimes are stored in the
dialect's own format (SQLAlchemy's converter), so a row written here reads back exactly like one
written through SQLAlchemy (tests/test_audit_bulk.py compares them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import orjson
from sqlalchemy import Connection, Table

from cds_service.audit.models import decision_cards, decision_rules, decisions

JSON_DEFAULTS = {"detail": {}, "phi": None, "facts": {}}
"""JSON columns and what is stored when a record has none."""

DECISION_COLUMNS = [c.name for c in decisions.columns]
_CREATED_AT = DECISION_COLUMNS.index("created_at")
_JSON_COLUMNS = [(DECISION_COLUMNS.index(column), column) for column in JSON_DEFAULTS if column in DECISION_COLUMNS]
CARD_COLUMNS = ["decision_id", "card_uuid", "outcome", "indicator", "summary"]
RULE_COLUMNS = ["decision_id", "rule_id", "outcome", "reason", "facts"]


def _insert_sql(table: Table, columns: list[str]) -> str:
    """INSERT INTO table (columns) SELECT value->[i] ... FROM json_each(?), in array order."""
    names = ", ".join(columns)
    values = ", ".join(f"json_extract(r.value, '$[{i}]')" for i in range(len(columns)))
    return f"INSERT INTO {table.name} ({names}) SELECT {values} FROM json_each(?) AS r ORDER BY r.key"


INSERT_DECISIONS = _insert_sql(decisions, DECISION_COLUMNS)
INSERT_CARDS = _insert_sql(decision_cards, CARD_COLUMNS)
INSERT_RULES = _insert_sql(decision_rules, RULE_COLUMNS)


def _values_sql(table: Table, columns: list[str]) -> str:
    return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


BIND_DECISIONS = _values_sql(decisions, DECISION_COLUMNS)
BIND_CARDS = _values_sql(decision_cards, CARD_COLUMNS)
BIND_RULES = _values_sql(decision_rules, RULE_COLUMNS)


def _json_text(value: Any, column: str) -> str | None:
    if value is None:
        value = JSON_DEFAULTS[column]
    return None if value is None else orjson.dumps(value).decode()


@dataclass
class Prepared:
    """Decision records as rows of the three tables (lists, serialised by `texts`)."""

    ids: list[str] = field(default_factory=list)
    decisions: list[list[Any]] = field(default_factory=list)
    cards: list[list[Any]] = field(default_factory=list)
    rules: list[list[Any]] = field(default_factory=list)

    def extend(self, other: "Prepared") -> None:
        self.ids += other.ids
        self.decisions += other.decisions
        self.cards += other.cards
        self.rules += other.rules

    def without(self, stored: set[str]) -> "Prepared":
        """The rows of the decisions not in `stored` (retries and replays skip what is written)."""
        keep = Prepared()
        keep.ids = [i for i in self.ids if i not in stored]
        keep.decisions = [row for row in self.decisions if row[0] not in stored]
        keep.cards = [row for row in self.cards if row[0] not in stored]
        keep.rules = [row for row in self.rules if row[0] not in stored]
        return keep


def prepare(records: Iterable[dict[str, Any]], created_at: Callable[[dict[str, Any]], Any]) -> Prepared:
    """Rows for decision records; a record whose id appeared earlier in `records` is left out.

    `created_at(record)` gives the column's stored value (the dialect's datetime format).
    """
    prepared = Prepared()
    seen: set[str] = set()
    for record in records:
        if record["id"] in seen:
            continue
        seen.add(record["id"])
        row = [record.get(column) for column in DECISION_COLUMNS]
        row[_CREATED_AT] = created_at(record)
        for index, column in _JSON_COLUMNS:
            row[index] = _json_text(row[index], column)
        prepared.ids.append(record["id"])
        prepared.decisions.append(row)
        for card in record.get("cards", []):
            prepared.cards.append([record["id"], card["uuid"], card.get("outcome"), card.get("indicator"), card.get("summary")])
        for fired in record.get("fired", []):
            prepared.rules.append([record["id"], fired["rule"], fired["outcome"], fired.get("reason"), _json_text(fired.get("facts"), "facts")])
    return prepared


def insert(connection: Connection, prepared: Prepared) -> None:
    """Three statements for the whole batch; the GIL is free while SQLite runs each of them."""
    for sql, rows in ((INSERT_DECISIONS, prepared.decisions), (INSERT_CARDS, prepared.cards), (INSERT_RULES, prepared.rules)):
        if rows:
            connection.exec_driver_sql(sql, (orjson.dumps(rows).decode(),))


def insert_bound(connection: Connection, prepared: Prepared) -> None:
    """The same rows, bound one by one (`executemany`): a third less CPU than `insert`, since
    SQLite no longer parses each row's JSON array once per column. For the writer process only:
    each row's step releases and takes back the GIL, which beside a busy event loop starved the
    writer (docs/performance.md, "Tried and reverted")."""
    for sql, rows in ((BIND_DECISIONS, prepared.decisions), (BIND_CARDS, prepared.cards), (BIND_RULES, prepared.rules)):
        if rows:
            connection.exec_driver_sql(sql, [tuple(row) for row in rows])


def stored_ids(connection: Connection, ids: list[str]) -> set[str]:
    """Which of these decision ids are already stored (one statement, one parameter)."""
    if not ids:
        return set()
    result = connection.exec_driver_sql("SELECT id FROM decisions WHERE id IN (SELECT value FROM json_each(?))", (orjson.dumps(ids).decode(),))
    return {row[0] for row in result}


def waiting_feedback(connection: Connection, card_uuids: list[str]) -> list[tuple[str, str]]:
    """(feedback id, card uuid) of unlinked feedback naming one of these cards (usually none)."""
    if not card_uuids:
        return []
    result = connection.exec_driver_sql(
        "SELECT id, card_uuid FROM feedback WHERE linked = 0 AND card_uuid IN (SELECT value FROM json_each(?))",
        (orjson.dumps(card_uuids).decode(),),
    )
    return [(row[0], row[1]) for row in result]
