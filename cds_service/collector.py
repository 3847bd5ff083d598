"""Python's cyclic garbage collector, tuned for a long-running process that allocates in bursts.

Both the serving worker (after start-up) and the decision-log writer process (after its first
batch) call `settle()`. What each has built by then (rules, value sets, models and caches; the
database engine and its metadata) lives for the whole process, so it is moved out of the
collector's reach and full collections stay short.

A request, like a batch of decision records, allocates thousands of containers that are nearly
all freed by reference counting when it ends. At Python's default threshold (700) the youngest
generation was collected several times per request, promoting and rescanning what was still in
use. At 50,000 the typical request's p99 went from 3.6x to 2.0x the baseline's; the price is
longer pauses on new charts (p99 at one connection from about 5 ms to 9-28 ms) and about 15 MB
more RSS per worker. In the writer process, where a batch of records is a tree of thousands of
containers, it cut the CPU per record from 72-80 to 63 us (docs/performance.md).
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 20)
"""Youngest generation first."""


def settle() -> None:
    """Freeze what exists now and collect the rest less often."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
