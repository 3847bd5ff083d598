"""How a batch of decision-log records reaches the database: on a thread, or in a writer process.

`write_batch` is the one way a batch is written: in one transaction and, when the database is up
but refuses the batch, record by record, returning the records it refuses so that the decision
log sets them aside and one bad record never holds up the others. It raises while the database
is unreachable. Writes skip records already stored, so a batch may be written again.

`ThreadWriter` runs it where it is called (the decision log calls it through `asyncio.to_thread`).
`ProcessWriter`, the default on SQLite, runs it in a child process (`python -m
cds_service.audit.writing`), started on first use and again after it ended. Why: from a thread,
SQLite's work shares the worker's GIL, taking it back after every call into it beside a busy
event loop. Under load that thread fell about a second (3,000 records, lost in a crash) behind;
the child stays within about 0.1 s, and the worker's main thread spends 7 % less CPU a request
(docs/performance.md). A server database (PostgreSQL) does that work in its own process already.

While it keeps up, the child runs at a lower CPU priority (`nice`, setting
`CDS_DECISION_LOG_WRITER_NICE`): on a busy host the answers a clinician waits for come first, and
the log is written with what is left (at 8 connections on 2 cores the service's p99 fell by about
a tenth). A lowered priority cannot be raised again without privileges, so when the queue falls
`catch_up_at` records behind (only a host saturated for seconds does that), a new child at the
worker's own priority takes over and stays at it for `full_priority_for` seconds before it yields
again: the log keeps its fair share of the CPU and the queue stays bounded.

The child reads length-prefixed JSON frames on stdin (its settings, then one batch per frame)
and answers each batch on stdout with the records refused, or the type of the error that stopped
it. It ignores SIGINT and SIGTERM, which reach the whole process group on Ctrl-C or `kill -TERM
-pgid`: it ends when its stdin closes, after the batch in hand, so the worker's last flush is
written rather than cut off.
"""

from __future__ import annotations

import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import IO, Any, Callable

import orjson

from cds_service import collector
from cds_service.audit.sqlite_bulk import Prepared
from cds_service.audit.store import Store

log = logging.getLogger("cds_service.audit")

_LENGTH = struct.Struct(">I")


def write_batch(store: Store, batch: list[dict[str, Any]], prepared: Prepared | None = None) -> list[dict[str, Any]]:
    """Write the batch; return the records the database refused while it was up. Raises while
    it is unreachable."""
    store.ensure_ready()
    try:
        store.write(batch, prepared)
        return []
    except Exception:
        if not store.ping():
            raise
    refused = []
    for record in batch:
        try:
            store.write([record])
        except Exception:
            if not store.ping():
                raise
            refused.append(record)
    return refused


class ThreadWriter:
    """`write_batch` on the calling thread."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def prepares_on_loop(self) -> bool:
        """SQLite rows are best prepared on the event loop, a few records at a time (DecisionLog):
        on this thread, that Python work would hold the GIL against the loop."""
        return self.store.bulk

    def write(self, batch: list[dict[str, Any]], prepared: Prepared | None = None) -> list[dict[str, Any]]:
        return write_batch(self.store, batch, prepared)

    def close(self, timeout: float) -> None:
        """Nothing to stop: the store is disposed of by its owner."""


class WriterProcessEnded(Exception):
    """The writer process ended or answered nonsense; the batch is kept and retried."""


class DatabaseUnreachable(Exception):
    """The writer process could not reach the database (the message is the error's type)."""


class ProcessWriter:
    """`write_batch` in a child process. One batch at a time; thread-safe."""

    prepares_on_loop = False
    """The child turns records into rows itself: that work leaves the serving process too."""

    catch_up_at = 10_000
    """Records queued behind the batch in hand (several seconds of a saturated core) at which a
    yielding child is replaced by one at the worker's priority."""
    full_priority_for = 60.0
    """Seconds a child started to catch up keeps the worker's priority: under sustained overload,
    one replacement a minute at most."""
    stop_timeout = 10.0

    def __init__(
        self,
        database_url: str,
        log_level: str = "INFO",
        log_json: bool = True,
        *,
        nice: int = 0,
        backlog: Callable[[], int] = lambda: 0,
    ) -> None:
        self._settings = {"database_url": database_url, "log_level": log_level, "log_json": log_json}
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.nice = nice
        self._backlog = backlog
        self._yielding = False
        self._full_priority_until = 0.0

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    @property
    def yielding(self) -> bool:
        """Whether the current child runs at the lowered priority."""
        return self._yielding

    def write(self, batch: list[dict[str, Any]], prepared: Prepared | None = None) -> list[dict[str, Any]]:
        payload, unsendable = _encoded(batch)
        if payload is None:
            return unsendable
        with self._lock:
            child = self._child
            if child is None or child.poll() is not None:
                if child is not None:
                    self._stop(child, timeout=0)  # ended on its own: close its pipes
                child = self._start()
            child = self._paced(child, behind=self._backlog() - len(batch))
            try:
                assert child.stdin is not None and child.stdout is not None
                send_payload(child.stdin, payload)
                answer = receive_frame(child.stdout)
            except (OSError, EOFError, ValueError) as exc:
                self._stop(child, timeout=0)
                raise WriterProcessEnded(type(exc).__name__) from exc
            if not isinstance(answer, dict):
                self._stop(child, timeout=0)
                raise WriterProcessEnded("no answer")
            if "error" in answer:
                raise DatabaseUnreachable(str(answer["error"]))
            return unsendable + list(answer.get("rejected") or [])

    def close(self, timeout: float) -> None:
        """Let the child finish its batch and end (its stdin closes); killed after `timeout`."""
        if not self._lock.acquire(timeout=timeout):  # a write still in hand: cut it off
            if self._child is not None:
                self._child.kill()
            return
        try:
            if self._child is not None:
                self._stop(self._child, timeout)
        finally:
            self._lock.release()

    def _paced(self, child: subprocess.Popen[bytes], behind: int) -> subprocess.Popen[bytes]:
        """The child to write with: yielding while the log keeps up, at full priority while it
        catches up. `behind` counts the records queued after this batch."""
        if not self.nice:
            return child
        if self._yielding and behind >= self.catch_up_at:
            log.warning("decision-log writer behind; a writer process at full priority takes over", extra={"backlog": behind})
            self._stop(child, self.stop_timeout)
            self._full_priority_until = time.monotonic() + self.full_priority_for
            return self._start()
        if not self._yielding and behind <= 0 and time.monotonic() >= self._full_priority_until:
            try:
                os.setpriority(os.PRIO_PROCESS, child.pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + self.nice))
                self._yielding = True
            except ProcessLookupError:  # the child just ended: this write fails and the next child yields
                pass
            except OSError as exc:  # not permitted here: write at the worker's priority from now on
                log.warning("decision-log writer priority not lowered (%s); it keeps the worker's", type(exc).__name__)
                self.nice = 0
        return child

    def _start(self) -> subprocess.Popen[bytes]:
        self._yielding = False  # a child starts at the worker's priority
        child = subprocess.Popen(
            [sys.executable, "-m", "cds_service.audit.writing"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._child = child
        try:
            assert child.stdin is not None
            send_frame(child.stdin, self._settings)
        except OSError as exc:
            self._stop(child, timeout=0)
            raise WriterProcessEnded(type(exc).__name__) from exc
        log.info("decision-log writer process started", extra={"pid": child.pid})
        return child

    def _stop(self, child: subprocess.Popen[bytes], timeout: float) -> None:
        for stream in (child.stdin, child.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if self._child is child:
            self._child = None


def _encoded(batch: list[dict[str, Any]]) -> tuple[bytes | None, list[dict[str, Any]]]:
    """The batch's frame (None when no record is left) and the records that are not JSON: one
    that cannot be sent is refused, as the database refuses one it cannot store, rather than
    holding up the batch forever."""
    try:
        return orjson.dumps({"records": batch}), []
    except TypeError:
        sendable, refused = [], []
        for record in batch:
            try:
                orjson.dumps(record)
                sendable.append(record)
            except TypeError:
                refused.append(record)
        return (orjson.dumps({"records": sendable}) if sendable else None), refused


def send_frame(stream: IO[bytes], value: Any) -> None:
    send_payload(stream, orjson.dumps(value))


def send_payload(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_LENGTH.pack(len(payload)) + payload)
    stream.flush()


def receive_frame(stream: IO[bytes]) -> Any:
    """The next frame's value; None at a clean end of stream. EOFError when cut mid-frame."""
    header = stream.read(_LENGTH.size)
    if not header:
        return None
    if len(header) < _LENGTH.size:
        raise EOFError("stream ended inside a frame header")
    (length,) = _LENGTH.unpack(header)
    payload = stream.read(length)
    if len(payload) < length:
        raise EOFError("stream ended inside a frame")
    return orjson.loads(payload)


def serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """The child's loop: settings, then batches until the parent closes the stream."""
    settings = receive_frame(source)
    if settings is None:
        return
    from cds_service.logging_setup import configure_logging

    configure_logging(settings["log_level"], settings["log_json"])
    store = Store(settings["database_url"])
    store.bind_rows = True  # nothing else here needs the GIL: the cheaper insert for SQLite
    settled = False
    try:
        while (message := _next_batch(source)) is not None:
            try:
                answer: dict[str, Any] = {"rejected": write_batch(store, message["records"])}
            except Exception as exc:  # the database is unreachable: the parent keeps the batch
                answer = {"error": type(exc).__name__}
            send_frame(sink, answer)
            if not settled and "rejected" in answer:  # the database engine and migration check are built
                collector.settle()
                settled = True
    finally:
        store.dispose()


def _next_batch(source: IO[bytes]) -> Any:
    try:
        return receive_frame(source)
    except EOFError:  # the worker died mid-frame: nothing more will come
        return None


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # the protocol owns stdout: a stray print must not corrupt it
    serve(source, sink)


if __name__ == "__main__":
    main()
