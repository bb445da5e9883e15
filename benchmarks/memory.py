"""Memory per concurrent timeout scope: the stdlib against fastwait.

    python -m benchmarks.memory [--n 100000] [--loop asyncio|uvloop]

N tasks are started, each enters ``async with timeout(10)`` and waits on a
shared future; when all N scopes are active, the memory that tracemalloc
sees allocated since the start (tasks, coroutines, scopes, timers: every
allocation through Python's allocators, the extension's heap of deadlines
included) is divided by N.  The same is done with no scope at all (the
floor), so "scope" is the difference: what one active scope costs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tracemalloc

import fastwait


def measure(timeout, n: int, loop_name: str) -> float:
    """Bytes per task with every task inside an active scope (timeout=None:
    no scope)."""
    if loop_name == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()

    async def child(gate):
        if timeout is None:
            await gate
        else:
            async with timeout(10):
                await gate

    async def main():
        gate = loop.create_future()
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        tasks = [loop.create_task(child(gate)) for _ in range(n)]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        gate.set_result(None)
        await asyncio.gather(*tasks)
        return used / n

    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = ap.parse_args(argv)
    floor = measure(None, args.n, args.loop)
    stdlib = measure(asyncio.timeout, args.n, args.loop)
    fast = measure(fastwait.timeout, args.n, args.loop)
    print(f"Python {sys.version.split()[0]}, loop {args.loop}, "
          f"N={args.n:,} concurrent scopes, fastwait NATIVE={fastwait.NATIVE}")
    print(f"{'':10} {'bytes/task':>11} {'scope bytes':>12}")
    print(f"{'floor':10} {floor:11.0f} {'':>12}")
    print(f"{'stdlib':10} {stdlib:11.0f} {stdlib - floor:12.0f}")
    print(f"{'fastwait':10} {fast:11.0f} {fast - floor:12.0f}")
    print(f"fastwait/stdlib scope memory: {(fast - floor) / (stdlib - floor):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
