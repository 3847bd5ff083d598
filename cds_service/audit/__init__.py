"""The decision log: one record per invocation and per feedback item, never blocking the answer.

Public surface: `DecisionLog` (queued writer used by the routes) and `Store` (the database, used
by the CLI). See docs/decision-log.md.
"""

from __future__ import annotations

from cds_service.audit.store import Store
from cds_service.audit.writer import DecisionLog

__all__ = ["DecisionLog", "Store"]
