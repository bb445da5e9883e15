"""The registry of benchmark cases.

A case is one workload measured three ways in the same run:

* ``floor``    -- the same children with no waiting primitive at all;
* ``stdlib``   -- the workload using the :mod:`asyncio` primitive;
* ``fastwait`` -- the same workload using the :mod:`fastwait` primitive.

Every variant is an ``async def variant(loop, n, arg)`` coroutine function
that performs the whole awaited region for one repetition; the harness
(``benchmarks/run.py``) awaits it ``reps`` times between two
``perf_counter_ns()`` calls and discards its result *inside* the timed region,
so what a variant allocates is freed inside the timing for every variant
alike.  ``arg`` is what the case's ``prepare(loop, n)`` built before the timed
region (``None`` when the case has no ``prepare``).

The stdlib and fastwait variants of a case are built by one factory called
with the implementation module (``asyncio`` or ``fastwait``), so they are the
same bytecode and differ only in the primitive they call.

To add a case: write the factory and the floor, pick a check, and append a
:class:`Case` to ``CASES`` with the ``primitive`` it exercises.  A case whose
primitive is not "gather" runs by default only when ``fastwait`` implements
that primitive natively (``fastwait.NATIVE_NAMES``); ``--all`` or ``--case``
selects it anyway.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

Variant = Callable[[asyncio.AbstractEventLoop, int, Any], Awaitable[Any]]
Factory = Callable[[Any], Variant]  # implementation module -> variant
Check = Callable[[str, int, Any, Any], None]  # (variant, n, result, arg)

#: Primitives whose cases run by default even when fastwait is not native
#: (the fallback run is what validates the method's noise level).
ALWAYS_ENABLED = frozenset({"gather"})

#: Sizes of the full and quick modes.
FULL_SIZES = (10, 100, 1_000, 10_000, 100_000)
QUICK_SIZES = (100, 10_000)


@dataclass(frozen=True)
class Case:
    name: str
    primitive: str
    description: str
    floor: Variant
    make: Factory
    check: Check
    prepare: Optional[Callable[[asyncio.AbstractEventLoop, int], Any]] = None
    #: Largest N this case runs at (e.g. a quadratic stdlib algorithm).
    max_n: Optional[int] = None
    tags: tuple = field(default_factory=tuple)

    def variants(self, fastwait_module: Any) -> dict:
        return {
            "floor": self.floor,
            "stdlib": self.make(asyncio),
            "fastwait": self.make(fastwait_module),
        }

    def enabled_by_default(self, fastwait_module: Any) -> bool:
        if self.primitive in ALWAYS_ENABLED:
            return True
        return self.primitive in getattr(fastwait_module, "NATIVE_NAMES", ())


# --------------------------------------------------------------------------
# Children.  Each returns its index so that a result can be checked for
# completeness and order.

_sleep = asyncio.sleep


async def child_return(i):
    """A child that never suspends."""
    return i


async def child_sleep0(i):
    """A child that suspends once (one trip through the loop)."""
    await _sleep(0)
    return i


CHILDREN = {"return": child_return, "sleep0": child_sleep0}


# --------------------------------------------------------------------------
# Checks.  They run outside the timed region, on the first and on a final
# call of every variant.  They raise AssertionError with a readable message.


def _fail(variant, n, what):
    raise AssertionError(f"{variant} (N={n}): {what}")


def check_result_list(variant, n, result, arg):
    """gather-like: the list of the children's results, in order."""
    if variant == "floor":
        return check_done_in_order(variant, n, result, arg)
    if type(result) is not list:
        _fail(variant, n, f"expected a list, got {type(result).__name__}")
    if result != list(range(n)):
        _fail(variant, n, f"wrong results (first items {result[:5]!r})")


def check_done_in_order(variant, n, result, arg):
    """A list of n futures/tasks, all done, with results 0..n-1."""
    if len(result) != n:
        _fail(variant, n, f"{len(result)} futures instead of {n}")
    for i, f in enumerate(result):
        if not f.done():
            _fail(variant, n, f"future {i} is not done")
        if f.result() != i:
            _fail(variant, n, f"future {i} has result {f.result()!r}")


def check_last_index(variant, n, result, arg):
    """Sequential cases return the last child's result."""
    if result != n - 1:
        _fail(variant, n, f"last result {result!r} != {n - 1}")


def check_wait_all(variant, n, result, arg):
    if variant == "floor":
        return check_done_in_order(variant, n, result, arg)
    done, pending, ts = result
    if pending or len(done) != n or done != set(ts):
        _fail(variant, n, f"{len(done)} done, {len(pending)} pending")
    check_done_in_order(variant, n, ts, arg)


# --------------------------------------------------------------------------
# Floors.


def floor_tasks(child):
    async def floor(loop, n, arg):
        ts = [loop.create_task(child(i)) for i in range(n)]
        for t in ts:
            await t
        return ts

    floor.__qualname__ = f"floor_tasks[{child.__name__}]"
    return floor


async def floor_done_futures(loop, n, fs):
    for f in fs:
        await f
    return fs


def prepare_done_futures(loop, n):
    fs = [loop.create_future() for _ in range(n)]
    for i, f in enumerate(fs):
        f.set_result(i)
    return fs


# --------------------------------------------------------------------------
# gather.


def gather_coros(child):
    def make(impl):
        gather = impl.gather

        async def run(loop, n, arg):
            return await gather(*[child(i) for i in range(n)])

        return run

    return make


def gather_tasks(child, return_exceptions):
    def make(impl):
        gather = impl.gather
        if return_exceptions:

            async def run(loop, n, arg):
                ts = [loop.create_task(child(i)) for i in range(n)]
                return await gather(*ts, return_exceptions=True)

        else:

            async def run(loop, n, arg):
                ts = [loop.create_task(child(i)) for i in range(n)]
                return await gather(*ts)

        return run

    return make


def gather_done_futures(impl):
    gather = impl.gather

    async def run(loop, n, fs):
        return await gather(*fs)

    return run


CASES: list[Case] = []

for _kind, _child in CHILDREN.items():
    _never = "never suspend" if _kind == "return" else "suspend once"
    CASES.append(
        Case(
            name=f"gather/coros/{_kind}",
            primitive="gather",
            description=f"gather(*coros); children {_never}",
            floor=floor_tasks(_child),
            make=gather_coros(_child),
            check=check_result_list,
        )
    )
for _kind, _child in CHILDREN.items():
    _never = "never suspend" if _kind == "return" else "suspend once"
    for _rexc in (False, True):
        CASES.append(
            Case(
                name=f"gather/tasks/{_kind}" + ("/rexc" if _rexc else ""),
                primitive="gather",
                description=(
                    "ts = [create_task(c) ...]; gather(*ts"
                    + (", return_exceptions=True" if _rexc else "")
                    + f"); children {_never}"
                ),
                floor=floor_tasks(_child),
                make=gather_tasks(_child, _rexc),
                check=check_result_list,
            )
        )
CASES.append(
    Case(
        name="gather/done-futures",
        primitive="gather",
        description="gather(*fs) of futures resolved before timing; "
        "floor: await each",
        floor=floor_done_futures,
        make=gather_done_futures,
        check=check_result_list,
        prepare=prepare_done_futures,
    )
)


# --------------------------------------------------------------------------
# Later primitives.  In the registry now, run by default only once fastwait
# implements the primitive natively (see Case.enabled_by_default).


def wait_all_tasks(child):
    def make(impl):
        wait = impl.wait

        async def run(loop, n, arg):
            ts = [loop.create_task(child(i)) for i in range(n)]
            done, pending = await wait(ts)
            return done, pending, ts

        return run

    return make


def taskgroup_tasks(child):
    def make(impl):
        TaskGroup = impl.TaskGroup

        async def run(loop, n, arg):
            async with TaskGroup() as tg:
                ts = [tg.create_task(child(i)) for i in range(n)]
            return ts

        return run

    return make


def taskgroup_empty(impl):
    TaskGroup = impl.TaskGroup

    async def run(loop, n, arg):
        for i in range(n):
            async with TaskGroup():
                pass
        return n - 1

    return run


def as_completed_tasks(child):
    def make(impl):
        as_completed = impl.as_completed

        async def run(loop, n, arg):
            ts = [loop.create_task(child(i)) for i in range(n)]
            for f in as_completed(ts):
                await f
            return ts

        return run

    return make


async def floor_sequential_await(loop, n, arg):
    r = None
    for i in range(n):
        r = await child_return(i)
    return r


def timeout_scopes(impl):
    timeout = impl.timeout

    async def run(loop, n, arg):
        r = None
        for i in range(n):
            async with timeout(10):
                r = await child_return(i)
        return r

    return run


# N concurrent tasks, each inside its own scope: the deadlines all pending
# at once (100 000 of them at the largest N).


def _scoped_child(timeout):
    async def child(i):
        async with timeout(10):
            await _sleep(0)
        return i

    return child


def timeout_concurrent(impl):
    child = _scoped_child(impl.timeout)

    async def run(loop, n, arg):
        ts = [loop.create_task(child(i)) for i in range(n)]
        for t in ts:
            await t
        return ts

    return run


# ... and scopes whose deadline fires: each task's deadline is already due
# when it enters, so it is cancelled in the next iteration and the scope
# raises TimeoutError.  Floor: the same tasks cancelled by task.cancel().


async def _cancelled_child(i):
    try:
        await _sleep(3600)
    except asyncio.CancelledError:
        return i


async def floor_cancelled_tasks(loop, n, arg):
    ts = [loop.create_task(_cancelled_child(i)) for i in range(n)]
    await _sleep(0)
    for t in ts:
        t.cancel()
    for t in ts:
        await t
    return ts


def timeout_firing(impl):
    timeout_at = impl.timeout_at

    async def child(i):
        try:
            async with timeout_at(0):
                await _sleep(3600)
        except TimeoutError:
            return i

    async def run(loop, n, arg):
        ts = [loop.create_task(child(i)) for i in range(n)]
        for t in ts:
            await t
        return ts

    return run


def wait_for_calls(impl):
    wait_for = impl.wait_for

    async def run(loop, n, arg):
        r = None
        for i in range(n):
            r = await wait_for(child_return(i), 10)
        return r

    return run


async def floor_sequential_task(loop, n, arg):
    r = None
    for i in range(n):
        r = await loop.create_task(child_return(i))
    return r


def shield_calls(impl):
    shield = impl.shield

    async def run(loop, n, arg):
        r = None
        for i in range(n):
            r = await shield(child_return(i))
        return r

    return run


def floor_sequential_pending_task(child):
    async def floor(loop, n, arg):
        r = None
        for i in range(n):
            t = loop.create_task(child(i))
            r = await t
        return r

    floor.__qualname__ = f"floor_sequential_pending_task[{child.__name__}]"
    return floor


def shield_pending_tasks(child):
    """``await shield(t)`` of a task that is still pending: the overhead of
    shield() itself is this minus the floor's ``await t``."""

    def make(impl):
        shield = impl.shield

        async def run(loop, n, arg):
            r = None
            for i in range(n):
                t = loop.create_task(child(i))
                r = await shield(t)
            return r

        return run

    return make


# The FIRST_COMPLETED loop needs children that finish one per loop
# iteration: child i waits for gate i, then opens gate i + 1 (the waiter of a
# future is woken through call_soon, i.e. on the next iteration).


async def _chain_link(i, gates):
    await gates[i]
    if i + 1 < len(gates):
        # Open the next gate in the next iteration, so that the children
        # really finish one by one (setting it now would let the next
        # child, not started yet, run through in this same iteration).
        gate = gates[i + 1]
        gate.get_loop().call_soon(gate.set_result, None)
    return i


def _chain_start(loop, n):
    gates = [loop.create_future() for _ in range(n)]
    ts = [loop.create_task(_chain_link(i, gates)) for i in range(n)]
    loop.call_soon(gates[0].set_result, None)
    return ts


async def floor_chain(loop, n, arg):
    ts = _chain_start(loop, n)
    for t in ts:
        await t
    return ts


def wait_first_completed_chain(impl):
    wait = impl.wait
    FIRST_COMPLETED = impl.FIRST_COMPLETED

    async def run(loop, n, arg):
        ts = _chain_start(loop, n)
        pending = set(ts)
        while pending:
            _, pending = await wait(pending, return_when=FIRST_COMPLETED)
        return ts

    return run


def completion_queue_chain(impl):
    """The dispatcher loop: the stdlib's ``while pending: wait(pending,
    FIRST_COMPLETED)``, fastwait's ``CompletionQueue``."""
    if getattr(impl, "CompletionQueue", None) is None:
        return wait_first_completed_chain(impl)
    CompletionQueue = impl.CompletionQueue

    async def run(loop, n, arg):
        ts = _chain_start(loop, n)
        q = CompletionQueue(ts)
        while q:
            await q.next()
        return ts

    return run


def check_tasks(variant, n, result, arg):
    check_done_in_order(variant, n, result, arg)


CASES += [
    Case(
        name="wait/all/sleep0",
        primitive="wait",
        description="ts = [create_task(c) ...]; wait(ts); "
        "children suspend once",
        floor=floor_tasks(child_sleep0),
        make=wait_all_tasks(child_sleep0),
        check=check_wait_all,
    ),
    Case(
        name="wait/first-completed-loop",
        primitive="wait",
        description="while pending: wait(pending, FIRST_COMPLETED); "
        "one child finishes per loop iteration",
        floor=floor_chain,
        make=wait_first_completed_chain,
        check=check_tasks,
        max_n=1_000,  # the stdlib's loop is quadratic
    ),
    Case(
        name="completion-queue/dispatch",
        primitive="CompletionQueue",
        description="stdlib: while pending: wait(pending, FIRST_COMPLETED); "
        "fastwait: q = CompletionQueue(ts); while q: await q.next(); "
        "one child finishes per loop iteration",
        floor=floor_chain,
        make=completion_queue_chain,
        check=check_tasks,
        max_n=1_000,  # the stdlib's loop is quadratic
    ),
    Case(
        name="taskgroup/return",
        primitive="TaskGroup",
        description="async with TaskGroup() as tg: tg.create_task(c) ...; "
        "children never suspend",
        floor=floor_tasks(child_return),
        make=taskgroup_tasks(child_return),
        check=check_tasks,
    ),
    Case(
        name="taskgroup/sleep0",
        primitive="TaskGroup",
        description="async with TaskGroup() as tg: tg.create_task(c) ...; "
        "children suspend once",
        floor=floor_tasks(child_sleep0),
        make=taskgroup_tasks(child_sleep0),
        check=check_tasks,
    ),
    Case(
        name="taskgroup/empty",
        primitive="TaskGroup",
        description="N times: async with TaskGroup(): pass; "
        "floor: await c()",
        floor=floor_sequential_await,
        make=taskgroup_empty,
        check=check_last_index,
        max_n=10_000,
    ),
    Case(
        name="as_completed/sleep0",
        primitive="as_completed",
        description="for f in as_completed(ts): await f; "
        "children suspend once",
        floor=floor_tasks(child_sleep0),
        make=as_completed_tasks(child_sleep0),
        check=check_tasks,
    ),
    Case(
        name="timeout/sequential",
        primitive="timeout",
        description="N times: async with timeout(10): await c(); "
        "floor: await c()",
        floor=floor_sequential_await,
        make=timeout_scopes,
        check=check_last_index,
        max_n=10_000,
    ),
    Case(
        name="timeout/concurrent",
        primitive="timeout",
        description="N tasks at once, each: async with timeout(10): "
        "await sleep(0); floor: the same tasks without the scope",
        floor=floor_tasks(child_sleep0),
        make=timeout_concurrent,
        check=check_tasks,
    ),
    Case(
        name="timeout/firing",
        primitive="timeout",
        description="N tasks at once, each: async with timeout_at(0) "
        "around a long sleep -> TimeoutError; floor: the same tasks "
        "cancelled by task.cancel()",
        floor=floor_cancelled_tasks,
        make=timeout_firing,
        check=check_tasks,
    ),
    Case(
        name="wait_for/sequential",
        primitive="wait_for",
        description="N times: await wait_for(c(), 10); floor: await c()",
        floor=floor_sequential_await,
        make=wait_for_calls,
        check=check_last_index,
        max_n=10_000,
    ),
    Case(
        name="shield/sequential",
        primitive="shield",
        description="N times: await shield(c()); "
        "floor: await create_task(c())",
        floor=floor_sequential_task,
        make=shield_calls,
        check=check_last_index,
        max_n=10_000,
    ),
] + [
    Case(
        name=f"shield/task/{_kind}",
        primitive="shield",
        description="N times: t = create_task(c()); await shield(t); "
        "floor: t = create_task(c()); await t",
        floor=floor_sequential_pending_task(_child),
        make=shield_pending_tasks(_child),
        check=check_last_index,
        max_n=10_000,
    )
    for _kind, _child in CHILDREN.items()
]

del _kind, _child, _never, _rexc

BY_NAME = {c.name: c for c in CASES}
assert len(BY_NAME) == len(CASES), "duplicate case names"
