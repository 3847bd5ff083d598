"""The decision log: one record per invocation and per feedback item, never blocking the answer.

Foundation version: a no-op log with the interface the routes call. The auditability issue
replaces it with the SQLAlchemy-backed, queued implementation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cds_service.models import Feedback
    from cds_service.pipeline import Evaluation
    from cds_service.settings import Settings


class DecisionLog:
    """Records decisions and feedback. `record_*` never raise and never wait on the database."""

    def __init__(self, settings: "Settings") -> None:
        self.settings = settings

    async def start(self) -> None:
        """Open the database and start the background writer."""

    async def stop(self) -> None:
        """Flush queued records and close (graceful shutdown)."""

    def record_decision(self, evaluation: "Evaluation") -> None:
        """Queue the record of an invocation that produced an answer (cards or none)."""

    def record_failure(self, *, decision_id: str, service_id: str, hook: str, hook_instance: str, patient_id: str, status: int, error: str, detail: Any, duration_ms: float) -> None:
        """Queue the record of an invocation that was answered with an error (e.g. 412)."""

    def record_feedback(self, service_id: str, feedback: "Feedback") -> None:
        """Queue feedback items; each is linked to the decision that produced its card uuid."""

    def healthy(self) -> bool:
        """False when the database is unreachable and the buffer is full (for /readyz)."""
        return True
