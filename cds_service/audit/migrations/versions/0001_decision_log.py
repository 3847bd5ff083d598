"""Decision log: decisions, their cards and fired rules, and feedback.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service_id", sa.String(128), nullable=False),
        sa.Column("hook", sa.String(64), nullable=False),
        sa.Column("hook_instance", sa.String(256), nullable=False),
        sa.Column("patient_key", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(256), nullable=True),
        sa.Column("ruleset_version", sa.String(64), nullable=True),
        sa.Column("profile", sa.String(64), nullable=True),
        sa.Column("engine", sa.String(32), nullable=True),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error", sa.String(64), nullable=True),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("phi", sa.JSON, nullable=True),
    )
    op.create_index("ix_decisions_created_at", "decisions", ["created_at"])
    op.create_index("ix_decisions_hook_instance", "decisions", ["hook_instance"])
    op.create_index("ix_decisions_patient_key", "decisions", ["patient_key"])

    op.create_table(
        "decision_cards",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("decision_id", sa.String(64), sa.ForeignKey("decisions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("card_uuid", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(64), nullable=True),
        sa.Column("indicator", sa.String(16), nullable=True),
        sa.Column("summary", sa.Text, nullable=True),
    )
    op.create_index("ix_decision_cards_card_uuid", "decision_cards", ["card_uuid"])
    op.create_index("ix_decision_cards_decision_id", "decision_cards", ["decision_id"])
    op.create_index("ix_decision_cards_outcome", "decision_cards", ["outcome"])

    op.create_table(
        "decision_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("decision_id", sa.String(64), sa.ForeignKey("decisions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("rule_id", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("facts", sa.JSON, nullable=False),
    )
    op.create_index("ix_decision_rules_decision_id", "decision_rules", ["decision_id"])
    op.create_index("ix_decision_rules_rule_id", "decision_rules", ["rule_id"])

    op.create_table(
        "feedback",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service_id", sa.String(128), nullable=False),
        sa.Column("card_uuid", sa.String(128), nullable=False),
        sa.Column("decision_id", sa.String(64), nullable=True),
        sa.Column("linked", sa.Boolean, nullable=False),
        sa.Column("card_outcome", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("outcome_timestamp", sa.String(64), nullable=True),
        sa.Column("override_code", sa.String(128), nullable=True),
        sa.Column("override_system", sa.String(256), nullable=True),
        sa.Column("override_display", sa.String(256), nullable=True),
        sa.Column("accepted_suggestions", sa.JSON, nullable=False),
        sa.Column("user_comment", sa.Text, nullable=True),
    )
    op.create_index("ix_feedback_card_uuid", "feedback", ["card_uuid"])
    op.create_index("ix_feedback_received_at", "feedback", ["received_at"])
    op.create_index("ix_feedback_decision_id", "feedback", ["decision_id"])


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("decision_rules")
    op.drop_table("decision_cards")
    op.drop_table("decisions")
