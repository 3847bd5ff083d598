"""The decision-log tables (SQLAlchemy 2 Core). Migrations in `migrations/` create them; keep both in step.

- `decisions`: one row per invocation (200 with cards or none, or an error after parsing).
- `decision_cards`: the cards of a decision, indexed by card uuid so feedback finds its decision.
- `decision_rules`: the fired rules of a decision with the (banded) facts each matched.
- `feedback`: one row per feedback item, linked to its decision when the card uuid is known.
- `seen_tokens`: the JWT ids accepted so far (the replay check shared by every worker and replica).
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

DECISION = "decision"
FEEDBACK = "feedback"
"""The kinds of record the log is handed (`records.py`): a decision, or a feedback item."""

decisions = Table(
    "decisions",
    metadata,
    # decision id, also in the response extension
    Column("id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("service_id", String(128), nullable=False),
    Column("hook", String(64), nullable=False),
    Column("hook_instance", String(256), nullable=False),
    # HMAC-SHA256 of the patient id
    Column("patient_key", String(64), nullable=False),
    # PHI mode only
    Column("patient_id", String(256), nullable=True),
    Column("ruleset_version", String(64), nullable=True),
    Column("profile", String(64), nullable=True),
    Column("engine", String(32), nullable=True),
    # HTTP status of the answer
    Column("status", Integer, nullable=False),
    Column("error", String(64), nullable=True),
    Column("duration_ms", Float, nullable=False),
    # silent rules, excluded resources, notes, unknown data
    Column("detail", JSON, nullable=False),
    # PHI mode only: fact values
    Column("phi", JSON, nullable=True),
    Index("ix_decisions_created_at", "created_at"),
    Index("ix_decisions_hook_instance", "hook_instance"),
    Index("ix_decisions_patient_key", "patient_key"),
)

decision_cards = Table(
    "decision_cards",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("decision_id", String(64), ForeignKey("decisions.id", ondelete="CASCADE"), nullable=False),
    Column("card_uuid", String(128), nullable=False),
    Column("outcome", String(64), nullable=True),
    Column("indicator", String(16), nullable=True),
    # PHI mode only
    Column("summary", Text, nullable=True),
    Index("ix_decision_cards_card_uuid", "card_uuid"),
    Index("ix_decision_cards_decision_id", "decision_id"),
    Index("ix_decision_cards_outcome", "outcome"),
)

decision_rules = Table(
    "decision_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("decision_id", String(64), ForeignKey("decisions.id", ondelete="CASCADE"), nullable=False),
    Column("rule_id", String(128), nullable=False),
    Column("outcome", String(64), nullable=False),
    Column("reason", String(64), nullable=True),
    # fact type -> sources and banded values
    Column("facts", JSON, nullable=False),
    Index("ix_decision_rules_decision_id", "decision_id"),
    Index("ix_decision_rules_rule_id", "rule_id"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("service_id", String(128), nullable=False),
    Column("card_uuid", String(128), nullable=False),
    # the decision that returned this card, when known
    Column("decision_id", String(64), nullable=True),
    # false: no decision returned this card uuid
    Column("linked", Boolean, nullable=False),
    Column("card_outcome", String(64), nullable=True),
    # accepted or overridden
    Column("outcome", String(16), nullable=False),
    Column("outcome_timestamp", String(64), nullable=True),
    Column("override_code", String(128), nullable=True),
    Column("override_system", String(256), nullable=True),
    Column("override_display", String(256), nullable=True),
    Column("accepted_suggestions", JSON, nullable=False),
    # PHI mode only
    Column("user_comment", Text, nullable=True),
    Index("ix_feedback_card_uuid", "card_uuid"),
    Index("ix_feedback_received_at", "received_at"),
    Index("ix_feedback_decision_id", "decision_id"),
)

seen_tokens = Table(
    "seen_tokens",
    metadata,
    # a client JWT's `iss` and `jti`: each pair is accepted once, by whichever process sees it first
    Column("issuer", String(512), primary_key=True),
    Column("jti", String(256), primary_key=True),
    # when the token (plus the clock skew allowed) expires; rows past it are pruned
    Column("expires_at", Float, nullable=False),
    Index("ix_seen_tokens_expires_at", "expires_at"),
)
