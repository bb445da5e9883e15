"""How far can shield() of a pending task get below asyncio's cost?

    python -m benchmarks.shield_bound [--loop asyncio|uvloop] [--rounds K]

Measures, per call, above the floor ``t = create_task(c()); await t``
(CPU time, interleaved shuffled rounds, medians):

* ``hop``      -- the least any shield() with asyncio's timing must do:
  ``outer = loop.create_future(); t.add_done_callback(outer.set_result);
  await outer`` (the outer completes one loop iteration after the task, as
  asyncio's does, so the awaiting task resumes one iteration later than
  with a plain ``await t``: one more loop iteration and one more loop
  callback per call; the result it hands back is the task, not its result);
* ``stdlib``   -- ``await asyncio.shield(t)``;
* ``fastwait`` -- ``await fastwait.shield(t)``;

and the ratios of each to the stdlib's overhead.  ``hop / stdlib`` bounds
what ``fastwait / stdlib`` can reach without changing the iteration in
which the outer completes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
import time

import fastwait


async def child(i):
    return i


def variants(loop, n):
    shields = {"stdlib": asyncio.shield, "fastwait": fastwait.shield}

    async def floor():
        for i in range(n):
            t = loop.create_task(child(i))
            await t

    async def hop():
        for i in range(n):
            t = loop.create_task(child(i))
            outer = loop.create_future()
            t.add_done_callback(outer.set_result)
            await outer

    def shielded(shield):
        async def run():
            for i in range(n):
                t = loop.create_task(child(i))
                await shield(t)

        return run

    out = {"floor": floor, "hop": hop}
    out.update((name, shielded(fn)) for name, fn in shields.items())
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("-n", type=int, default=3000, help="calls per sample")
    args = p.parse_args(argv)
    if args.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    fns = variants(loop, args.n)
    samples = {k: [] for k in fns}
    gc.disable()
    try:
        for fn in fns.values():
            loop.run_until_complete(fn())  # warm-up
        for _ in range(args.rounds):
            order = list(fns)
            random.shuffle(order)
            for k in order:
                gc.collect()
                t0 = time.thread_time_ns()
                loop.run_until_complete(fns[k]())
                samples[k].append((time.thread_time_ns() - t0) / args.n)
    finally:
        gc.enable()
        loop.close()
    med = {k: statistics.median(v) for k, v in samples.items()}
    floor = med["floor"]
    std = med["stdlib"] - floor
    print(f"Python {sys.version.split()[0]}, loop {args.loop}, "
          f"fastwait NATIVE={fastwait.NATIVE}; floor {floor:.0f} ns/call")
    for k in ("hop", "stdlib", "fastwait"):
        over = med[k] - floor
        print(f"  {k:9} +{over:5.0f} ns   / stdlib overhead: {over / std:.2f}")


if __name__ == "__main__":
    main()
