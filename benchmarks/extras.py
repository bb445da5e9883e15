"""Issue 11's targets, side by side in one run: fastwait's ``limit=``,
``timeout=``, ``eager=`` and ``race()`` against the stdlib recipes that do
the same thing correctly.

    python -m benchmarks.extras [--loop asyncio|uvloop|both] [--quick]
                                [--rounds R] [--target-ms MS] [--json FILE]

Every comparison is a group of variants timed in the same run, one sample
of each per round, back to back and in a shuffled order (the method of
``python -m benchmarks``: ``benchmarks/run.py``'s cells, the CPU-time clock,
the GC disabled and collected before every sample).  A ratio is computed
per round from adjacent samples; the table shows its median and
inter-quartile half-range, and the time per call of each variant.

The comparisons (N: children per call):

* ``limit``: ``gather(*coros, limit=100)`` against the semaphore recipe
  (``sem = Semaphore(100)``; ``gather(*(guarded(c) for c in coros))``),
  children that suspend once; plus, outside the timing, the census of one
  call of each: the most of the call's tasks alive at once (a task factory
  counts them) and the tracemalloc peak above the memory in use when the
  call starts (the coroutines are created before; both variants hold them).
* ``timeout-nofire``: ``gather(*coros, timeout=10)`` against the same
  ``fastwait.gather(*coros)`` without it (the cost of the argument, per
  call), and against ``async with asyncio.timeout(10): await
  asyncio.gather(*coros)``; ``timeout-nofire/literal`` the same with ten
  children written out in the call (no ``*args``, so no keyword dict built
  at the call site: gather's own cost).
* ``timeout-fires``: 10 000 children waiting on a future that never
  completes, cut short by the deadline: ``gather(..., timeout=1e-6)``
  against ``async with asyncio.timeout(1e-6): await asyncio.gather(...)``.
  On asyncio's loop the stdlib's children never run there:
  ``asyncio.timeout()`` finds its deadline passed at ``__aenter__`` and
  schedules the cancellation with ``call_soon``, ahead of the children's
  first steps, while gather's deadline (taken at the call, before the
  children are made) fires after them.  (On uvloop, which runs due timers
  before the ready callbacks, neither's children run.)
  ``timeout-fires/started`` is the same with 1e-3 s: on asyncio's loop it
  fires after the children's first steps in both (making 10 000 tasks
  takes longer than that), so every child is waiting when it is cancelled,
  as the target describes.
* ``race``: ``race(*coros)`` of 2 and of 100 children (the first wins after
  one trip through the loop, the others wait until cancelled) against the
  stdlib recipe: tasks, ``wait(FIRST_COMPLETED)``, cancel the rest, await
  them; and against the floor, the same children with no racing (the
  winner known in advance: ``asyncio.Task()`` each, the losers cancelled
  from the winner's done-callback, one await of the last loser), shown as
  ``race() / floor``.
* ``eager``: ``gather(*coros, eager=True)`` against the floor (a task per
  child, awaited one by one) and the stdlib's gather under
  ``eager_task_factory`` (3.12+) for children that never suspend, and
  against fastwait's plain ``gather`` for children that suspend once.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import sys
import time
import tracemalloc

from .cases import child_return, child_sleep0
from .run import Cell, import_fastwait, make_loop, quartiles

_sleep = asyncio.sleep


# --------------------------------------------------------------------------
# Variants: async def variant(loop, n, arg).


def limit_variants(fw, limit=100):
    async def recipe(loop, n, arg):
        sem = asyncio.Semaphore(limit)

        async def guarded(c):
            async with sem:
                return await c

        return await asyncio.gather(*(guarded(child_sleep0(i))
                                      for i in range(n)))

    async def fastwait_limit(loop, n, arg):
        return await fw.gather(*[child_sleep0(i) for i in range(n)],
                               limit=limit)

    return {"semaphore recipe": recipe, "fastwait limit=": fastwait_limit}


def timeout_nofire_variants(fw):
    async def stdlib_scope(loop, n, arg):
        async with asyncio.timeout(10):
            return await asyncio.gather(*[child_sleep0(i) for i in range(n)])

    async def fastwait_plain(loop, n, arg):
        return await fw.gather(*[child_sleep0(i) for i in range(n)])

    async def fastwait_timeout(loop, n, arg):
        return await fw.gather(*[child_sleep0(i) for i in range(n)],
                               timeout=10)

    return {"stdlib timeout+gather": stdlib_scope,
            "fastwait gather": fastwait_plain,
            "fastwait timeout=": fastwait_timeout}


def timeout_nofire_literal_variants(fw):
    """N=10 children written out in the call (no ``*args``): a call with a
    keyword after ``*args`` makes CPython build a keyword dict at the call
    site, which is the caller's cost, not gather's; here neither variant
    pays it."""
    c = child_sleep0
    gather = fw.gather

    async def fastwait_plain(loop, n, arg):
        return await gather(c(0), c(1), c(2), c(3), c(4), c(5), c(6), c(7),
                            c(8), c(9))

    async def fastwait_timeout(loop, n, arg):
        return await gather(c(0), c(1), c(2), c(3), c(4), c(5), c(6), c(7),
                            c(8), c(9), timeout=10)

    return {"fastwait gather": fastwait_plain,
            "fastwait timeout=": fastwait_timeout}


async def _pending(gate):
    await gate


def timeout_fires_variants(fw, delay=1e-6):
    async def stdlib_scope(loop, n, arg):
        gate = loop.create_future()
        try:
            async with asyncio.timeout(delay):
                await asyncio.gather(*[_pending(gate) for _ in range(n)])
        except TimeoutError:
            return "timeout"
        return "no timeout"

    async def fastwait_timeout(loop, n, arg):
        gate = loop.create_future()
        try:
            await fw.gather(*[_pending(gate) for _ in range(n)],
                            timeout=delay)
        except TimeoutError:
            return "timeout"
        return "no timeout"

    return {"stdlib timeout+gather": stdlib_scope,
            "fastwait timeout=": fastwait_timeout}


async def _winner():
    await _sleep(0)
    return "won"


def race_variants(fw):
    async def recipe(loop, n, arg):
        gate = loop.create_future()
        tasks = [loop.create_task(_winner())]
        tasks += [loop.create_task(_pending(gate)) for _ in range(n - 1)]
        try:
            done, pending = await asyncio.wait(
                tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return next(iter(done)).result()

    async def floor(loop, n, arg):
        # The same children with no racing at all, knowing in advance who
        # wins and who ends last: the Tasks made as the loop's
        # create_task() makes them (no Python call in between), the losers
        # cancelled from the winner's done-callback, the caller suspended
        # once, until the last loser (they all wait on `gate`, so they
        # finish in creation order).  What no correct race() can avoid.
        gate = loop.create_future()
        task = asyncio.Task
        tasks = [task(_winner(), loop=loop)]
        tasks += [task(_pending(gate), loop=loop) for _ in range(n - 1)]

        def cancel_losers(_):
            for t in tasks:
                t.cancel()

        tasks[0].add_done_callback(cancel_losers)
        try:
            await tasks[-1]
        except asyncio.CancelledError:
            pass
        return tasks[0].result()

    async def fastwait_race(loop, n, arg):
        gate = loop.create_future()
        return await fw.race(_winner(),
                             *[_pending(gate) for _ in range(n - 1)])

    return {"stdlib wait recipe": recipe, "floor": floor,
            "fastwait race()": fastwait_race}


def eager_variants(fw, child):
    async def floor(loop, n, arg):
        ts = [loop.create_task(child(i)) for i in range(n)]
        for t in ts:
            await t
        return [t.result() for t in ts]

    async def fastwait_plain(loop, n, arg):
        return await fw.gather(*[child(i) for i in range(n)])

    async def fastwait_eager(loop, n, arg):
        return await fw.gather(*[child(i) for i in range(n)], eager=True)

    variants = {"floor": floor}
    if hasattr(asyncio, "eager_task_factory"):
        async def stdlib_eager(loop, n, arg):
            old = loop.get_task_factory()
            loop.set_task_factory(asyncio.eager_task_factory)
            try:
                return await asyncio.gather(*[child(i) for i in range(n)])
            finally:
                loop.set_task_factory(old)

        variants["stdlib eager_task_factory"] = stdlib_eager
    variants["fastwait gather"] = fastwait_plain
    variants["fastwait eager=True"] = fastwait_eager
    return variants


def checks():
    def results(n, r):
        return r == list(range(n))

    return {
        "limit": results,
        "timeout-nofire": results,
        "timeout-nofire/literal": results,
        "timeout-fires": lambda n, r: r == "timeout",
        "timeout-fires/started": lambda n, r: r == "timeout",
        "race": lambda n, r: r == "won",
        "eager/return": results,
        "eager/sleep0": results,
    }


# --------------------------------------------------------------------------
# Census: tasks alive at once and memory, one call of each, untimed.


def census(loop, fn, n):
    """(most tasks alive at once, tracemalloc peak above the start in bytes)
    for one call of `fn` with N children.  The task counter is a task
    factory, so only the census pays for it."""
    alive = 0
    most = 0
    old_factory = loop.get_task_factory()

    def done(_):
        nonlocal alive
        alive -= 1

    def factory(loop, coro, **kwargs):
        nonlocal alive, most
        task = asyncio.Task(coro, loop=loop, **kwargs)
        alive += 1
        most = max(most, alive)
        task.add_done_callback(done)
        return task

    async def outer():
        # The outer task itself is not counted: count from inside it.
        nonlocal most, alive
        gc.collect()
        tracemalloc.start()
        start = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        alive = most = 0
        await fn(loop, n, None)
        peak = tracemalloc.get_traced_memory()[1] - start
        tracemalloc.stop()
        return peak

    loop.set_task_factory(factory)
    try:
        peak = loop.run_until_complete(asyncio.Task(outer(), loop=loop))
    finally:
        loop.set_task_factory(old_factory)
    return most, peak


# --------------------------------------------------------------------------
# The run.


def groups(fw, quick):
    big = (10_000,) if quick else (10_000, 100_000)
    out = []
    for n in big:
        out.append(("limit", n, limit_variants(fw)))
    out.append(("timeout-nofire/literal", 10,
                timeout_nofire_literal_variants(fw)))
    for n in (10, 1_000):
        out.append(("timeout-nofire", n, timeout_nofire_variants(fw)))
    out.append(("timeout-fires", 10_000, timeout_fires_variants(fw)))
    out.append(("timeout-fires/started", 10_000,
                timeout_fires_variants(fw, delay=1e-3)))
    for n in (2, 100):
        out.append(("race", n, race_variants(fw)))
    for n in ((1_000, 10_000) if quick else (1_000, 10_000, 100_000)):
        out.append(("eager/return", n, eager_variants(fw, child_return)))
    for n in (1_000, 10_000):
        out.append(("eager/sleep0", n, eager_variants(fw, child_sleep0)))
    return out


def run(loop_name, fw, args):
    loop, _ = make_loop(loop_name)
    asyncio.set_event_loop(loop)
    clock = time.thread_time_ns
    rng = random.Random(args.seed)
    check = checks()
    cells = []
    for name, n, variants in groups(fw, args.quick):
        cells.append((name, n, {v: Cell(None, n, v, fn, clock)
                                for v, fn in variants.items()}))
    out = {"loop": loop_name, "groups": []}
    gc.collect()
    gc.disable()
    try:
        for name, n, vs in cells:
            for v, cell in vs.items():
                result = loop.run_until_complete(cell.fn(loop, n, None))
                if not check[name](n, result):
                    raise AssertionError(f"{name} N={n} {v}: wrong result "
                                         f"{str(result)[:80]}")
                cell.calibrate(loop, int(args.target_ms * 1e6))
        gc.freeze()
        order = list(range(len(cells)))
        for r in range(args.rounds):
            rng.shuffle(order)
            for gi in order:
                vs = list(cells[gi][2].values())
                rng.shuffle(vs)
                for cell in vs:
                    cell.run_round(loop)
            print(f"[{loop_name}] round {r + 1}/{args.rounds}",
                  file=sys.stderr, flush=True)
        gc.unfreeze()
        gc.collect()
        censuses = {}
        for name, n, vs in cells:
            if name == "limit":
                censuses[n] = {v: census(loop, cell.fn, n)
                               for v, cell in vs.items()}
    finally:
        gc.enable()
        loop.close()
        asyncio.set_event_loop(None)

    for name, n, vs in cells:
        names = list(vs)
        base = names[0]
        per_call = {v: statistics.median(c.raw_ns) / 1e3 for v, c in vs.items()}
        ratios = {}
        for v in names[1:]:
            per_round = [a / b for a, b in zip(vs[v].raw_ns, vs[base].raw_ns)]
            q1, med, q3 = quartiles(per_round)
            ratios[v] = (med, (q3 - q1) / 2)
        group = {"name": name, "n": n, "baseline": base,
                 "us_per_call": per_call,
                 "ratio_to_baseline": {v: {"median": m, "half_iqr": h}
                                       for v, (m, h) in ratios.items()}}
        if name.startswith("timeout-nofire"):
            diffs = [(a - b) / 1e3 for a, b in
                     zip(vs["fastwait timeout="].raw_ns,
                         vs["fastwait gather"].raw_ns)]
            q1, med, q3 = quartiles(diffs)
            group["timeout_cost_us_per_call"] = {"median": med,
                                                 "half_iqr": (q3 - q1) / 2}
        if name == "race":
            per_round = [a / b for a, b in
                         zip(vs["fastwait race()"].raw_ns,
                             vs["floor"].raw_ns)]
            q1, med, q3 = quartiles(per_round)
            group["race_to_floor"] = {"median": med,
                                      "half_iqr": (q3 - q1) / 2}
        if name == "limit":
            group["census"] = {v: {"most_tasks_alive": m, "peak_bytes": p}
                               for v, (m, p) in censuses[n].items()}
        out["groups"].append(group)
    return out


def render(res):
    lines = [f"loop: {res['loop']}"]
    for g in res["groups"]:
        lines.append(f"\n{g['name']}  N={g['n']:,}")
        for v, us in g["us_per_call"].items():
            r = g["ratio_to_baseline"].get(v)
            rs = (f"{r['median']:.2f} ±{r['half_iqr']:.2f} × {g['baseline']}"
                  if r else "(baseline)")
            lines.append(f"  {v:28} {us:12.1f} µs/call   {rs}")
        if "timeout_cost_us_per_call" in g:
            t = g["timeout_cost_us_per_call"]
            lines.append(f"  timeout=10 costs {t['median']:+.3f} "
                         f"±{t['half_iqr']:.3f} µs per call")
        if "race_to_floor" in g:
            t = g["race_to_floor"]
            lines.append(f"  race() / floor {t['median']:.2f} "
                         f"±{t['half_iqr']:.2f}")
        if "census" in g:
            for v, c in g["census"].items():
                lines.append(f"  census {v:21} {c['most_tasks_alive']:8,} "
                             f"tasks alive at most, peak "
                             f"{c['peak_bytes'] / 1e6:8.1f} MB")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--loop", choices=("asyncio", "uvloop", "both"),
                   default="asyncio")
    p.add_argument("--quick", action="store_true",
                   help="fewer sizes and rounds")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--target-ms", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results to this file")
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 7 if args.quick else 15
    if args.target_ms is None:
        args.target_ms = 5.0 if args.quick else 10.0
    fw = import_fastwait()
    loops = ("asyncio", "uvloop") if args.loop == "both" else (args.loop,)
    header = (f"Python {sys.version.split()[0]}, fastwait NATIVE="
              f"{fw.NATIVE}, CPU-time clock, GC off, {args.rounds} rounds")
    print(header)
    results = {"python": sys.version.split()[0], "native": fw.NATIVE,
               "rounds": args.rounds, "loops": []}
    for name in loops:
        res = run(name, fw, args)
        results["loops"].append(res)
        print(render(res), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
