"""The decision log: a bounded buffer with one writer. record_* enqueue and return; one background
task hands batches to a thread that writes them (`Store.write_batch`), off the event loop.

The clinical answer never waits for the database and never fails because of it. While the database
is down, records stay in a bounded in-memory queue and the writer retries with backoff (counting
`cds_decision_log_write_failures_total`, publishing `cds_decision_log_backlog`). A clean stop
flushes what it can within `flush_timeout` and spills the rest to a JSON-lines file that the next
start replays. A record the database refuses on its own (while the database is up) goes to a
`rejected` file rather than blocking every record behind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from cds_service.audit.records import decision_record, failure_record, feedback_records, now_utc
from cds_service.audit.spill import SpillFile, default_spill_dir, sqlite_path
from cds_service.audit.store import Store
from cds_service.engine.ruleset import RULES_DIR, ruleset_version
from cds_service.observability import metrics

if TYPE_CHECKING:
    from datetime import datetime

    from cds_service.decision import Evaluation
    from cds_service.hooks import Feedback
    from cds_service.settings import Settings

log = logging.getLogger("cds_service.audit")


def _ruleset_version(settings: "Settings") -> str | None:
    try:
        return ruleset_version(settings.rules_dir or RULES_DIR)
    except Exception:  # the version is informative on failure records; never block start-up on it
        return None


class DecisionLog:
    """Records decisions and feedback. `record_*` never raise and never wait on the database."""

    max_queue = 100_000
    batch_size = 500
    retry_initial = 0.5
    retry_max = 30.0
    flush_timeout = 10.0
    unhealthy_fill = 0.9
    gather_batch = 100
    """An embedded database's writer waits (up to `linger`) for this many records before writing."""
    linger = 0.1
    """Seconds a smaller embedded batch may wait for more records before it is written."""

    def __init__(self, settings: "Settings", *, spill_dir: Path | None = None) -> None:
        self.settings = settings
        self.queue: deque[dict[str, Any]] = deque()
        self.spill = SpillFile(spill_dir or default_spill_dir(settings.database_url))
        self.store: Store | None = None
        self.clock: Callable[[], "datetime"] = now_utc
        self.db_ok = True
        self.ruleset_version = _ruleset_version(settings)
        self.embedded = sqlite_path(settings.database_url) is not None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._replay_left = 0
        self._replay_files: list[Path] = []
        # Read when /metrics is scraped rather than set on every record (a lock per answer).
        metrics.DECISION_LOG_BACKLOG.set_function(lambda: len(self.queue))

    # ---- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the database (migrating it), queue spilled records for replay, start the writer."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.store = Store(self.settings.database_url)
        try:
            records, files = await asyncio.to_thread(self.spill.take_for_replay)
        except OSError as exc:
            records, files = [], []
            log.error("spilled decision-log records could not be read; they stay on disk (%s)", type(exc).__name__, extra={"directory": str(self.spill.directory)})
        if records:
            self.queue.extendleft(reversed(records))
            log.info("replaying spilled decision-log records", extra={"records": len(records)})
        self._replay_left, self._replay_files = len(records), files
        if files and not records:
            self.spill.remove(files)
            self._replay_files = []
        try:
            await asyncio.wait_for(asyncio.to_thread(self.store.migrate), timeout=self.flush_timeout)
        except Exception as exc:
            self.db_ok = False
            metrics.DECISION_LOG_FAILURES.inc()
            log.warning("decision-log database unavailable at start-up; records are queued and retried (%s)", type(exc).__name__)
        self._task = asyncio.create_task(self._run(), name="decision-log-writer")

    async def stop(self) -> None:
        """Flush queued records (within flush_timeout); spill what cannot be written; close."""
        if self._task is None:
            return
        assert self._stopping is not None and self._wake is not None
        self._stopping.set()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=self.flush_timeout)
        except (asyncio.TimeoutError, Exception):
            self._task.cancel()
        self._task = None
        if self.queue:
            remaining = list(self.queue)
            try:
                await asyncio.to_thread(self.spill.append, remaining)
                self.queue.clear()
                self.spill.remove(self._replay_files)
                log.warning("decision-log records spilled to file for replay at next start", extra={"records": len(remaining), "file": str(self.spill.path)})
            except OSError as exc:
                log.error("decision-log records could not be spilled and are lost (%s)", type(exc).__name__, extra={"records": len(remaining)})
        if self.store is not None:
            self.store.dispose()

    # ---- recording (called on the request path) -----------------------------------------------

    def record_decision(self, evaluation: "Evaluation") -> None:
        """Queue the record of an invocation that produced an answer (cards or none)."""
        try:
            self._enqueue([decision_record(evaluation, self.settings, self.clock())])
        except Exception as exc:
            metrics.DECISION_LOG_FAILURES.inc()
            log.error("decision record could not be built (%s)", type(exc).__name__, extra={"decision_id": evaluation.decision_id})

    def record_failure(self, *, decision_id: str, service_id: str, hook: str, hook_instance: str, patient_id: str, status: int, error: str, detail: Any, duration_ms: float) -> None:
        """Queue the record of an invocation that was answered with an error (e.g. 412)."""
        try:
            record = failure_record(
                self.settings, self.clock(), decision_id=decision_id, service_id=service_id, ruleset_version=self.ruleset_version,
                hook=hook, hook_instance=hook_instance, patient_id=patient_id, status=status, error=error, detail=detail, duration_ms=duration_ms,
            )
            self._enqueue([record])
        except Exception as exc:
            metrics.DECISION_LOG_FAILURES.inc()
            log.error("failure record could not be built (%s)", type(exc).__name__, extra={"decision_id": decision_id})

    def record_feedback(self, service_id: str, feedback: "Feedback") -> None:
        """Queue feedback items; each is linked to the decision that produced its card uuid."""
        try:
            self._enqueue(feedback_records(service_id, feedback, self.settings, self.clock()))
        except Exception as exc:
            metrics.DECISION_LOG_FAILURES.inc()
            log.error("feedback records could not be built (%s)", type(exc).__name__)

    def healthy(self) -> bool:
        """False when the database is unreachable and the buffer is nearly full (for /readyz)."""
        return self.db_ok or len(self.queue) < self.unhealthy_fill * self.max_queue

    @property
    def backlog(self) -> int:
        return len(self.queue)

    def _enqueue(self, records: list[dict[str, Any]]) -> None:
        room = self.max_queue - len(self.queue)
        if room < len(records):
            overflow = records[max(room, 0):]
            records = records[: max(room, 0)]
            try:
                self.spill.append(overflow)  # a rare, small local append: better than losing a record
                log.warning("decision-log queue full; records spilled to file", extra={"records": len(overflow)})
            except OSError as exc:
                metrics.DECISION_LOG_FAILURES.inc()
                log.error("decision-log queue full and spill failed; records lost (%s)", type(exc).__name__, extra={"records": len(overflow)})
        idle = not self.queue
        self.queue.extend(records)
        self._notify(idle)

    def _notify(self, idle: bool) -> None:
        if self._loop is None or self._wake is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            # On the loop the writer cannot be between its last look at the queue and its wait: one
            # that had records queued goes on until none is left, so only an idle one needs waking.
            if idle:
                self._wake.set()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    # ---- the writer ---------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None and self._stopping is not None
        delay = self.retry_initial
        while True:
            if not self.queue:
                if self._stopping.is_set():
                    return
                self._wake.clear()
                if not self.queue and not self._stopping.is_set():
                    await self._wake.wait()
                continue
            if self.embedded and self.db_ok and len(self.queue) < self.gather_batch and not self._stopping.is_set():
                # Let a batch gather before writing: one commit per batch, not per answer.
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=self.linger)
                except asyncio.TimeoutError:
                    pass
            try:
                written = await self._write_next()
            except Exception as exc:  # a bug here must not stop the writer for the life of the process
                metrics.DECISION_LOG_FAILURES.inc()
                log.error("decision-log writer error (%s)", type(exc).__name__)
                written = False
            if written:
                delay = self.retry_initial
                continue
            if self._stopping.is_set():
                return
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, self.retry_max)

    async def _write_next(self) -> bool:
        # On a thread, so that neither a slow network nor a disk stalls answers. Indexing (not
        # iterating) tolerates appends from another thread while the batch is taken.
        assert self.store is not None
        batch = [self.queue[i] for i in range(min(self.batch_size, len(self.queue)))]
        try:
            refused = await asyncio.to_thread(self.store.write_batch, batch)
            if refused:
                await asyncio.to_thread(self._reject, refused)
        except Exception as exc:
            if self.db_ok:
                log.warning("decision-log batch not written; records kept for retry (%s)", type(exc).__name__, extra={"backlog": len(self.queue)})
            self.db_ok = False
            metrics.DECISION_LOG_FAILURES.inc()
            return False
        if not self.db_ok:
            log.info("decision-log database available again", extra={"backlog": len(self.queue)})
        self.db_ok = True
        for _ in batch:
            self.queue.popleft()
        if self._replay_left:
            self._replay_left = max(0, self._replay_left - len(batch))
            if not self._replay_left:
                self.spill.remove(self._replay_files)
                self._replay_files = []
        return True

    def _reject(self, records: list[dict[str, Any]]) -> None:
        metrics.DECISION_LOG_FAILURES.inc(len(records))
        self.spill.append(records, self.spill.rejected_path)
        for record in records:
            log.error("decision-log record refused by the database; kept in the rejected file", extra={"record_id": record.get("id"), "file": str(self.spill.rejected_path)})
