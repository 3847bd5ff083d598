"""The spill file: records that could not reach the database at shutdown (or overflowed the queue).

JSON lines under the log's directory (next to the SQLite file, or ./var/). At start-up each spill
file is renamed to a `replay-*` file, its records go to the front of the queue, and the file is
deleted once they are written: a crash before that replays them again, which is harmless because
writes skip records whose id is already stored.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from cds_service.audit.store import sqlite_path

log = logging.getLogger("cds_service.audit")

SPILL_NAME = "decision-log.spill.jsonl"
REPLAY_GLOB = "decision-log.replay-*.jsonl"
REJECTED_NAME = "decision-log.rejected.jsonl"


def default_spill_dir(database_url: str) -> Path:
    """Next to the SQLite database, or ./var/ for a server database."""
    path = sqlite_path(database_url)
    return path.parent if path is not None else Path("var")


class SpillFile:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @property
    def path(self) -> Path:
        return self.directory / SPILL_NAME

    @property
    def rejected_path(self) -> Path:
        return self.directory / REJECTED_NAME

    def append(self, records: list[dict[str, Any]], path: Path | None = None) -> None:
        """Append records as JSON lines and fsync: they must survive the process."""
        if not records:
            return
        target = path or self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def take_for_replay(self) -> tuple[list[dict[str, Any]], list[Path]]:
        """Records waiting in spill and earlier replay files, and the files to delete once they are written."""
        if not self.directory.is_dir():
            return [], []
        if self.path.exists():
            try:
                os.replace(self.path, self.directory / f"decision-log.replay-{uuid.uuid4().hex}.jsonl")
            except FileNotFoundError:  # another worker process took it
                pass
        records: list[dict[str, Any]] = []
        files = sorted(self.directory.glob(REPLAY_GLOB), key=lambda p: p.stat().st_mtime)
        for path in files:
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError:
                continue
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    # A torn last line (power loss mid-write): skip it, keep the rest.
                    log.error("unreadable spill line skipped", extra={"file": path.name, "line": number})
        return records, files

    @staticmethod
    def remove(files: list[Path]) -> None:
        for path in files:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
