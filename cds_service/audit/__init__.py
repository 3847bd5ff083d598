"""The decision log: one record per invocation and per feedback item, never blocking the answer.

Public surface: `DecisionLog` (queued writer used by the routes) and `Store` (the database, used
by the CLI). See docs/decision-log.md. Both are imported on first use: the writer process
(`audit/writing.py`) imports this package too, and needs only the database side of it, not the
rules and FHIR models behind the decision records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cds_service.audit.store import Store
    from cds_service.audit.writer import DecisionLog

__all__ = ["DecisionLog", "Store"]


def __getattr__(name: str) -> Any:
    if name == "DecisionLog":
        from cds_service.audit.writer import DecisionLog

        return DecisionLog
    if name == "Store":
        from cds_service.audit.store import Store

        return Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
