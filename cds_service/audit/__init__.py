"""The decision log: one record per invocation and per feedback item, never blocking the answer.

`Store` (the database, used by the CLI) is exported here; the queued writer the routes use is
`cds_service.audit.writer.DecisionLog`. See docs/decision-log.md.
"""

from __future__ import annotations

from cds_service.audit.store import Store

__all__ = ["Store"]
