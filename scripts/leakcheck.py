#!/usr/bin/env python3
"""Repeat-run leak check for fastwait's primitives.

Usage (with the interpreter of a venv where fastwait is installed):

    python scripts/leakcheck.py                     # every scenario, fastwait
    python scripts/leakcheck.py --impl both         # and the stdlib, for comparison
    python scripts/leakcheck.py --tasks lazy,eager  # eager task factory too (3.12+)
    python scripts/leakcheck.py -k cancel --reps 50000
    python scripts/leakcheck.py --list

Each scenario is one small operation (an ``async def`` taking the module under
test: ``fastwait`` or ``asyncio``), run once per ``loop.run_until_complete``.
For every scenario the check warms up (until two chunks of repetitions in a
row leave the allocated block count flat: CPython's own caches, asyncio's C
module's among them, take tens of thousands of operations to fill on some
versions), then runs ``--reps`` repetitions (default 10 000) and fails when,
after ``gc.collect()``:

* ``sys.getallocatedblocks()`` grew by more than 1 block per 1000 repetitions
  (a batch that grew is measured again with twice the repetitions, up to
  four batches in all; only a growth past the rate in every one fails: a
  leak keeps its rate however long the batch, a filling cache slows down);
* the reference count of an involved type grew by as much (``asyncio.Task``,
  ``asyncio.Future``, ``asyncio.CancelledError``, this script's exception, and
  every type that ``fastwait._fastwait`` exports: an instance of a heap type
  holds a reference to its type, so leaked instances show up here);
* ``gc.garbage`` is not empty (uncollectable objects);
* a task of the loop is still pending after the batch, the loop's exception
  handler was called ("exception was never retrieved", ...), or an
  unraisable exception was reported (``sys.unraisablehook``);
* the scenario's own assertions failed (each checks its result, so a change
  of behaviour cannot pass as "no leak").

The "cyc/rep" column is the objects that ``gc.collect()`` freed per
repetition, i.e. how much cyclic garbage one operation leaves.  It is
informational, except for scenarios registered with ``acyclic=True``: there
fastwait must leave none (no reference cycle through a raised exception, a
cancelled group, ...), while the stdlib's figure is only shown.

Adding a scenario is one function::

    @scenario("wait")
    async def wait_all_tasks(impl):
        loop = asyncio.get_running_loop()
        ts = [loop.create_task(ret(i)) for i in range(N)]
        done, pending = await impl.wait(ts)
        assert len(done) == N and not pending

Needs the real extension unless FASTWAIT_NO_EXTENSIONS=1 is set (then
fastwait re-exports the stdlib and the check runs against that).  Exits 0 when
every scenario passed, 1 otherwise, 2 on a usage error.  The numbers are
meaningless with PYTHONMALLOC=malloc (pymalloc off); the script refuses to run
then.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import gc
import os
import sys
import time
import types
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterator

N = 8  # children per operation


# --------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class Scenario:
    name: str
    primitive: str
    fn: Callable[[types.ModuleType], Awaitable[None]]
    min_version: tuple[int, int]
    doc: str
    acyclic: bool = False


SCENARIOS: dict[str, Scenario] = {}


def scenario(primitive: str, *, min_version: tuple[int, int] = (3, 11),
             acyclic: bool = False):
    """Register ``async def name(impl)`` as a scenario of ``primitive``.

    ``impl`` is the module under test (``fastwait`` or ``asyncio``): call the
    primitive as ``impl.<primitive>``; use ``asyncio`` itself for everything
    else (tasks, futures, sleep).  The function runs inside the loop; it must
    leave no task pending and should assert its results.  ``acyclic``:
    fastwait's run must leave no cyclic garbage at all.
    """

    def register(fn):
        name = fn.__name__
        if name in SCENARIOS:
            raise RuntimeError(f"duplicate scenario {name!r}")
        SCENARIOS[name] = Scenario(name, primitive, fn, min_version,
                                   (fn.__doc__ or "").strip().split("\n")[0],
                                   acyclic)
        return fn

    return register


# --------------------------------------------------------------------------
# Helpers for scenarios


class Boom(Exception):
    """The exception children raise."""


async def ret(value: Any) -> Any:
    return value


async def suspend_then_ret(value: Any) -> Any:
    await asyncio.sleep(0)
    return value


async def boom() -> None:
    raise Boom("boom")


async def suspend_then_boom() -> None:
    await asyncio.sleep(0)
    raise Boom("boom")


async def forever() -> None:
    await asyncio.get_running_loop().create_future()


async def settle(steps: int = 3) -> None:
    """Let children that outlive the operation finish."""
    for _ in range(steps):
        await asyncio.sleep(0)


@contextlib.contextmanager
def expect(exc_type: type[BaseException], args: tuple | None = None) -> Iterator[None]:
    """Assert that the block raises ``exc_type`` (with ``args`` if given)."""
    try:
        yield
    except exc_type as exc:
        if args is not None and exc.args != args:
            raise AssertionError(f"expected {exc_type.__name__}{args!r}, got {exc!r}") from None
    else:
        raise AssertionError(f"{exc_type.__name__} not raised")


def done_future(value: Any = None, exc: BaseException | None = None) -> asyncio.Future:
    fut = asyncio.get_running_loop().create_future()
    if exc is None:
        fut.set_result(value)
    else:
        fut.set_exception(exc)
    return fut


_other_loop: asyncio.AbstractEventLoop | None = None


def other_loop() -> asyncio.AbstractEventLoop:
    """A second (never running) loop, for "future of another loop" errors."""
    global _other_loop
    if _other_loop is None:
        _other_loop = asyncio.new_event_loop()
    return _other_loop


# --------------------------------------------------------------------------
# gather


@scenario("gather")
async def gather_success(impl):
    """gather(*coros), every child returns at once."""
    assert await impl.gather(*[ret(i) for i in range(N)]) == list(range(N))


@scenario("gather")
async def gather_success_suspending(impl):
    """gather(*coros), every child suspends once."""
    assert await impl.gather(*[suspend_then_ret(i) for i in range(N)]) == list(range(N))


@scenario("gather")
async def gather_empty(impl):
    """gather() with no argument."""
    assert await impl.gather() == []


@scenario("gather")
async def gather_child_raises(impl):
    """One child raises, return_exceptions=False."""
    with expect(Boom):
        await impl.gather(ret(0), suspend_then_boom(), *[suspend_then_ret(i) for i in range(N)])
    await settle()


@scenario("gather")
async def gather_child_raises_return_exceptions(impl):
    """One child raises, return_exceptions=True."""
    res = await impl.gather(ret(0), boom(), suspend_then_boom(), return_exceptions=True)
    assert res[0] == 0 and type(res[1]) is Boom and type(res[2]) is Boom, res


@scenario("gather")
async def gather_outer_cancel_with_message(impl):
    """The task awaiting gather is cancelled with a message."""
    async def waiter():
        await impl.gather(*[forever() for _ in range(N)])

    task = asyncio.get_running_loop().create_task(waiter())
    await asyncio.sleep(0)
    assert task.cancel("stop")
    with expect(asyncio.CancelledError):
        await task
    await settle()


@scenario("gather")
async def gather_future_cancel_with_message(impl):
    """gather's own future is cancelled with a message."""
    outer = impl.gather(*[forever() for _ in range(N)], return_exceptions=True)
    await asyncio.sleep(0)
    assert outer.cancel("stop")
    with expect(asyncio.CancelledError):
        await outer
    await settle()


@scenario("gather")
async def gather_child_cancelled(impl):
    """A child task is cancelled, return_exceptions=False."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(suspend_then_ret(i)) for i in range(N)]
    tasks[1].cancel("child")
    with expect(asyncio.CancelledError):
        await impl.gather(*tasks)
    await settle()


@scenario("gather")
async def gather_child_cancelled_return_exceptions(impl):
    """A child task is cancelled, return_exceptions=True."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(suspend_then_ret(i)) for i in range(N)]
    tasks[1].cancel("child")
    res = await impl.gather(*tasks, return_exceptions=True)
    assert isinstance(res[1], asyncio.CancelledError) and res[2] == 2, res


@scenario("gather")
async def gather_done_futures(impl):
    """Every argument is an already-done future (one failed)."""
    futs = [done_future(i) for i in range(N)]
    assert await impl.gather(*futs) == list(range(N))
    futs.append(done_future(exc=Boom("done")))
    res = await impl.gather(*futs, return_exceptions=True)
    assert type(res[-1]) is Boom
    with expect(Boom):
        await impl.gather(*futs)


@scenario("gather")
async def gather_precreated_tasks(impl):
    """Tasks created by the caller, then gathered."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(suspend_then_ret(i)) for i in range(N)]
    assert await impl.gather(*tasks) == list(range(N))


@scenario("gather")
async def gather_duplicates(impl):
    """The same task and future passed several times."""
    loop = asyncio.get_running_loop()
    task = loop.create_task(suspend_then_ret(5))
    fut = done_future(7)
    assert await impl.gather(task, task, ret(1), fut, task, fut) == [5, 5, 1, 7, 5, 7]


@scenario("gather")
async def gather_bad_argument(impl):
    """A non-awaitable argument: TypeError (after a coroutine was wrapped)."""
    with expect(TypeError):
        impl.gather(1)
    with expect(TypeError):
        impl.gather(done_future(1), 1)
    with expect(TypeError):
        impl.gather(ret(1), None)
    await settle()


@scenario("gather")
async def gather_future_of_other_loop(impl):
    """A future of another loop: ValueError."""
    with expect(ValueError):
        impl.gather(done_future(1), other_loop().create_future())
    with expect(ValueError):
        impl.gather(ret(1), other_loop().create_future())
    await settle()


# --------------------------------------------------------------------------
# The other primitives (the stdlib's own objects until their native versions
# land; the scenarios are here so that those versions are checked at once).


@scenario("wait")
async def wait_all_completed(impl):
    """wait(tasks) with ALL_COMPLETED."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(suspend_then_ret(i)) for i in range(N)]
    done, pending = await impl.wait(tasks)
    assert len(done) == N and not pending


@scenario("wait")
async def wait_first_completed(impl):
    """wait(tasks, FIRST_COMPLETED), then cancel the rest."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(forever()) for _ in range(N)]
    tasks.append(loop.create_task(suspend_then_ret(1)))
    done, pending = await impl.wait(tasks, return_when=impl.FIRST_COMPLETED)
    assert len(done) == 1 and len(pending) == N
    for t in pending:
        t.cancel()
    await settle()


@scenario("wait")
async def wait_first_exception(impl):
    """wait(tasks, FIRST_EXCEPTION): one child fails, the rest are cancelled."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(forever()) for _ in range(N)]
    failing = loop.create_task(suspend_then_boom())
    done, pending = await impl.wait(tasks + [failing],
                                    return_when=impl.FIRST_EXCEPTION)
    assert done == {failing} and len(pending) == N
    for t in pending:
        t.cancel()
    await settle()


@scenario("wait")
async def wait_timeout(impl):
    """wait(tasks, timeout=0): returns what is done, cancels nothing."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(forever()) for _ in range(N)]
    done, pending = await impl.wait(tasks, timeout=0)
    assert not done and len(pending) == N
    for t in pending:
        t.cancel()
    await settle()


@scenario("wait")
async def wait_cancelled(impl):
    """The task awaiting wait() is cancelled; the children keep running."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(forever()) for _ in range(N)]
    waiter = loop.create_task(impl.wait(tasks))
    await asyncio.sleep(0)
    waiter.cancel("stop")
    with expect(asyncio.CancelledError, ("stop",)):
        await waiter
    assert not any(t.done() for t in tasks)
    for t in tasks:
        t.cancel()
    await settle()


@scenario("wait")
async def wait_bad_input(impl):
    """wait() argument errors, raised at the first await."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    with expect(TypeError):
        await impl.wait(fut)
    with expect(ValueError, ("Set of Tasks/Futures is empty.",)):
        await impl.wait([])
    with expect(ValueError):
        await impl.wait([fut], return_when="bogus")


@scenario("CompletionQueue")
async def completion_queue_dispatch(impl):
    """CompletionQueue over tasks and coroutines, drained with next()."""
    loop = asyncio.get_running_loop()
    q = impl.CompletionQueue([loop.create_task(suspend_then_ret(i)) for i in range(N)])
    q.add(suspend_then_boom())
    q.add(ret(1))
    seen = 0
    while q:
        t = await q.next()
        if t.exception() is None:
            t.result()
        seen += 1
    assert seen == N + 2


@scenario("CompletionQueue")
async def completion_queue_exit_cancels(impl):
    """async with: the exit cancels what is pending and waits for it."""
    async with impl.CompletionQueue() as q:
        for _ in range(N):
            q.add(forever())
        first = q.add(suspend_then_ret(0))
        assert await q.next() is first
    assert q.pending == 0 and q.ready == N
    assert all(q.poll().cancelled() for _ in range(N))


@scenario("CompletionQueue")
async def completion_queue_timeout_and_errors(impl):
    """next(timeout) times out; bad input raises; a closed queue refuses."""
    loop = asyncio.get_running_loop()
    q = impl.CompletionQueue()
    fut = q.add(loop.create_future())
    with expect(TimeoutError):
        await q.next(timeout=0)
    with expect(TypeError):
        q.add(42)
    q.close()
    with expect(RuntimeError):
        q.add(ret(1))
    fut.cancel()
    assert await q.next() is fut


@scenario("wait_for")
async def wait_for_result(impl):
    """wait_for(coro, 10) that returns."""
    assert await impl.wait_for(suspend_then_ret(3), 10) == 3


@scenario("wait_for")
async def wait_for_times_out(impl):
    """wait_for(never, 0): TimeoutError."""
    with expect(TimeoutError):
        await impl.wait_for(forever(), 0)


@scenario("wait_for")
async def wait_for_timer_fires(impl):
    """wait_for(never, 1 ns): the timer fires, TimeoutError."""
    with expect(TimeoutError):
        await impl.wait_for(forever(), 1e-9)


@scenario("wait_for")
async def wait_for_outer_cancelled(impl):
    """The caller of wait_for is cancelled: the inner is cancelled too."""
    loop = asyncio.get_running_loop()
    inner = loop.create_future()
    t = loop.create_task(impl.wait_for(inner, 10))
    await asyncio.sleep(0)
    t.cancel()
    with expect(asyncio.CancelledError):
        await t
    assert inner.cancelled()


@scenario("wait_for")
async def wait_for_inner_raises(impl):
    """wait_for(coro that raises, 10)."""
    with expect(Boom):
        await impl.wait_for(suspend_then_boom(), 10)


@scenario("as_completed")
async def as_completed_tasks(impl):
    """Iterate as_completed(tasks) and await each."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(suspend_then_ret(i)) for i in range(N)]
    got = [await f for f in impl.as_completed(tasks)]
    assert sorted(got) == list(range(N))


@scenario("shield")
async def shield_result(impl):
    """await shield(coro)."""
    assert await impl.shield(suspend_then_ret(4)) == 4


@scenario("shield")
async def shield_pending_task(impl):
    """await shield(task) of pending tasks, a result each."""
    loop = asyncio.get_running_loop()
    for i in range(N):
        assert await impl.shield(loop.create_task(suspend_then_ret(i))) == i


@scenario("shield")
async def shield_inner_raises(impl):
    """The inner task raises: the outer gets its exception."""
    loop = asyncio.get_running_loop()
    with expect(Boom):
        await impl.shield(loop.create_task(suspend_then_boom()))


@scenario("shield")
async def shield_inner_cancelled(impl):
    """The inner task is cancelled: the outer is cancelled."""
    loop = asyncio.get_running_loop()
    t = loop.create_task(forever())
    outer = impl.shield(t)
    loop.call_soon(t.cancel, "m")
    with expect(asyncio.CancelledError, ()):
        await outer


@scenario("shield")
async def shield_waiter_cancelled(impl):
    """The task awaiting shield() is cancelled; the inner finishes later,
    with a result and with an exception (awaited afterwards)."""
    loop = asyncio.get_running_loop()
    for inner_fn in (suspend_then_ret, lambda i: suspend_then_boom()):
        gate = loop.create_future()

        async def inner(i, gate=gate, inner_fn=inner_fn):
            await gate
            return await inner_fn(i)

        t = loop.create_task(inner(1))
        waiter = loop.create_task(_await(impl.shield(t)))
        await asyncio.sleep(0)
        waiter.cancel()
        with expect(asyncio.CancelledError):
            await waiter
        gate.set_result(None)
        try:
            await t
        except Boom:
            pass


async def _await(aw):
    return await aw


@scenario("shield")
async def shield_outer_cancelled_same_iteration(impl):
    """The outer is cancelled and the inner fails in the same iteration:
    the inner callback marks the inner's exception retrieved (3.11-3.13;
    3.14 no longer does, and the scenario retrieves it itself)."""
    loop = asyncio.get_running_loop()
    f = loop.create_future()
    outer = impl.shield(f)
    outer.cancel()
    f.set_exception(Boom("b"))
    await settle()
    assert outer.cancelled()
    if sys.version_info >= (3, 14):
        assert isinstance(f.exception(), Boom)


@scenario("shield")
async def shield_dropped_pending(impl):
    """shield() of a future that never completes, everything dropped (the
    callbacks and the futures form cycles for the gc)."""
    loop = asyncio.get_running_loop()
    for _ in range(N):
        impl.shield(loop.create_future())


@scenario("shield")
async def shield_shortcut_and_errors(impl):
    """Already-done argument returned itself; a non-awaitable refused."""
    f = done_future(3)
    assert impl.shield(f) is f
    with expect(TypeError):
        impl.shield(1)
    with expect(TypeError):
        impl.shield()


@scenario("TaskGroup", acyclic=True)
async def taskgroup_success(impl):
    """TaskGroup whose children return."""
    async with impl.TaskGroup() as tg:
        tasks = [tg.create_task(suspend_then_ret(i)) for i in range(N)]
    assert [t.result() for t in tasks] == list(range(N))


@scenario("TaskGroup", acyclic=True)
async def taskgroup_return_now(impl):
    """TaskGroup whose children return without suspending."""
    async with impl.TaskGroup() as tg:
        tasks = [tg.create_task(ret(i)) for i in range(N)]
    assert [t.result() for t in tasks] == list(range(N))


@scenario("TaskGroup", acyclic=True)
async def taskgroup_empty(impl):
    """An empty TaskGroup entered and left."""
    async with impl.TaskGroup():
        pass


def _plain_factory(loop, coro, **kwargs):
    return asyncio.Task(coro, loop=loop, **kwargs)


@scenario("TaskGroup", acyclic=True)
async def taskgroup_callback_mode(impl):
    """TaskGroup under a custom task factory (one done-callback per child)."""
    loop = asyncio.get_running_loop()
    old = loop.get_task_factory()
    loop.set_task_factory(_plain_factory)
    try:
        async with impl.TaskGroup() as tg:
            tasks = [tg.create_task(suspend_then_ret(i)) for i in range(N)]
    finally:
        loop.set_task_factory(old)
    assert [t.result() for t in tasks] == list(range(N))


@scenario("TaskGroup")
async def taskgroup_child_raises(impl):
    """TaskGroup with a failing child: ExceptionGroup, siblings cancelled."""
    try:
        async with impl.TaskGroup() as tg:
            for _ in range(N):
                tg.create_task(forever())
            tg.create_task(suspend_then_boom())
    except* Boom:
        pass
    else:
        raise AssertionError("no ExceptionGroup")


async def _failed_group(impl, first):
    async with impl.TaskGroup() as tg:
        for i in range(N):
            tg.create_task(suspend_then_ret(i))
        tg.create_task(suspend_then_boom())
        tg.create_task(first())


@scenario("TaskGroup", acyclic=True)
async def taskgroup_failed_no_cycle(impl):
    """Failed TaskGroup, ExceptionGroup raised and caught: no cycle left."""
    try:
        await _failed_group(impl, suspend_then_boom)
    except ExceptionGroup as eg:
        assert len(eg.exceptions) == 2, eg
        assert all(type(e) is Boom for e in eg.exceptions)
        del eg
    else:
        raise AssertionError("no ExceptionGroup")


@scenario("TaskGroup")
async def taskgroup_fails_at_once(impl):
    """TaskGroup whose last child fails in its first step (eager: inside
    create_task, where CPython's own frames close a cycle)."""
    try:
        await _failed_group(impl, boom)
    except ExceptionGroup as eg:
        # Two failures, or one when the eager start fails in create_task.
        assert 1 <= len(eg.exceptions) <= 2, eg
        assert all(type(e) is Boom for e in eg.exceptions)
        del eg
    else:
        raise AssertionError("no ExceptionGroup")


@scenario("TaskGroup", acyclic=True)
async def taskgroup_private_tasks(impl):
    """TaskGroup whose _tasks is read while children run (the switch to the
    stdlib's set), then one more child, and _errors read."""
    async with impl.TaskGroup() as tg:
        tasks = [tg.create_task(suspend_then_ret(i)) for i in range(N)]
        assert len(tg._tasks) == N
        tasks.append(tg.create_task(ret(N)))
        assert tg._errors == []
    assert [t.result() for t in tasks] == list(range(N + 1))


class _Hooked:
    """TaskGroup subclasses overriding the stdlib's hooks, one per impl."""

    classes: dict = {}

    @classmethod
    def of(cls, impl):
        sub = cls.classes.get(impl.__name__)
        if sub is None:
            class Sub(impl.TaskGroup):
                def _on_task_done(self, task):
                    self.seen = getattr(self, "seen", 0) + 1
                    super()._on_task_done(task)

                def _abort(self):
                    super()._abort()

            sub = cls.classes[impl.__name__] = Sub
        return sub


@scenario("TaskGroup")
async def taskgroup_hooked_subclass(impl):
    """A subclass overriding _on_task_done and _abort (the stdlib's
    algorithm, a bound method per child), one child failing."""
    try:
        async with _Hooked.of(impl)() as tg:
            for i in range(N):
                tg.create_task(suspend_then_ret(i))
            tg.create_task(forever())
            tg.create_task(suspend_then_boom())
    except* Boom:
        pass
    else:
        raise AssertionError("no ExceptionGroup")
    assert tg.seen == N + 2


async def _cancelled_parent(impl):
    async with impl.TaskGroup() as tg:
        for _ in range(N):
            tg.create_task(forever())
        await forever()


@scenario("TaskGroup", acyclic=True)
async def taskgroup_cancelled_parent(impl):
    """The parent of a TaskGroup cancelled from outside while it waits."""
    loop = asyncio.get_running_loop()
    t = loop.create_task(_cancelled_parent(impl))
    await asyncio.sleep(0)
    t.cancel()
    try:
        await t
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("CancelledError not raised")
    # (The task keeps its CancelledError, whose traceback keeps this frame:
    # drop the task so that the scaffolding closes no cycle.)
    assert t.cancelled()
    del t


async def _nested(impl, fail):
    async with impl.TaskGroup() as inner:
        inner.create_task(suspend_then_ret(1))
        if fail:
            inner.create_task(suspend_then_boom())
    return 2


@scenario("TaskGroup", acyclic=True)
async def taskgroup_nested(impl):
    """Nested TaskGroups, one inner group failing."""
    try:
        async with impl.TaskGroup() as outer:
            outer.create_task(_nested(impl, False))
            outer.create_task(_nested(impl, True))
            outer.create_task(forever())
    except ExceptionGroup as eg:
        assert type(eg.exceptions[0]) is ExceptionGroup, eg
        del eg
    else:
        raise AssertionError("no ExceptionGroup")


@scenario("timeout")
async def timeout_not_reached(impl):
    """async with timeout(10) around a suspending await."""
    async with impl.timeout(10):
        await suspend_then_ret(1)


@scenario("timeout")
async def timeout_expires(impl):
    """async with timeout(0): TimeoutError."""
    with expect(TimeoutError):
        async with impl.timeout(0):
            await forever()


@scenario("timeout")
async def timeout_fires_later(impl):
    """A deadline that fires through the loop timer (a nanosecond ahead:
    due at the next iteration, no sleep)."""
    loop = asyncio.get_running_loop()
    with expect(TimeoutError):
        async with impl.timeout_at(loop.time() + 1e-9):
            await forever()
    assert asyncio.current_task().cancelling() == 0


@scenario("timeout")
async def timeout_nested_reschedule(impl):
    """Nested scopes, reschedule() later/None/earlier, the inner fires."""
    loop = asyncio.get_running_loop()
    async with impl.timeout(10) as outer:
        outer.reschedule(loop.time() + 20)
        with expect(TimeoutError):
            async with impl.timeout(None) as inner:
                inner.reschedule(loop.time() + 30)
                inner.reschedule(None)
                inner.reschedule(loop.time() - 1)
                await forever()
        assert inner.expired() and not outer.expired()
    assert asyncio.current_task().cancelling() == 0


@scenario("timeout")
async def timeout_many_concurrent(impl):
    """N tasks each in its own scope; half of the deadlines fire."""
    loop = asyncio.get_running_loop()

    async def one(i):
        try:
            async with impl.timeout(0 if i % 2 else 10):
                await suspend_then_ret(i)
                await suspend_then_ret(i)
        except TimeoutError:
            return -1
        return i

    got = await asyncio.gather(*[one(i) for i in range(N)])
    assert got == [-1 if i % 2 else i for i in range(N)]


@scenario("timeout")
async def timeout_body_raises_after_expiry(impl):
    """The body turns the cancellation into another error (3.13 splices
    a TimeoutError into its context chain)."""
    with expect(KeyError):
        async with impl.timeout(0):
            try:
                await forever()
            finally:
                raise KeyError("k")


@scenario("timeout")
async def timeout_outer_cancel(impl):
    """task.cancel() inside an active scope: CancelledError, not
    TimeoutError."""
    async def body():
        async with impl.timeout(10):
            await forever()

    t = asyncio.get_running_loop().create_task(body())
    await asyncio.sleep(0)
    t.cancel("bye")
    with expect(asyncio.CancelledError):
        await t


# --------------------------------------------------------------------------
# Beyond asyncio (docs/extras.md): gather's limit=/timeout=/eager=, race(),
# TaskGroup(limit=).  fastwait only: the stdlib has none of them.

EXTRAS = frozenset({"gather-extras", "race", "TaskGroup-limit"})


@scenario("gather-extras")
async def gather_limit_success(impl):
    """gather(*coros, limit=2): children started as slots free."""
    res = await impl.gather(*[suspend_then_ret(i) for i in range(N)], limit=2)
    assert res == list(range(N))


@scenario("gather-extras")
async def gather_limit_child_raises(impl):
    """limit=1: the first child fails; the never-started ones are closed."""
    with expect(Boom, ("boom",)):
        await impl.gather(suspend_then_boom(), *[ret(i) for i in range(N)], limit=1)


@scenario("gather-extras")
async def gather_limit_outer_cancelled(impl):
    """limit=2: gather's future cancelled while children wait for a slot."""
    outer = impl.gather(*[forever() for _ in range(N)], limit=2)
    await asyncio.sleep(0)
    assert outer.cancel("stop")
    with expect(asyncio.CancelledError):
        await outer


@scenario("gather-extras")
async def gather_timeout_partial(impl):
    """timeout=0 with return_exceptions=True: partial results."""
    done = done_future(7)
    res = await impl.gather(done, *[forever() for _ in range(N)], ret(1),
                            return_exceptions=True, timeout=0, limit=3)
    assert res[0] == 7 and all(isinstance(r, TimeoutError) for r in res[1:N + 1])


@scenario("gather-extras")
async def gather_timeout_raises(impl):
    """timeout=0, return_exceptions=False: TimeoutError after the cancels."""
    with expect(TimeoutError, ()):
        await impl.gather(*[forever() for _ in range(N)], timeout=0)


@scenario("gather-extras")
async def gather_timeout_not_firing(impl):
    """timeout=10 that never fires (the deadline is removed)."""
    res = await impl.gather(*[suspend_then_ret(i) for i in range(N)], timeout=10)
    assert res == list(range(N))


@scenario("gather-extras")
async def gather_eager_mixed(impl):
    """eager=True: children that return, raise and suspend."""
    res = await impl.gather(ret(0), boom(), suspend_then_ret(2), suspend_then_boom(),
                            return_exceptions=True, eager=True, limit=2)
    assert res[0] == 0 and res[2] == 2
    assert isinstance(res[1], Boom) and isinstance(res[3], Boom)


@scenario("gather-extras")
async def gather_bad_limit(impl):
    """limit=0: ValueError before any child is touched."""
    c = ret(0)
    with expect(ValueError, ("limit must be >= 1, got 0",)):
        impl.gather(c, limit=0)
    c.close()


@scenario("race")
async def race_first_wins(impl):
    """race(): the first success wins, the others are cancelled and awaited."""
    assert await impl.race(suspend_then_ret(1), *[forever() for _ in range(N)]) == 1


@scenario("race")
async def race_all_fail(impl):
    """race(): every child fails: ExceptionGroup."""
    try:
        await impl.race(*[suspend_then_boom() for _ in range(N)])
    except ExceptionGroup as eg:
        assert eg.message == "all racers failed" and len(eg.exceptions) == N
    else:
        raise AssertionError("no ExceptionGroup")


@scenario("race")
async def race_timeout(impl):
    """race(timeout=0): TimeoutError once the children are awaited."""
    with expect(TimeoutError):
        await impl.race(*[forever() for _ in range(N)], timeout=0)


@scenario("race")
async def race_caller_cancelled(impl):
    """The task awaiting race() is cancelled."""
    t = asyncio.get_running_loop().create_task(
        impl.race(*[forever() for _ in range(N)]))
    await asyncio.sleep(0)
    t.cancel()
    with expect(asyncio.CancelledError):
        await t


@scenario("TaskGroup-limit")
async def taskgroup_limit(impl):
    """TaskGroup(limit=2): tasks wait for a slot in creation order."""
    async with impl.TaskGroup(limit=2) as tg:
        ts = [tg.create_task(suspend_then_ret(i)) for i in range(N)]
    assert [t.result() for t in ts] == list(range(N))


@scenario("TaskGroup-limit")
async def taskgroup_limit_abort(impl):
    """TaskGroup(limit=1): a child fails while the others wait for a slot."""
    try:
        async with impl.TaskGroup(limit=1) as tg:
            tg.create_task(suspend_then_boom())
            for _ in range(N):
                tg.create_task(forever())
    except ExceptionGroup as eg:
        assert len(eg.exceptions) == 1 and isinstance(eg.exceptions[0], Boom)
    else:
        raise AssertionError("no ExceptionGroup")


# --------------------------------------------------------------------------
# Runner


@dataclass
class Result:
    scenario: str
    impl: str
    tasks: str
    reps: int
    blocks: int = 0
    refs: int = 0
    refs_type: str = ""
    cyclic: float = 0.0
    warmup: int = 0
    attempts: int = 0
    seconds: float = 0.0
    problems: list[str] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def fastwait_types(fastwait: types.ModuleType) -> list[type]:
    try:
        ext = sys.modules["fastwait._fastwait"]
    except KeyError:
        return []
    return [v for _, v in sorted(vars(ext).items()) if isinstance(v, type)]


def watched_types(fastwait: types.ModuleType) -> list[type]:
    found = [asyncio.Task, asyncio.Future, asyncio.CancelledError, Boom]
    gathering = getattr(asyncio.tasks, "_GatheringFuture", None)
    if gathering is not None:
        found.append(gathering)
    for t in fastwait_types(fastwait):
        if t not in found:
            found.append(t)
    return found


def new_loop(loop_name: str, tasks: str) -> asyncio.AbstractEventLoop:
    if loop_name == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    if tasks == "eager":
        loop.set_task_factory(asyncio.eager_task_factory)
    return loop


def run_scenario(sc: Scenario, impl: types.ModuleType, impl_name: str, opts: argparse.Namespace,
                 tasks: str, watch: list[type]) -> Result:
    reps = opts.reps
    res = Result(sc.name, impl_name, tasks, reps, problems=[])
    # Counted, and only the first kept: keeping them all would be a leak.
    handler_calls = [0, ""]
    unraisable = [0, ""]

    def on_error(loop, context):
        if not handler_calls[0]:
            handler_calls[1] = str(context.get("message"))
        handler_calls[0] += 1

    def on_unraisable(info):
        if not unraisable[0]:
            unraisable[1] = f"{info.exc_type.__name__}: {info.exc_value} in {info.object!r}"
        unraisable[0] += 1

    def batch(n: int) -> int:
        """Run n repetitions; return the objects gc freed meanwhile."""
        freed = 0
        gc.disable()
        try:
            for i in range(n):
                loop.run_until_complete(sc.fn(impl))
                if i % 1000 == 999:
                    freed += gc.collect()
            loop.run_until_complete(settle(5))
        finally:
            gc.enable()
        return freed + gc.collect()

    def blocks() -> int:
        gc.collect()
        return sys.getallocatedblocks()

    old_hook = sys.unraisablehook
    sys.unraisablehook = on_unraisable
    loop = new_loop(opts.loop, tasks)
    loop.set_exception_handler(on_error)
    asyncio.set_event_loop(loop)
    t0 = time.perf_counter()
    try:
        try:
            # Warm up until the block count settles: caches inside CPython
            # (asyncio's C module among them) fill up over tens of thousands
            # of operations and then stop growing; a leak never does.  Two
            # quiet chunks in a row end the warm-up.
            chunk = max(1000, reps // 5)
            done = quiet = 0
            while quiet < 2 and done < opts.max_warmup:
                b0 = blocks()
                batch(chunk)
                done += chunk
                quiet = quiet + 1 if blocks() - b0 <= chunk // 1000 else 0
            res.warmup = done
            # Measure; a growth past the allowance is measured again, with
            # twice the repetitions each time (up to four batches in all),
            # and only a growth past the allowance in every batch counts.  A
            # leak grows at a steady rate, so it fails each batch however
            # long; the tail of a filling cache grows by fewer blocks per
            # repetition the longer it runs.  (On 3.11 the stdlib's own
            # gather() fills one such cache for some 150 000 operations:
            # tens of blocks per 10 000, falling to none; fastwait's gather()
            # on 3.11 meets a similar one: +76, +48, +9, +8 blocks in
            # successive runs of 30 000 after a warm-up of 20 000.)
            n = reps
            for attempt in range(4):
                del gc.garbage[:]
                refs0 = [sys.getrefcount(t) for t in watch]
                b0 = blocks()
                freed = batch(n)
                res.blocks = blocks() - b0
                refs1 = [sys.getrefcount(t) for t in watch]
                deltas = [(b - a, t) for a, b, t in zip(refs0, refs1, watch)]
                res.attempts = attempt + 1
                res.reps = n
                allowed = n // 1000
                if res.blocks <= allowed and all(d <= allowed for d, _ in deltas):
                    break
                n *= 2
        except Exception as exc:  # the scenario itself failed
            res.problems.append(f"raised {type(exc).__name__}: {exc}")
            return res
        res.seconds = time.perf_counter() - t0
        res.cyclic = freed / res.reps
        worst = max(deltas, key=lambda d: d[0])
        res.refs, res.refs_type = worst[0], worst[1].__qualname__
        if sc.acyclic and impl_name == "fastwait" and freed:
            res.problems.append(f"gc.collect() freed {freed} objects in {res.reps} repetitions"
                                " (cyclic garbage)")
        if res.blocks > allowed:
            res.problems.append(f"allocated blocks grew by {res.blocks} in {res.reps} repetitions,"
                                f" past 1 per 1000 in each of {res.attempts} batches"
                                f" (of {reps}, {2 * reps}, {4 * reps} and {8 * reps})")
        for delta, t in deltas:
            if delta > allowed:
                res.problems.append(f"refcount of {t.__module__}.{t.__qualname__} grew by {delta}")
        if gc.garbage:
            res.problems.append(f"{len(gc.garbage)} uncollectable objects in gc.garbage, e.g. "
                                f"{gc.garbage[0]!r:.120}")
            del gc.garbage[:]
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        if pending:
            res.problems.append(f"{len(pending)} tasks still pending, e.g. {pending[0]!r:.120}")
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        asyncio.set_event_loop(None)
        loop.close()
        sys.unraisablehook = old_hook
    if handler_calls[0]:
        res.problems.append(f"loop exception handler called {handler_calls[0]} times, "
                            f"first: {handler_calls[1]!r:.120}")
    if unraisable[0]:
        res.problems.append(f"{unraisable[0]} unraisable exceptions, first: {unraisable[1]:.160}")
    return res


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Scenarios are selected by name or primitive, with shell patterns.")
    p.add_argument("--reps", type=int, default=10_000, help="measured repetitions (default 10000)")
    p.add_argument("--max-warmup", type=int, default=None,
                   help="most warm-up repetitions (default 10 x --reps); the warm-up "
                        "ends earlier, once the block count settles")
    p.add_argument("--impl", choices=("fastwait", "asyncio", "both"), default="fastwait")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    p.add_argument("--tasks", default="lazy",
                   help="comma-separated task modes: lazy, eager (eager needs 3.12+; "
                        "'all' = every mode this Python has)")
    p.add_argument("-k", dest="patterns", action="append", default=[],
                   help="run only scenarios whose name or primitive matches (repeatable; "
                        "a plain word matches as a substring)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = p.parse_args(argv)
    if args.reps < 1000:
        p.error("--reps must be at least 1000 (the threshold is 1 block per 1000 repetitions)")
    if args.max_warmup is None:
        args.max_warmup = 10 * args.reps
    modes = ["lazy", "eager"] if args.tasks == "all" else args.tasks.split(",")
    if args.tasks == "all" and sys.version_info < (3, 12):
        modes = ["lazy"]
    for m in modes:
        if m not in ("lazy", "eager"):
            p.error(f"unknown task mode {m!r}")
        if m == "eager" and sys.version_info < (3, 12):
            p.error("eager tasks need Python 3.12+")
    args.modes = modes
    return args


def selected(patterns: list[str]) -> list[Scenario]:
    out = []
    for sc in SCENARIOS.values():
        if sys.version_info[:2] < sc.min_version:
            continue
        if patterns and not any(
            fnmatch.fnmatchcase(sc.name, pat) or fnmatch.fnmatchcase(sc.primitive, pat)
            or (not any(c in pat for c in "*?[") and pat in sc.name)
            for pat in patterns
        ):
            continue
        out.append(sc)
    return out


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    scenarios = selected(args.patterns)
    if args.list:
        for sc in scenarios:
            print(f"{sc.name:45} {sc.primitive:13} {sc.doc}")
        return 0
    if not scenarios:
        print("leakcheck: no scenario selected", file=sys.stderr)
        return 2

    if sys.getallocatedblocks() == 0:
        print("leakcheck: sys.getallocatedblocks() is 0 (PYTHONMALLOC=malloc?): "
              "cannot measure; run without PYTHONMALLOC", file=sys.stderr)
        return 2

    import fastwait

    fallback = os.environ.get("FASTWAIT_NO_EXTENSIONS", "") not in ("", "0")
    if not fallback and not fastwait.NATIVE:
        print("leakcheck: fastwait.NATIVE is False but FASTWAIT_NO_EXTENSIONS is not set: "
              "the C extension is missing", file=sys.stderr)
        return 1
    impls = {"fastwait": [("fastwait", fastwait)], "asyncio": [("asyncio", asyncio)],
             "both": [("fastwait", fastwait), ("asyncio", asyncio)]}[args.impl]
    watch = watched_types(fastwait)
    print(f"leakcheck: Python {sys.version.split()[0]}, fastwait {fastwait.__version__} "
          f"({'native: ' + ', '.join(sorted(fastwait.NATIVE_NAMES)) if fastwait.NATIVE else 'NO extension: stdlib fallback'}), "
          f"loop {args.loop}, tasks {','.join(args.modes)}, {args.reps} reps "
          f"(after a warm-up of up to {args.max_warmup})")
    print(f"leakcheck: watched types: {', '.join(t.__module__ + '.' + t.__qualname__ for t in watch)}")

    header = (f"{'scenario':42} {'impl':8} {'tasks':5} {'blocks':>6} {'refs':>5} "
              f"{'cyc/rep':>7} {'warmup':>6} {'tries':>5} {'secs':>5}  result")
    print(header)
    print("-" * len(header))
    results: list[Result] = []
    t_start = time.perf_counter()
    for mode in args.modes:
        for sc in scenarios:
            for impl_name, impl in impls:
                if sc.primitive in EXTRAS and impl is asyncio:
                    continue  # nothing to compare with
                r = run_scenario(sc, impl, impl_name, args, mode, watch)
                results.append(r)
                print(f"{sc.name:42} {impl_name:8} {mode:5} {r.blocks:6d} {r.refs:5d} "
                      f"{r.cyclic:7.1f} {r.warmup:6d} {r.attempts:5d} {r.seconds:5.1f}  "
                      f"{'ok' if r.ok else 'FAIL'}", flush=True)
                for prob in r.problems or ():
                    print(f"    {prob}", flush=True)
    failed = [r for r in results if not r.ok]
    print(f"leakcheck: {len(results) - len(failed)} passed, {len(failed)} failed "
          f"in {time.perf_counter() - t_start:.0f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
