"""The decision-log database: engine set-up, migrations, idempotent batch writes, and the reads the CLI needs.

Synchronous on purpose: the writer calls it through `asyncio.to_thread`, the CLI calls it directly.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, and_, create_engine, delete, event, func, inspect, or_, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from cds_service.audit.tables import DECISION, FEEDBACK, decision_cards, decision_rules, decisions, feedback

log = logging.getLogger("cds_service.audit")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
IN_CHUNK = 500
MIGRATION_LOCK_ID = 4_181_226  # pg_advisory_xact_lock key: one migrating worker at a time


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _chunks(items: list[Any], size: int = IN_CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases or in-memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _json(value: Any) -> str:
    """JSON columns written with orjson, the encoder the responses use (faster than the stdlib's)."""
    return orjson.dumps(value).decode()


def make_engine(url: str) -> Engine:
    """An engine for SQLite (WAL, foreign keys, busy timeout) or PostgreSQL (psycopg 3, short connect timeout).

    SQLite runs with `synchronous=NORMAL`: in WAL mode a commit then no longer waits for an
    fsync, and the database stays consistent after a crash of the process or the machine. A power cut may roll back the
    last commits, which is no more than the records still queued in memory at that moment;
    a deployment that must keep every record through power loss uses PostgreSQL.
    """
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 5}, json_serializer=_json)
        # Batches are sent as multi-row INSERTs (SQLAlchemy's "insertmanyvalues"), not as the
        # driver's executemany: sqlite3 steps that one row at a time and takes the interpreter lock
        # back between rows, so with the worker's event loop busy every row waited for a switch
        # interval and the writer fell behind without end under load.
        engine.dialect.use_insertmanyvalues_wo_returning = True

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

        return engine
    connect_args = {"connect_timeout": 3} if backend == "postgresql" else {}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, json_serializer=_json)


class Store:
    """One database of decisions and feedback."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.migrated = False

    # ---- set-up -------------------------------------------------------------------------------

    def _ensure_directory(self) -> None:
        path = sqlite_path(self.url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def migrate(self) -> None:
        """Bring the schema to the latest revision (Alembic, Config built in code). Raises when unreachable."""
        self._ensure_directory()
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        for attempt in range(3):
            try:
                with self.engine.begin() as connection:
                    if connection.dialect.name == "postgresql":
                        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_ID})
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
                break
            except SQLAlchemyError:
                # Another worker process may be migrating the same SQLite file at this moment.
                if attempt == 2 or not self.ping():
                    raise
                time.sleep(0.2 * (attempt + 1))
        self.migrated = True

    def ensure_ready(self) -> None:
        if not self.migrated:
            self.migrate()

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            self._ensure_directory()
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except (SQLAlchemyError, OSError):
            return False

    def dispose(self) -> None:
        self.engine.dispose()

    def table_names(self) -> list[str]:
        return inspect(self.engine).get_table_names()

    # ---- writing ------------------------------------------------------------------------------

    def write(self, records: list[dict[str, Any]]) -> None:
        """Write records in one transaction (SQLAlchemy Core, the same on SQLite and PostgreSQL).

        Records already stored (same id) are skipped, so a batch may be written again. Feedback
        that arrived before its decision is linked here.
        """
        self.ensure_ready()
        decision_records = [r for r in records if r.get("kind") == DECISION]
        feedback_records = [r for r in records if r.get("kind") == FEEDBACK]
        with self.engine.begin() as connection:
            stored = self._existing(connection, decisions.c.id, [r["id"] for r in decision_records])
            fresh = []
            for record in decision_records:
                if record["id"] not in stored:
                    stored.add(record["id"])
                    fresh.append(record)
            self._write_decisions(connection, fresh)
            cards = [{"decision_id": r["id"], "card_uuid": c["uuid"], "outcome": c.get("outcome")} for r in fresh for c in r.get("cards", [])]
            if cards:
                self._link_waiting_feedback(connection, cards)
            if feedback_records:
                stored_feedback = self._existing(connection, feedback.c.id, [r["id"] for r in feedback_records])
                self._write_feedback(connection, feedback_records, stored_feedback)

    def write_batch(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write the batch; return the records the database refused while it was up (written one
        by one to find them, so one bad record never holds up the others). Raises while the
        database is unreachable."""
        self.ensure_ready()
        try:
            self.write(batch)
            return []
        except Exception:
            if not self.ping():
                raise
        refused = []
        for record in batch:
            try:
                self.write([record])
            except Exception:
                if not self.ping():
                    raise
                refused.append(record)
        return refused

    def _existing(self, connection, column, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(ids):
            found.update(connection.scalars(select(column).where(column.in_(chunk))))
        return found

    def _write_decisions(self, connection, records: list[dict[str, Any]]) -> None:
        """Insert decision records (not already stored: `write` filters) with their cards and rules."""
        if not records:
            return
        rows, cards, rules = [], [], []
        for record in records:
            rows.append(
                {
                    "id": record["id"],
                    "created_at": _parse_time(record["created_at"]),
                    "service_id": record["service_id"],
                    "hook": record["hook"],
                    "hook_instance": record["hook_instance"],
                    "patient_key": record["patient_key"],
                    "patient_id": record.get("patient_id"),
                    "ruleset_version": record.get("ruleset_version"),
                    "profile": record.get("profile"),
                    "engine": record.get("engine"),
                    "status": record["status"],
                    "error": record.get("error"),
                    "duration_ms": record["duration_ms"],
                    "detail": record.get("detail") or {},
                    "phi": record.get("phi"),
                }
            )
            for card in record.get("cards", []):
                cards.append({"decision_id": record["id"], "card_uuid": card["uuid"], "outcome": card.get("outcome"), "indicator": card.get("indicator"), "summary": card.get("summary")})
            for fired in record.get("fired", []):
                rules.append({"decision_id": record["id"], "rule_id": fired["rule"], "outcome": fired["outcome"], "reason": fired.get("reason"), "facts": fired.get("facts") or {}})
        if rows:
            connection.execute(decisions.insert(), rows)
        if cards:
            connection.execute(decision_cards.insert(), cards)
        if rules:
            connection.execute(decision_rules.insert(), rules)

    def _link_waiting_feedback(self, connection, cards: list[dict[str, Any]]) -> None:
        """Feedback that arrived before its decision was written (another worker, a replay) gets linked now."""
        by_uuid = {c["card_uuid"]: c for c in cards}
        for chunk in _chunks(list(by_uuid)):
            waiting = connection.execute(
                select(feedback.c.id, feedback.c.card_uuid).where(and_(feedback.c.linked.is_(False), feedback.c.card_uuid.in_(chunk)))
            ).all()
            for feedback_id, card_uuid in waiting:
                card = by_uuid[card_uuid]
                connection.execute(
                    update(feedback).where(feedback.c.id == feedback_id).values(decision_id=card["decision_id"], linked=True, card_outcome=card["outcome"])
                )

    def _write_feedback(self, connection, records: list[dict[str, Any]], existing: set[str]) -> None:
        """Insert feedback records not in `existing` (which grows), linked to their decision when known."""
        if not records:
            return
        records = [r for r in records if r["id"] not in existing]
        existing.update(r["id"] for r in records)
        links: dict[str, tuple[str, str | None]] = {}
        for chunk in _chunks(sorted({r["card_uuid"] for r in records})):
            for card_uuid, decision_id, outcome in connection.execute(
                select(decision_cards.c.card_uuid, decision_cards.c.decision_id, decision_cards.c.outcome).where(decision_cards.c.card_uuid.in_(chunk))
            ):
                links.setdefault(card_uuid, (decision_id, outcome))
        rows = []
        for record in records:
            decision_id, card_outcome = links.get(record["card_uuid"], (None, None))
            rows.append(
                {
                    "id": record["id"],
                    "received_at": _parse_time(record["received_at"]),
                    "service_id": record["service_id"],
                    "card_uuid": record["card_uuid"],
                    "decision_id": decision_id,
                    "linked": decision_id is not None,
                    "card_outcome": card_outcome,
                    "outcome": record["outcome"],
                    "outcome_timestamp": record.get("outcome_timestamp"),
                    "override_code": record.get("override_code"),
                    "override_system": record.get("override_system"),
                    "override_display": record.get("override_display"),
                    "accepted_suggestions": record.get("accepted_suggestions") or [],
                    "user_comment": record.get("user_comment"),
                }
            )
            if decision_id is None:
                log.warning("feedback for an unknown card uuid stored unlinked", extra={"feedback_id": record["id"]})
        if rows:
            connection.execute(feedback.insert(), rows)

    # ---- reading ------------------------------------------------------------------------------

    def _cards_of(self, connection, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for chunk in _chunks(ids):
            rows = connection.execute(
                select(decision_cards).where(decision_cards.c.decision_id.in_(chunk)).order_by(decision_cards.c.id)
            ).mappings()
            for row in rows:
                card = {"uuid": row["card_uuid"], "outcome": row["outcome"], "indicator": row["indicator"]}
                if row["summary"] is not None:
                    card["summary"] = row["summary"]
                out[row["decision_id"]].append(card)
        return out

    @staticmethod
    def _decision_dict(row: Any) -> dict[str, Any]:
        record = dict(row)
        record["created_at"] = _parse_time(record["created_at"]).isoformat()
        if record.get("phi") is None:
            record.pop("phi", None)
        if record.get("patient_id") is None:
            record.pop("patient_id", None)
        return record

    def get(self, key: str) -> list[dict[str, Any]]:
        """Full records whose decision id or hookInstance is `key` (oldest first)."""
        self.ensure_ready()
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(decisions).where(or_(decisions.c.id == key, decisions.c.hook_instance == key)).order_by(decisions.c.created_at)
            ).mappings().all()
            records = [self._decision_dict(r) for r in rows]
            ids = [r["id"] for r in records]
            cards = self._cards_of(connection, ids)
            for record in records:
                record["cards"] = cards[record["id"]]
                fired = connection.execute(
                    select(decision_rules).where(decision_rules.c.decision_id == record["id"]).order_by(decision_rules.c.id)
                ).mappings()
                record["fired"] = [{"rule": f["rule_id"], "outcome": f["outcome"], "reason": f["reason"], "facts": f["facts"]} for f in fired]
                items = connection.execute(
                    select(feedback).where(feedback.c.decision_id == record["id"]).order_by(feedback.c.received_at)
                ).mappings()
                record["feedback"] = [self._feedback_dict(f) for f in items]
        return records

    @staticmethod
    def _feedback_dict(row: Any) -> dict[str, Any]:
        item = dict(row)
        item["received_at"] = _parse_time(item["received_at"]).isoformat()
        if item.get("user_comment") is None:
            item.pop("user_comment", None)
        return item

    def list(self, *, since: datetime | None = None, until: datetime | None = None, outcome: str | None = None, status: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Decision summaries, newest first: when, where, status, fired rules and card outcomes."""
        self.ensure_ready()
        query = select(
            decisions.c.id, decisions.c.created_at, decisions.c.service_id, decisions.c.hook, decisions.c.hook_instance,
            decisions.c.status, decisions.c.error, decisions.c.ruleset_version, decisions.c.duration_ms,
        )
        if since is not None:
            query = query.where(decisions.c.created_at >= since)
        if until is not None:
            query = query.where(decisions.c.created_at < until)
        if status is not None:
            query = query.where(decisions.c.status == status)
        if outcome:
            query = query.where(decisions.c.id.in_(select(decision_cards.c.decision_id).where(decision_cards.c.outcome == outcome)))
        query = query.order_by(decisions.c.created_at.desc(), decisions.c.id).limit(limit)
        with self.engine.connect() as connection:
            rows = [dict(r) for r in connection.execute(query).mappings()]
            ids = [r["id"] for r in rows]
            cards = self._cards_of(connection, ids)
            fired: dict[str, list[str]] = {i: [] for i in ids}
            for chunk in _chunks(ids):
                for decision_id, rule_id in connection.execute(
                    select(decision_rules.c.decision_id, decision_rules.c.rule_id).where(decision_rules.c.decision_id.in_(chunk)).order_by(decision_rules.c.id)
                ):
                    fired[decision_id].append(rule_id)
        for row in rows:
            row["created_at"] = _parse_time(row["created_at"]).isoformat()
            row["outcomes"] = [c["outcome"] for c in cards[row["id"]]]
            row["cards"] = [c["uuid"] for c in cards[row["id"]]]
            row["fired"] = fired[row["id"]]
        return rows

    def purge(self, before: datetime) -> dict[str, int]:
        """Delete decisions (with their cards and fired-rule rows) and feedback older than `before`."""
        self.ensure_ready()
        old = select(decisions.c.id).where(decisions.c.created_at < before)
        with self.engine.begin() as connection:
            counts = {
                "decision_cards": connection.execute(delete(decision_cards).where(decision_cards.c.decision_id.in_(old))).rowcount,
                "decision_rules": connection.execute(delete(decision_rules).where(decision_rules.c.decision_id.in_(old))).rowcount,
                "feedback": connection.execute(delete(feedback).where(feedback.c.received_at < before)).rowcount,
            }
            counts["decisions"] = connection.execute(delete(decisions).where(decisions.c.created_at < before)).rowcount
        return counts

    def feedback_report(self, *, since: datetime | None = None) -> dict[str, Any]:
        """Per outcome: cards returned, accepted, overridden, and the override reasons (clinical governance)."""
        self.ensure_ready()
        shown_query = select(decision_cards.c.outcome, func.count()).select_from(
            decision_cards.join(decisions, decisions.c.id == decision_cards.c.decision_id)
        )
        feedback_query = select(
            feedback.c.linked, feedback.c.card_outcome, feedback.c.outcome, feedback.c.override_code,
            feedback.c.override_system, feedback.c.override_display, func.count(),
        )
        if since is not None:
            shown_query = shown_query.where(decisions.c.created_at >= since)
            feedback_query = feedback_query.where(feedback.c.received_at >= since)
        shown_query = shown_query.group_by(decision_cards.c.outcome)
        feedback_query = feedback_query.group_by(
            feedback.c.linked, feedback.c.card_outcome, feedback.c.outcome, feedback.c.override_code,
            feedback.c.override_system, feedback.c.override_display,
        )
        with self.engine.connect() as connection:
            shown = {code: n for code, n in connection.execute(shown_query)}
            grouped = connection.execute(feedback_query).all()

        def blank(code: str | None) -> dict[str, Any]:
            return {"outcome": code, "cards": shown.get(code, 0) if code else None, "feedback": 0, "accepted": 0, "overridden": 0, "override_rate": None, "override_reasons": []}

        rows: dict[str, dict[str, Any]] = {code: blank(code) for code in shown if code}
        unlinked = {"feedback": 0, "accepted": 0, "overridden": 0, "override_reasons": []}
        for linked, card_outcome, outcome, code, system, display, count in grouped:
            target = rows.setdefault(card_outcome, blank(card_outcome)) if linked and card_outcome else unlinked
            target["feedback"] += count
            target[outcome] = target.get(outcome, 0) + count
            if outcome == "overridden":
                reasons = target["override_reasons"]
                match = next((r for r in reasons if r["code"] == code and r["system"] == system), None)
                if match is None:
                    match = {"code": code, "system": system, "display": display, "count": 0}
                    reasons.append(match)
                match["count"] += count
        for row in [*rows.values(), unlinked]:
            row["override_reasons"].sort(key=lambda r: (-r["count"], str(r["code"])))
            if "override_rate" in row and row["feedback"]:
                row["override_rate"] = round(row["overridden"] / row["feedback"], 4)
        return {
            "since": since.isoformat() if since else None,
            "outcomes": sorted(rows.values(), key=lambda r: r["outcome"]),
            "unlinked": unlinked,
        }
