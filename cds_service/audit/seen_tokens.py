"""The JWT replay check shared by every worker and replica: a table of seen (issuer, jti).

A token is accepted by whichever process inserts its (issuer, jti) first; the primary key makes
every later insert fail, on SQLite (one host, several workers) and on PostgreSQL (many hosts)
alike. It lives in the decision log's database, which every process already shares. Rows are
kept until the token expires (plus the allowed clock skew), then pruned.
"""

from __future__ import annotations

import time
from typing import Callable

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from cds_service.audit.store import Store
from cds_service.audit.tables import seen_tokens

PRUNE_EVERY = 500
"""Expired rows are deleted on every PRUNE_EVERY-th insert of a process."""


class SeenTokens:
    """`add_if_new(iss, jti, expires_at)`: True the first time a pair is seen by any process."""

    def __init__(self, url: str, clock: Callable[[], float] = time.time) -> None:
        self.store = Store(url)
        self.clock = clock
        self._inserts = 0

    def add_if_new(self, iss: str, jti: str, expires_at: float) -> bool:
        """Blocking (a database round trip): call it off the event loop. Raises when the database
        cannot be reached (the caller refuses the token: a replay that cannot be ruled out)."""
        self.store.ensure_ready()
        self._inserts += 1
        if self._inserts % PRUNE_EVERY == 1:
            with self.store.engine.begin() as connection:
                connection.execute(delete(seen_tokens).where(seen_tokens.c.expires_at <= self.clock()))
        if self._insert(iss, jti, expires_at):
            return True
        # Seen before; a row left from an expired token with the same jti does not count.
        with self.store.engine.begin() as connection:
            stale = connection.execute(
                delete(seen_tokens).where(seen_tokens.c.issuer == iss, seen_tokens.c.jti == jti, seen_tokens.c.expires_at <= self.clock())
            ).rowcount
        return bool(stale) and self._insert(iss, jti, expires_at)

    def _insert(self, iss: str, jti: str, expires_at: float) -> bool:
        try:
            with self.store.engine.begin() as connection:
                connection.execute(insert(seen_tokens).values(issuer=iss, jti=jti, expires_at=expires_at))
        except IntegrityError:
            return False
        return True

    def dispose(self) -> None:
        self.store.dispose()
