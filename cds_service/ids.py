"""Identifiers this service mints: decision ids, card and suggestion uuids, feedback record ids,
request ids.

They are UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits (uuid-utils keeps
them increasing within a millisecond). Why not uuid4: every one of them is a key of a decision-log
index (decision id, card uuid), and random keys land on a random B-tree page each. With a log
of a few hundred megabytes, that made each SQLite commit rewrite hundreds of scattered pages and
doubled the writer's CPU per decision; time-ordered keys are appended at the index's right edge.
They carry no patient data, and the time they reveal is already in the decision record. They
are names, not secrets: nothing is granted to whoever knows one.
"""

from __future__ import annotations

import uuid_utils


def new_id() -> str:
    """A fresh UUIDv7 in the canonical 36-character form."""
    return str(uuid_utils.uuid7())


def new_request_id() -> str:
    """A fresh random request id (32 hex digits) for a request that came without a usable one.

    uuid-utils draws from a user-space generator seeded by the OS; `uuid.uuid4()` makes a
    `getrandom` system call each time, which is slow under contention for the GIL.
    """
    return uuid_utils.uuid4().hex
