"""Timing shared by the benchmark scripts (imports nothing that reads thread settings)."""

from __future__ import annotations

import statistics
import time

BLOCK = 3


def paired_median_ms(ours, theirs, repeat: int) -> tuple[float, float]:
    """Medians (ms) of ``repeat`` timed calls each, taken in alternating blocks of BLOCK
    calls (ours, theirs, ours, ...), so that a slow phase of the VM hits both sides alike;
    each block starts with one untimed call (the other library's threads may still be
    spinning, its data filling the caches)."""
    times: tuple[list, list] = ([], [])
    for fn in (ours, theirs):
        fn()
    while len(times[1]) < repeat:
        for fn, out in zip((ours, theirs), times, strict=True):
            fn()
            for _ in range(min(BLOCK, repeat - len(out))):
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times[0]), 1e3 * statistics.median(times[1])
