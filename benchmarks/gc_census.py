"""Count the GC-tracked objects each variant keeps alive per child.

    python -m benchmarks.gc_census [--n 10000] [--loop asyncio|uvloop|both]

The cyclic GC's cost in a benchmark of N children depends on how many
GC-tracked objects are alive while the children are: young collections are
triggered by allocations of tracked objects, each one traverses the young
generation, and what is still alive is promoted, so that the older
collections (which traverse everything promoted) come round more often the
more each child keeps alive.

For the sleep0 gather cases (children that suspend once) the census runs the
floor, stdlib and fastwait variants of ``benchmarks/cases.py`` with a probe
child: the last child, when it takes its first step, counts the objects
``gc.get_objects()`` reports, by type, against a count taken before the
variant started (with the GC disabled, after a collection).  At that moment
every other child is suspended in ``sleep(0)``: it is the peak.  Printed per
child, by type (types below 0.05 per child are summed as "other").
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import sys

from . import cases
from .run import import_fastwait, make_loop

_sleep = asyncio.sleep


def type_counts():
    c = collections.Counter()
    for o in gc.get_objects():
        t = type(o)
        c[f"{t.__module__}.{t.__qualname__}"] += 1
    return c


class Probe:
    def __init__(self):
        self.last = -1
        self.peak = None

    def child(self):
        probe = self

        async def probe_child(i):
            if i == probe.last:
                probe.peak = type_counts()
            await _sleep(0)
            return i

        return probe_child


CASES = {
    "gather/coros/sleep0": (cases.floor_tasks, lambda c: cases.gather_coros(c)),
    "gather/tasks/sleep0": (cases.floor_tasks, lambda c: cases.gather_tasks(c, False)),
}


def census(loop, fastwait, n):
    out = {}
    for name, (floor_of, make_of) in CASES.items():
        for variant in ("floor", "stdlib", "fastwait"):
            probe = Probe()
            probe.last = n - 1
            child = probe.child()
            fn = (floor_of(child) if variant == "floor" else
                  make_of(child)(asyncio if variant == "stdlib" else fastwait))
            gc.collect()
            base = type_counts()
            loop.run_until_complete(fn(loop, n, None))
            peak = probe.peak
            peak.subtract(base)
            out[(name, variant)] = {k: v / n for k, v in peak.items() if v > 0}
            del peak, base
            gc.collect()
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.gc_census")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--loop", choices=("asyncio", "uvloop", "both"), default="both")
    args = p.parse_args(argv)
    fastwait = import_fastwait()
    print(f"Python {sys.version.split()[0]}, fastwait NATIVE={fastwait.NATIVE}, "
          f"N = {args.n:,}: GC-tracked objects alive per child at the peak "
          "(every child suspended in sleep(0))")
    loops = ("asyncio", "uvloop") if args.loop == "both" else (args.loop,)
    was = gc.isenabled()
    gc.disable()
    try:
        for loop_name in loops:
            loop, _ = make_loop(loop_name)
            asyncio.set_event_loop(loop)
            try:
                res = census(loop, fastwait, args.n)
            finally:
                loop.close()
                asyncio.set_event_loop(None)
            print(f"\nloop: {loop_name}")
            for (name, variant), per in res.items():
                total = sum(per.values())
                big = sorted(((v, k) for k, v in per.items() if v >= 0.05),
                             reverse=True)
                other = total - sum(v for v, _ in big)
                parts = [f"{k} {v:.2f}" for v, k in big]
                if other >= 0.005:
                    parts.append(f"other {other:.2f}")
                print(f"  {name:22} {variant:8} {total:5.2f}: " + ", ".join(parts))
    finally:
        if was:
            gc.enable()
    return 0


if __name__ == "__main__":
    sys.exit(main())
