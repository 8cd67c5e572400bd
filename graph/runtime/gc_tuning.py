"""The cyclic garbage collector's settings for every long-running ordergraph process."""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """Call once start-up has imported and built what the process keeps.

    Start-up objects live for the whole process: freeze them out of the collector's scans,
    or every full collection walks them again (a rebuild made a dozen of those, a quarter of
    its time). Then keep every collection small (frequent young collections), and make full
    ones frequent enough that cycles promoted by requests in flight do not pile up, rare
    enough that their pause stays out of a server's p99. How the thresholds were chosen, with
    the measurements: docs/performance.md.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(5_000, 20, 100)
