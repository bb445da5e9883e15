"""Tests for ``CompletionQueue``: every API point, on both implementations.

``cq_impl`` is the native class (``fastwait._fastwait.CompletionQueue``, when
``fastwait.NATIVE``) and always the pure-Python reference
(``fastwait._pycompletion.CompletionQueue``, whose docstrings are the spec).
Without the extension only the reference runs; ``test_implementations``
asserts which ones run (never a skip).  Every test runs on a loop of the
active axes (``FASTWAIT_TEST_LOOP``, ``FASTWAIT_TEST_TASKS``); tests of
timeouts use the virtual-clock loop ``vloop``.

Two property tests drive random scenarios through ``QueueRun`` (adds of
futures, tasks, coroutines, awaitables and done futures; completing,
failing and cancelling them; poll, next with and without timeout,
consumers started and cancelled, cancel(), close(), the ``async with``
exit; at the end everything still pending is released, so that surplus
consumers must end, and what is left is cancelled and drained):

* ``test_nothing_lost`` runs each implementation on its own, racily (loop
  steps or settles only where the plan says): every added awaitable is
  handed out exactly once, only when done, never twice, or is still pending
  or ready (what ``cancel()`` or the exit cancelled is then handed out or
  still ready), so that the final drain finds everything;
  ``len(q) == pending + ready`` (== the model's count) after every
  operation and every loop iteration; the errors are the documented ones;
  on a settled loop no consumer waits while an item is ready or while
  nothing is pending or ready; nothing is logged, nothing warns.
* ``test_native_matches_reference`` runs the same scenario on the C queue
  and on the reference, letting the loop settle after each group of
  operations.  Equal: what the driver saw (add results, errors, poll and
  next outcomes, cancel counts, the queue's state after every settle), each
  consumer's outcome, the multiset of handed-out items with their outcomes,
  and the order of hand-out within each kind ("outside": futures, tasks and
  awaitables, all seen through a done-callback by both; "coro": coroutines
  the queue turned into tasks).  Not compared, as the two may differ: which
  consumer got which item and the order across kinds (the C queue learns of
  a coroutine's completion inside its task's last step, the reference
  through a done-callback one iteration later), and the relative order of
  the items one bulk cancellation cancelled (it walks a set).  The plans
  keep the comparable part deterministic: consumers start on a settled
  loop, and a re-add whose outcome depends on those orders is skipped.
"""

import asyncio
import collections
import gc
import inspect
import warnings
import weakref

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import fastwait
from fastwait import _pycompletion
from conftest import (
    TASKS_KIND,
    VirtualClock,
    close_loop,
    describe_context,
    new_loop,
    run,
    settle_garbage,
)
from helpers import Boom

EAGER = TASKS_KIND == "eager"

PyCQ = _pycompletion.CompletionQueue
if fastwait.NATIVE:
    from fastwait._fastwait import CompletionQueue as NativeCQ

    IMPLS = [pytest.param(NativeCQ, id="c"), pytest.param(PyCQ, id="py")]
else:
    NativeCQ = None
    IMPLS = [pytest.param(PyCQ, id="py")]

CLOSED_MSG = "add() on a closed CompletionQueue"
TYPE_MSG = "An asyncio.Future, a coroutine or an awaitable is required"
LOOP_MSG = ("The awaitable belongs to a different loop than the one the "
            "CompletionQueue is bound to")
EMPTY_MSG = "next() on a CompletionQueue with nothing pending or ready"


def dup_msg(aw):
    return f"{aw!r} is already in the CompletionQueue"


@pytest.fixture(params=IMPLS, scope="session")
def cq_impl(request):
    """The CompletionQueue class under test (session-scoped, so that the
    hypothesis tests may take it)."""
    return request.param


class AwaitableItem:
    """A non-coroutine awaitable (ensure_future wraps it in a task); its
    body coroutine is created only when awaited."""

    def __init__(self, make_body):
        self.make_body = make_body

    def __await__(self):
        return self.make_body().__await__()


class Stubborn(asyncio.Future):
    """A future that refuses cancellation."""

    def cancel(self, msg=None):
        return False


async def steps(n, result=None, exc=None):
    """Suspend ``n`` times, then return ``result`` or raise ``exc``."""
    for _ in range(n):
        await asyncio.sleep(0)
    if exc is not None:
        raise exc
    return result


async def wait_for_gate(gate, *, result=None, catch_cancel=False):
    try:
        await gate
    except asyncio.CancelledError:
        if catch_cancel:
            return "caught"
        raise
    return result


def outcome(fut):
    """A done future's outcome as plain data (retrieves its exception)."""
    if not fut.done():
        return ("not-done",)
    if fut.cancelled():
        try:
            fut.result()
        except asyncio.CancelledError as e:
            return ("cancelled", e.args)
    exc = fut.exception()
    if exc is not None:
        return ("exception", type(exc).__name__, exc.args)
    return ("result", fut.result())


def counts(q):
    return len(q), q.pending, q.ready


def done_future(loop, result=None):
    f = loop.create_future()
    f.set_result(result)
    return f


# ---------------------------------------------------------------------------
# Which implementations run
# ---------------------------------------------------------------------------

def test_implementations():
    ids = [p.id for p in IMPLS]
    if fastwait.NATIVE:
        assert ids == ["c", "py"]
        assert fastwait.CompletionQueue is NativeCQ
        assert NativeCQ.__module__ == "fastwait._fastwait"
        assert NativeCQ is not PyCQ
    else:
        # Fallback mode: only the reference runs, and it is the public one.
        assert ids == ["py"]
        assert fastwait.CompletionQueue is PyCQ
    assert "CompletionQueue" in fastwait.__all__


# ---------------------------------------------------------------------------
# Construction, counts, repr
# ---------------------------------------------------------------------------

def test_empty_queue(cq_impl):
    q = cq_impl()  # no running loop needed
    assert counts(q) == (0, 0, 0)
    assert not q
    assert q.closed is False
    assert q.poll() is None
    assert repr(q) == "<CompletionQueue pending=0 ready=0>"
    assert cq_impl(()).pending == 0
    assert cq_impl([]).ready == 0


def test_constructor_is_positional_only(cq_impl):
    """The spec's signature is ``CompletionQueue(aws=(), /)``."""
    with pytest.raises(TypeError):
        cq_impl(aws=[])
    with pytest.raises(TypeError):
        cq_impl([], [])


def test_constructor_adds_every_awaitable(cq_impl, loop):
    async def main():
        gate = loop.create_future()
        fut = loop.create_future()
        task = loop.create_task(wait_for_gate(gate, result="t"))
        done = done_future(loop, "d")
        aw = AwaitableItem(lambda: wait_for_gate(gate, result="a"))
        q = cq_impl(iter([fut, task, wait_for_gate(gate, result="c"), done,
                          aw]))
        assert counts(q) == (5, 4, 1)
        assert q.poll() is done
        gate.set_result(None)
        fut.set_result("f")
        got = set()
        while q:
            got.add((await q.next()).result())
        assert got == {"f", "t", "c", "a"}

    run(loop, main)


def test_constructor_error_propagates(cq_impl, loop):
    async def main():
        fut = loop.create_future()
        with pytest.raises(TypeError) as ei:
            cq_impl([fut, 42])
        assert str(ei.value) == TYPE_MSG
        with pytest.raises(TypeError):
            cq_impl(42)  # not iterable

    run(loop, main)


def test_len_bool_pending_ready_through_a_lifecycle(cq_impl, loop):
    async def main():
        q = cq_impl()
        a, b = loop.create_future(), loop.create_future()
        q.add(a)
        q.add(b)
        assert counts(q) == (2, 2, 0) and q
        a.set_result(1)
        assert counts(q) == (2, 2, 0)  # seen through a done-callback
        await asyncio.sleep(0)
        assert counts(q) == (2, 1, 1)
        assert repr(q) == "<CompletionQueue pending=1 ready=1>"
        assert q.poll() is a
        assert counts(q) == (1, 1, 0) and q
        b.cancel()
        await asyncio.sleep(0)
        assert counts(q) == (1, 0, 1)
        q.close()
        assert repr(q) == "<CompletionQueue pending=0 ready=1 closed>"
        assert await q.next() is b
        assert counts(q) == (0, 0, 0) and not q
        assert repr(q) == "<CompletionQueue pending=0 ready=0 closed>"

    run(loop, main)


# ---------------------------------------------------------------------------
# add()
# ---------------------------------------------------------------------------

def test_add_future_returns_it(cq_impl, loop):
    async def main():
        q = cq_impl()
        fut = loop.create_future()
        assert q.add(fut) is fut
        assert counts(q) == (1, 1, 0)
        loop.call_soon(fut.set_result, "x")
        assert await q.next() is fut
        assert fut.result() == "x"

    run(loop, main)


def test_add_task_returns_it(cq_impl, loop):
    async def main():
        q = cq_impl()
        task = loop.create_task(steps(2, "t"))
        assert q.add(task) is task
        assert counts(q) == (1, 1, 0)
        assert await q.next() is task
        assert task.result() == "t"

    run(loop, main)


def test_add_coroutine_becomes_a_task_at_once(cq_impl, loop):
    async def main():
        q = cq_impl()
        started = []

        async def child():
            started.append(True)
            await asyncio.sleep(0)
            return "r"

        before = asyncio.all_tasks()
        t = q.add(child())
        assert isinstance(t, asyncio.Task)
        assert t.get_loop() is loop
        assert asyncio.all_tasks() - before == {t}
        assert started == ([True] if EAGER else [])
        assert counts(q) == (1, 1, 0)
        assert await q.next() is t
        assert t.result() == "r"

    run(loop, main)


def test_add_coroutine_that_finishes_eagerly_is_ready_at_once(cq_impl, loop):
    async def main():
        q = cq_impl()
        t = q.add(steps(0, "now"))
        if EAGER:
            assert t.done()
            assert counts(q) == (1, 0, 1)
            assert q.poll() is t
        else:
            assert counts(q) == (1, 1, 0)
            assert q.poll() is None
            assert await q.next() is t
        assert t.result() == "now"

    run(loop, main)


def test_add_other_awaitable(cq_impl, loop):
    async def main():
        q = cq_impl()
        fut = q.add(AwaitableItem(lambda: steps(1, "aw")))
        assert asyncio.isfuture(fut)
        assert fut.get_loop() is loop
        assert len(q) == 1
        assert await q.next() is fut
        assert fut.result() == "aw"

    run(loop, main)


def test_add_done_future_is_ready_at_once(cq_impl, loop):
    async def main():
        q = cq_impl()
        f = done_future(loop, 1)
        assert q.add(f) is f
        assert counts(q) == (1, 0, 1)  # no loop iteration needed
        assert q.poll() is f
        assert q.poll() is None

    run(loop, main)


def test_add_futures_without_a_running_loop(cq_impl, loop):
    q = cq_impl()
    pending = loop.create_future()
    done = done_future(loop, "d")
    assert q.add(pending) is pending
    assert q.add(done) is done
    assert counts(q) == (2, 1, 1)
    assert q.poll() is done
    loop.call_soon(pending.set_result, "p")
    assert run(loop, q.next) is pending


def test_add_on_a_closed_queue(cq_impl, loop):
    async def main():
        q = cq_impl()
        kept = q.add(loop.create_future())
        q.close()
        assert q.closed is True
        fut = loop.create_future()
        with pytest.raises(RuntimeError) as ei:
            q.add(fut)
        assert str(ei.value) == CLOSED_MSG
        coro = steps(0)
        with pytest.raises(RuntimeError) as ei:
            q.add(coro)
        assert str(ei.value) == CLOSED_MSG
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        # The closed check comes first, even for a non-awaitable.
        with pytest.raises(RuntimeError):
            q.add(42)
        # What was added stays.
        assert counts(q) == (1, 1, 0)
        kept.set_result(0)
        assert await q.next() is kept

    run(loop, main)


@pytest.mark.parametrize("bad", [42, None, "text", object(), lambda: None])
def test_add_non_awaitable(cq_impl, loop, bad):
    async def main():
        q = cq_impl()
        with pytest.raises(TypeError) as ei:
            q.add(bad)
        assert str(ei.value) == TYPE_MSG
        assert counts(q) == (0, 0, 0)

    run(loop, main)


def test_add_future_of_another_loop(cq_impl, loop, loop_factory):
    other = loop_factory()

    async def main():
        q = cq_impl()
        mine = loop.create_future()
        q.add(mine)
        foreign = other.create_future()
        with pytest.raises(ValueError) as ei:
            q.add(foreign)
        assert str(ei.value) == LOOP_MSG
        with pytest.raises(ValueError):
            q.add(done_future(other))
        assert counts(q) == (1, 1, 0)
        # Bound to the other loop by its first future: ours is refused.
        q2 = cq_impl()
        q2.add(foreign)
        with pytest.raises(ValueError) as ei:
            q2.add(loop.create_future())
        assert str(ei.value) == LOOP_MSG
        assert counts(q2) == (1, 1, 0)
        mine.cancel()

    run(loop, main)


def test_add_twice(cq_impl, loop):
    async def main():
        q = cq_impl()
        fut = loop.create_future()
        q.add(fut)
        with pytest.raises(ValueError) as ei:
            q.add(fut)
        assert str(ei.value) == dup_msg(fut)
        assert counts(q) == (1, 1, 0)
        fut.set_result(1)
        await asyncio.sleep(0)
        assert counts(q) == (1, 0, 1)
        with pytest.raises(ValueError) as ei:  # ready, not handed out
            q.add(fut)
        assert str(ei.value) == dup_msg(fut)
        assert counts(q) == (1, 0, 1)
        assert q.poll() is fut
        # Handed out: it may come again (done, so ready at once).
        assert q.add(fut) is fut
        assert counts(q) == (1, 0, 1)
        assert q.poll() is fut
        # A task the queue made for a coroutine, while pending.
        t = q.add(steps(1, "t"))
        with pytest.raises(ValueError) as ei:
            q.add(t)
        assert str(ei.value) == dup_msg(t)
        assert await q.next() is t
        # A done future passed twice to the constructor.
        d = done_future(loop)
        with pytest.raises(ValueError):
            cq_impl([d, d])

    run(loop, main)


# ---------------------------------------------------------------------------
# poll(), next(), async for
# ---------------------------------------------------------------------------

def test_poll_hands_out_in_completion_order(cq_impl, loop):
    async def main():
        q = cq_impl()
        fs = [loop.create_future() for _ in range(4)]
        for f in fs:
            q.add(f)
        assert q.poll() is None
        for i in (2, 0, 3, 1):
            fs[i].set_result(i)
        await asyncio.sleep(0)
        got = []
        while (f := q.poll()) is not None:
            assert f.done()
            got.append(f)
        assert got == [fs[2], fs[0], fs[3], fs[1]]
        assert counts(q) == (0, 0, 0)

    run(loop, main)


def test_order_is_preserved_within_each_kind(cq_impl, loop):
    """Coroutines the queue turned into tasks, and futures/tasks added from
    outside, each come out in the order they completed (across kinds, the
    C queue may hand a coroutine's task out one iteration earlier)."""

    async def main():
        q = cq_impl()
        completed = []
        coro_tasks = [q.add(steps(d, ("coro", i)))
                      for i, d in enumerate([5, 1, 3, 0, 4])]
        outside = [loop.create_task(steps(d, ("task", i)))
                   for i, d in enumerate([4, 2, 0, 3])]
        futs = [loop.create_future() for _ in range(3)]
        for f in outside + futs:
            q.add(f)
        for f in coro_tasks + outside + futs:
            if f.done():  # finished eagerly
                completed.append(f)
            else:
                f.add_done_callback(completed.append)
        for i in (1, 0, 2):
            await asyncio.sleep(0)
            futs[i].set_result(("fut", i))
        got = [t async for t in q]
        assert sorted(map(id, got)) == sorted(map(id, completed))
        assert len(got) == 12

        def kind(ts, coro):
            return [t.result() for t in ts if (t in coro_tasks) == coro]

        assert kind(got, True) == kind(completed, True)
        assert kind(got, False) == kind(completed, False)
        assert [i for _, i in kind(got, True)] == [3, 1, 2, 4, 0]
        assert [r for r in kind(got, False) if r[0] == "fut"] == [
            ("fut", 1), ("fut", 0), ("fut", 2)]

    run(loop, main)


def test_next_waits_and_returns_the_original_object(cq_impl, loop):
    async def main():
        q = cq_impl()
        fut = loop.create_future()
        q.add(fut)
        waiter = loop.create_task(q.next())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not waiter.done()
        fut.set_result("x")
        assert await waiter is fut
        # next(timeout=None) spelled out, positionally and by keyword.
        for call in (lambda: q.next(None), lambda: q.next(timeout=None)):
            f = loop.create_future()
            q.add(f)
            loop.call_soon(f.set_result, 1)
            assert await call() is f

    run(loop, main)


def test_next_with_nothing_pending_or_ready(cq_impl, loop):
    async def main():
        q = cq_impl()
        for timeout in (None, 0, 5):
            with pytest.raises(asyncio.QueueEmpty) as ei:
                await q.next(timeout=timeout)
            assert str(ei.value) == EMPTY_MSG
        f = done_future(loop)
        q.add(f)
        assert await q.next() is f
        with pytest.raises(asyncio.QueueEmpty) as ei:
            await q.next()
        assert str(ei.value) == EMPTY_MSG
        q.close()
        with pytest.raises(asyncio.QueueEmpty):
            await q.next()

    run(loop, main)


def test_next_timeout(cq_impl, vloop):
    async def main():
        clock = vloop.clock
        q = cq_impl()
        fut = vloop.create_future()
        q.add(fut)
        t0 = clock.now
        with pytest.raises(TimeoutError):
            await q.next(timeout=5)
        assert clock.now == t0 + 5
        assert counts(q) == (1, 1, 0)  # nothing lost
        vloop.call_later(2, fut.set_result, "x")
        t1 = clock.now
        assert await q.next(timeout=5) is fut
        assert clock.now == t1 + 2
        # Its timer was cancelled: nothing fires at the old deadline.
        await asyncio.sleep(10)
        # A ready item is returned at once, whatever the timeout.
        d = done_future(vloop)
        q.add(d)
        assert await q.next(timeout=0) is d
        # timeout=0 and nothing ready: TimeoutError, no time passes.
        p = vloop.create_future()
        q.add(p)
        t2 = clock.now
        with pytest.raises(TimeoutError):
            await q.next(timeout=0)
        assert clock.now == t2
        p.cancel()
        assert await q.next(timeout=1) is p

    run(vloop, main)


def test_next_timeout_is_one_deadline(cq_impl, vloop):
    """Woken without an item (another consumer took it): the wait goes on
    until the original deadline, not a fresh one."""

    async def main():
        clock = vloop.clock
        q = cq_impl()
        f, g = vloop.create_future(), vloop.create_future()
        q.add(f)
        q.add(g)
        t0 = clock.now
        consumer = vloop.create_task(q.next(timeout=10))
        await asyncio.sleep(3)
        f.set_result(1)
        await asyncio.sleep(0)  # f's done-callback ran just before us
        assert q.poll() is f  # taken before the woken consumer resumes
        with pytest.raises(TimeoutError):
            await consumer
        assert clock.now == t0 + 10
        assert counts(q) == (1, 1, 0)
        g.cancel()
        assert await q.next() is g

    run(vloop, main)


def test_async_for(cq_impl, loop):
    async def main():
        q = cq_impl()
        assert [x async for x in q] == []
        assert q.__aiter__() is q
        a = q.add(steps(6, "a"))
        b = loop.create_future()
        q.add(b)
        loop.call_soon(b.set_result, "b")
        got = []
        async for item in q:
            got.append(item)
            if item is b:
                # Added while iterating: handed out in the same loop.
                c = q.add(steps(1, "c"))
        assert got == [b, c, a]
        assert len(q) == 0
        with pytest.raises(StopAsyncIteration):
            await q.__anext__()

    run(loop, main)


# ---------------------------------------------------------------------------
# Several consumers
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("burst", [False, True], ids=["one-by-one", "burst"])
def test_several_consumers(cq_impl, loop, burst):
    async def main():
        q = cq_impl()
        futs = [loop.create_future() for _ in range(5)]
        for f in futs:
            q.add(f)
        consumers = [loop.create_task(q.next()) for _ in range(5)]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        for i, f in enumerate(futs):
            f.set_result(i)
            if not burst:
                await asyncio.sleep(0)
        got = await asyncio.gather(*consumers)
        assert sorted(map(id, got)) == sorted(map(id, futs))

    run(loop, main)


def test_cancelled_consumer_passes_its_wakeup_on(cq_impl, loop):
    async def main():
        q = cq_impl()
        keep = loop.create_future()  # keeps the consumers waiting
        q.add(keep)
        a = loop.create_task(q.next())
        b = loop.create_task(q.next())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        d = done_future(loop, "d")
        q.add(d)  # wakes the first consumer at once...
        a.cancel()  # ...which is cancelled before it resumes
        assert await b is d
        assert a.cancelled()
        assert counts(q) == (1, 1, 0)
        keep.cancel()
        assert await q.next() is keep

    run(loop, main)


def test_cancelled_anext_passes_its_wakeup_on(cq_impl, loop):
    async def main():
        q = cq_impl()
        keep = loop.create_future()
        q.add(keep)
        got = []

        async def iterate():
            async for x in q:
                got.append(x)

        a = loop.create_task(iterate())
        b = loop.create_task(iterate())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        d = done_future(loop)
        q.add(d)
        a.cancel()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert got == [d]
        assert a.cancelled()
        keep.cancel()
        await b
        assert got == [d, keep]

    run(loop, main)


def test_consumer_cancelled_while_waiting(cq_impl, loop):
    async def main():
        q = cq_impl()
        f = loop.create_future()
        q.add(f)
        a = loop.create_task(q.next())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        a.cancel()
        await asyncio.sleep(0)
        assert a.cancelled()
        f.set_result(1)
        await asyncio.sleep(0)
        assert counts(q) == (1, 0, 1)  # still there for the next consumer
        assert await q.next() is f

    run(loop, main)


def test_timed_out_consumer_does_not_swallow_an_item(cq_impl, vloop):
    """A's timer fires, and in the same iteration (before A resumes) an item
    arrives: the item is handed out exactly once (to A, which finds it
    ready, or to B), and the other consumer does not get it too."""

    async def main():
        q = cq_impl()
        keep = vloop.create_future()
        q.add(keep)
        t0 = vloop.time()
        a = vloop.create_task(q.next(timeout=5))
        b = vloop.create_task(q.next())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        d = done_future(vloop, "d")
        vloop.call_at(t0 + 5, q.add, d)
        await asyncio.wait([a, b], return_when=asyncio.FIRST_COMPLETED)
        for _ in range(3):
            await asyncio.sleep(0)
        handed = []
        if a.exception() is None:
            handed.append(a.result())
        else:
            assert type(a.exception()) is TimeoutError
        keep.cancel()
        handed.append(await b)
        while (x := q.poll()) is not None:
            handed.append(x)
        assert sorted(map(id, handed)) == sorted(map(id, [d, keep]))

    run(vloop, main)


def test_coroutine_completion_seen_in_its_last_step(cq_impl, vloop):
    """The README's promise: a coroutine the queue made a task of is ready
    inside that task's last step (native), where a done-callback sees it
    one loop iteration later (the pure-Python reference).  A consumer whose
    timeout fires at the instant the coroutine's sleep ends wakes in the
    iteration in which the coroutine finishes: the native queue hands it
    the item, the reference raises TimeoutError and keeps the item ready."""

    async def item():
        await asyncio.sleep(1)
        return "x"

    async def main():
        q = cq_impl()
        task = q.add(item())
        await asyncio.sleep(0)  # the item's timer is scheduled first
        try:
            got = await q.next(timeout=1)
        except TimeoutError:
            got = "timeout"
        ready_then = q.ready
        await asyncio.sleep(0)
        return got is task, got == "timeout", task.done(), ready_then, q.ready

    native = NativeCQ is not None and cq_impl is NativeCQ
    assert run(vloop, main) == ((True, False, True, 0, 0) if native
                                else (False, True, True, 0, 1))


@pytest.mark.parametrize("how", ["async for", "next"])
def test_waiting_consumers_end_when_the_queue_runs_dry(cq_impl, loop, how):
    """Two consumers wait, one item completes: the one that does not get it
    finds nothing pending or ready, so its ``async for`` ends (its
    ``next()`` raises QueueEmpty) instead of waiting forever."""

    async def main():
        q = cq_impl()
        f = loop.create_future()
        q.add(f)
        got = []

        async def consume():
            if how == "async for":
                async for x in q:
                    got.append(x)
                return "end"
            try:
                got.append(await q.next())
            except asyncio.QueueEmpty:
                return "empty"
            return "got"

        a = loop.create_task(consume())
        b = loop.create_task(consume())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        f.set_result(1)
        for _ in range(10):
            await asyncio.sleep(0)
        assert got == [f]
        assert counts(q) == (0, 0, 0)
        assert a.done() and b.done(), (
            f"a consumer still waits on an exhausted queue: a.done()="
            f"{a.done()} b.done()={b.done()} {q!r}")
        if how == "async for":
            assert (a.result(), b.result()) == ("end", "end")
        else:
            assert sorted([a.result(), b.result()]) == ["empty", "got"]

    run(loop, main)


# ---------------------------------------------------------------------------
# cancel(), close(), async with
# ---------------------------------------------------------------------------

def test_cancel(cq_impl, loop):
    async def main():
        q = cq_impl()
        assert q.cancel() == 0
        fut = loop.create_future()
        task = loop.create_task(wait_for_gate(loop.create_future()))
        coro_task = q.add(wait_for_gate(loop.create_future()))
        catcher = q.add(wait_for_gate(loop.create_future(),
                                      catch_cancel=True))
        stubborn = Stubborn(loop=loop)
        done = done_future(loop, "d")
        for f in (fut, task, stubborn, done):
            q.add(f)
        await asyncio.sleep(0)
        assert counts(q) == (6, 5, 1)
        assert q.cancel("m") == 4  # the stubborn one refused
        assert done.result() == "d"
        assert not stubborn.done()
        stubborn.set_result("s")
        got = [x async for x in q]
        assert sorted(map(id, got)) == sorted(
            map(id, [fut, task, coro_task, catcher, stubborn, done]))
        for f in (fut, task, coro_task):
            assert outcome(f) == ("cancelled", ("m",))
        assert catcher.result() == "caught"
        # Keyword form; nothing pending any more.
        assert q.cancel(msg="again") == 0

    run(loop, main)


def test_cancel_without_message(cq_impl, loop):
    async def main():
        q = cq_impl()
        t = q.add(wait_for_gate(loop.create_future()))
        f = loop.create_future()
        q.add(f)
        assert q.cancel() == 2
        assert {await q.next(), await q.next()} == {t, f}
        assert outcome(t) == outcome(f) == ("cancelled", ())

    run(loop, main)


def test_close(cq_impl, loop):
    async def main():
        q = cq_impl()
        f = loop.create_future()
        q.add(f)
        assert q.close() is None
        q.close()  # idempotent
        assert q.closed is True
        assert counts(q) == (1, 1, 0)
        consumer = loop.create_task(q.next())
        await asyncio.sleep(0)
        f.set_result(1)
        assert await consumer is f  # pending items still come out
        with pytest.raises(RuntimeError):
            q.add(loop.create_future())

    run(loop, main)


def test_async_with(cq_impl, loop):
    async def main():
        gate = loop.create_future()
        fut = loop.create_future()
        async with cq_impl() as q:
            assert isinstance(q, cq_impl)
            t = q.add(wait_for_gate(gate))
            q.add(fut)
            d = q.add(done_future(loop, "d"))
            slow = q.add(steps(2, "slow"))
            assert not q.closed
        # Exit: closed, pending cancelled and waited for; items stay.
        assert q.closed
        assert counts(q) == (4, 0, 4)
        assert t.cancelled() and fut.cancelled()
        assert d.result() == "d"
        got = [x async for x in q]
        assert sorted(map(id, got)) == sorted(map(id, [t, fut, d, slow]))
        with pytest.raises(RuntimeError) as ei:
            q.add(loop.create_future())
        assert str(ei.value) == CLOSED_MSG

    run(loop, main)


def test_async_with_waits_for_a_slow_cancellation(cq_impl, loop):
    async def main():
        async def linger():
            try:
                await loop.create_future()
            except asyncio.CancelledError:
                for _ in range(3):
                    await asyncio.sleep(0)
                return "late"

        async with cq_impl() as q:
            t = q.add(linger())
            ext = loop.create_task(linger())
            q.add(ext)
            await asyncio.sleep(0)  # both inside their try
        assert t.done() and ext.done()
        assert q.pending == 0 and q.ready == 2
        assert {x.result() for x in [q.poll(), q.poll()]} == {"late"}

    run(loop, main)


def test_async_with_body_error_propagates(cq_impl, loop):
    async def main():
        with pytest.raises(Boom):
            async with cq_impl() as q:
                t = q.add(wait_for_gate(loop.create_future()))
                raise Boom
        assert q.closed and t.cancelled()
        assert await q.next() is t

    run(loop, main)


def test_async_with_nothing_added(cq_impl, loop):
    async def main():
        async with cq_impl() as q:
            pass
        assert q.closed and counts(q) == (0, 0, 0)
        assert await q.__aexit__(None, None, None) is False  # again

    run(loop, main)


def test_aexit_direct_call_returns_false(cq_impl, loop):
    async def main():
        q = cq_impl()
        f = loop.create_future()
        q.add(f)
        assert await q.__aenter__() is q
        assert await q.__aexit__(Boom, Boom(), None) is False
        assert f.cancelled() and counts(q) == (1, 0, 1)

    run(loop, main)


# ---------------------------------------------------------------------------
# README recipes
# ---------------------------------------------------------------------------

PATTERNS = {
    "one-by-one": [7, 3, 0, 5, 1, 6, 2, 4, 9, 8, 11, 10],
    "bursts": [2, 2, 2, 0, 0, 5, 5, 5, 5, 1, 9, 9, 9],
    "all-at-once": [1] * 12,
}


@pytest.mark.parametrize("source", ["tasks", "coroutines"])
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_readme_recipe_replaces_wait_first_completed(cq_impl, loop, pattern,
                                                     source):
    delays = PATTERNS[pattern]

    async def with_wait():
        pending = {loop.create_task(steps(d, i)) for i, d in enumerate(delays)}
        rounds = []
        while pending:
            done, pending = await asyncio.wait(
                pending, return_when=asyncio.FIRST_COMPLETED)
            rounds.append(sorted(t.result() for t in done))
        return rounds

    async def with_queue():
        if source == "tasks":
            pending = [loop.create_task(steps(d, i))
                       for i, d in enumerate(delays)]
        else:
            pending = [steps(d, i) for i, d in enumerate(delays)]
        q = cq_impl(pending)
        handled = []
        while q:
            task = await q.next()
            assert task.done()
            handled.append(task.result())
        return handled

    rounds = run(loop, with_wait)
    handled = run(loop, with_queue)
    everything = list(range(len(delays)))
    assert sorted(i for r in rounds for i in r) == everything
    assert sorted(handled) == everything  # each exactly once
    # In completion order, round by round as wait() saw them.
    assert [delays[i] for i in handled] == sorted(delays)
    pos = 0
    for r in rounds:
        assert sorted(handled[pos:pos + len(r)]) == r
        pos += len(r)


def test_readme_recipe_async_with(cq_impl, loop):
    async def fetch(url):
        for _ in range(url % 3):
            await asyncio.sleep(0)
        if url % 4 == 0:
            raise Boom(url)
        return url * 10

    async def main():
        urls = list(range(10))
        results, errors = [], []
        async with cq_impl() as q:
            for url in urls:
                q.add(fetch(url))
            async for task in q:
                if task.exception() is None:
                    results.append(task.result())
                else:
                    errors.append(task.exception().args[0])
        assert sorted(results) == [u * 10 for u in urls if u % 4]
        assert sorted(errors) == [u for u in urls if u % 4 == 0]
        assert q.closed and len(q) == 0

    run(loop, main)
    assert loop.fw_exceptions.take() == []


# ---------------------------------------------------------------------------
# Exception hygiene, garbage
# ---------------------------------------------------------------------------

def test_failed_items_handed_out_and_retrieved_log_nothing(cq_impl, loop):
    async def main():
        q = cq_impl()
        q.add(steps(1, exc=Boom("coro")))
        q.add(loop.create_task(steps(2, exc=Boom("task"))))
        f = loop.create_future()
        q.add(f)
        f.set_exception(Boom("fut"))
        q.add(AwaitableItem(lambda: steps(0, exc=Boom("aw"))))
        seen = []
        async for item in q:
            seen.append(item.exception().args[0])
        assert sorted(seen) == ["aw", "coro", "fut", "task"]

    run(loop, main)
    assert loop.fw_exceptions.take() == []


def test_failed_item_never_retrieved_is_logged(cq_impl, loop):
    """Control for the test above: the recorder does see the log."""

    async def main():
        q = cq_impl()
        q.add(steps(1, exc=Boom("lost")))
        item = await q.next()
        assert item.done()

    run(loop, main)
    records = loop.fw_exceptions.take()
    assert [describe_context(c)[0] for c in records] == [
        "Task exception was never retrieved"]


def test_async_with_exit_leaves_nothing_to_log(cq_impl, loop):
    async def main():
        never = loop.create_future()
        async with cq_impl() as q:
            tasks = [q.add(wait_for_gate(never)) for _ in range(3)]
            tasks.append(q.add(loop.create_task(wait_for_gate(never))))
            tasks.append(q.add(AwaitableItem(lambda: wait_for_gate(never))))
        assert all(t.cancelled() for t in tasks)
        return weakref.ref(q)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ref = run(loop, main)
        gc.collect()
    assert ref() is None
    contexts = [describe_context(c) for c in loop.fw_exceptions.take()]
    assert contexts == []  # no "Task was destroyed but it is pending!"
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("how", ["close", "exit"])
def test_refused_coroutine_does_not_warn(cq_impl, loop, how):
    async def child():
        return 1

    async def main():
        q = cq_impl()
        if how == "close":
            q.close()
        else:
            await q.__aexit__(None, None, None)
        coro = child()
        with pytest.raises(RuntimeError):
            q.add(coro)
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(loop, main)
        gc.collect()
    assert [(w.category.__name__, str(w.message)) for w in caught] == []


def test_dropped_queue_is_collected_once_its_items_are_done(cq_impl, loop):
    async def main():
        gate = loop.create_future()
        q = cq_impl()
        fut = loop.create_future()
        q.add(fut)
        outside = loop.create_task(wait_for_gate(gate))
        q.add(outside)
        inside = q.add(wait_for_gate(gate))
        q.add(AwaitableItem(lambda: wait_for_gate(gate)))

        async def consume(q):
            return await q.next()

        gone = loop.create_task(consume(q))  # waits, then is cancelled
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        gone.cancel()
        q.add(done_future(loop))  # ready, never handed out
        ref = weakref.ref(q)
        del q
        await asyncio.sleep(0)
        gate.set_result(None)
        fut.set_result(None)
        for _ in range(4):
            await asyncio.sleep(0)
        assert outside.done() and inside.done() and gone.cancelled()
        # The cancelled consumer's CancelledError holds its traceback, whose
        # frames hold the queue: drop the task as a real program would.
        del gone
        gc.collect()
        assert ref() is None, gc.get_referrers(ref())

    run(loop, main)


def test_unreachable_queue_with_pending_futures_is_collected(cq_impl, loop):
    """A queue and its pending futures, all garbage, form a cycle (future
    -> done-callback -> queue -> future) that gc.collect() frees."""

    async def main():
        q = cq_impl()
        for _ in range(3):
            q.add(loop.create_future())
        ref = weakref.ref(q)
        del q
        gc.collect()
        assert ref() is None

    run(loop, main)


# ---------------------------------------------------------------------------
# Random scenarios
# ---------------------------------------------------------------------------

#: sleep(0)s that let every consequence of a group of operations play out.
SETTLE = 12


class Item:
    __slots__ = ("label", "kind", "group", "aw", "fut", "gate")

    def __init__(self, label, kind):
        self.label = label
        self.kind = kind
        self.group = ("coro" if kind in ("coro", "instant", "timer")
                      else "outside")
        self.aw = self.fut = self.gate = None


class QueueRun:
    """One random scenario on one implementation and a fresh loop.

    ``racy``: operations one by one, the loop steps only where the plan
    says (``("step", n)``, ``("settle",)``); otherwise groups of operations,
    each followed by a settle (the state is then recorded).  ``timed``: the virtual-clock loop,
    with timeouts and timer-driven items.

    Results: ``events`` (what the driver saw), ``status`` (consumer index ->
    outcome), ``handouts`` ((label, kind group, outcome, who, bulk) in
    hand-out order; ``bulk`` numbers the cancel()/exit that cancelled the
    item, or is None), ``violations`` (broken invariants, as text).
    """

    def __init__(self, cq, *, racy, timed=False):
        self.cq = cq
        self.racy = racy
        self.timed = timed
        self.events = []
        self.status = {}
        self.handouts = []
        self.violations = []

    # -- bookkeeping -----------------------------------------------------

    def bad(self, what):
        self.violations.append(what)

    def event(self, *e):
        self.events.append(e)

    def check_counts(self, where):
        q = self.q
        n, p, r = len(q), q.pending, q.ready
        want = sum(self.outstanding.values())
        if not (n == p + r == want) or bool(q) is not (n > 0):
            self.bad(f"{where}: len={n} pending={p} ready={r} "
                     f"bool={bool(q)}, model says {want} in the queue")

    def handed(self, obj, who):
        item = self.by_id.get(id(obj))
        if item is None or item.fut is not obj:
            self.bad(f"{who}: handed out an unknown object {obj!r}")
            return
        if not obj.done():
            self.bad(f"{who}: {item.label} handed out while not done")
        if self.outstanding[item.label] <= 0:
            self.bad(f"{who}: {item.label} handed out twice")
        else:
            self.outstanding[item.label] -= 1
        self.handouts.append((item.label, item.group, outcome(obj), who,
                              self.bulk.pop(item.label, None)))

    def in_queue(self):
        return [i for i in self.items if self.outstanding[i.label] > 0]

    def mark_bulk(self):
        """The items a bulk cancellation (cancel(), the exit) is about to
        cancel: it walks a set, so their relative order is arbitrary."""
        self.bulks += 1
        for item in self.in_queue():
            if not item.fut.done():
                self.bulk[item.label] = self.bulks

    # -- items -----------------------------------------------------------

    async def gated(self, label, gate, catch_cancel):
        try:
            how = await gate
        except asyncio.CancelledError:
            if catch_cancel:
                return f"{label}:caught"
            raise
        if how == "raise":
            raise Boom(label)
        return f"{label}:ok"

    async def instant(self, label, fail):
        if fail:
            raise Boom(label)
        return f"{label}:instant"

    async def sleeper(self, label, delay):
        await asyncio.sleep(delay)
        return f"{label}:slept"

    def make_item(self, kind, arg):
        label = f"i{self.counter}"
        self.counter += 1
        loop = self.loop
        item = Item(label, kind)
        if kind == "future":
            item.aw = loop.create_future()
        elif kind == "done":
            f = loop.create_future()
            if arg == "result":
                f.set_result(label)
            elif arg == "raise":
                f.set_exception(Boom(label))
            else:
                f.cancel(msg=label)
            item.aw = f
        elif kind in ("task", "coro", "awaitable"):
            gate = item.gate = loop.create_future()

            def body(label=label, gate=gate, catch=arg):
                return self.gated(label, gate, catch)

            if kind == "task":
                item.aw = loop.create_task(body())
                self.own_tasks.append(item.aw)
            elif kind == "coro":
                item.aw = body()
            else:
                item.aw = AwaitableItem(body)
        elif kind == "instant":
            item.aw = self.instant(label, arg)
        elif kind == "timer":
            item.aw = self.sleeper(label, arg)
        else:  # pragma: no cover
            raise AssertionError(kind)
        return item

    # -- operations ------------------------------------------------------

    def try_add(self, aw, what, expect):
        """``q.add(aw)``; ``expect`` is None (must be accepted) or the
        (type, message) it must raise.  Returns the future or None."""
        q = self.q
        before = counts(q)
        text = repr(aw)
        try:
            fut = q.add(aw)
        except Exception as e:
            msg = str(e).replace(text, "<aw>")
            self.event("add-error", what, type(e).__name__, msg)
            if expect is None or (type(e), str(e)) != expect:
                self.bad(f"add({what}) raised {e!r}, expected "
                         f"{expect or 'success'}")
            if counts(q) != before:
                self.bad(f"refused add({what}) changed the counts "
                         f"{before} -> {counts(q)}")
            if inspect.iscoroutine(aw):
                if inspect.getcoroutinestate(aw) != inspect.CORO_CLOSED:
                    self.bad(f"refused coroutine ({what}) was not closed")
                    aw.close()
            elif asyncio.isfuture(aw) and aw.done() and not aw.cancelled():
                aw.exception()
            return None
        if expect is not None:
            self.bad(f"add({what}) accepted, expected {expect}")
        if asyncio.isfuture(aw):
            if fut is not aw:
                self.bad(f"add({what}) returned {fut!r}, not the future")
        elif not asyncio.isfuture(fut) or fut.get_loop() is not self.loop:
            self.bad(f"add({what}) returned {fut!r}")
        n, p, r = before
        want = (n + 1, p, r + 1) if fut.done() else (n + 1, p + 1, r)
        if counts(q) != want:
            self.bad(f"add({what}): counts {before} -> {counts(q)}, "
                     f"expected {want}")
        self.bound = True
        self.event("add", what, fut.done())
        return fut

    def closed_error(self):
        return (RuntimeError, CLOSED_MSG) if self.closed else None

    def op_add(self, kind, arg):
        item = self.make_item(kind, arg)
        fut = self.try_add(item.aw, kind, self.closed_error())
        if fut is None:
            return
        item.fut = fut
        self.items.append(item)
        self.by_id[id(fut)] = item
        self.outstanding[item.label] += 1

    def pick(self, k, seq):
        return seq[k % len(seq)] if seq else None

    def op_readd(self, k):
        item = self.pick(k, self.items)
        if item is None:
            self.event("readd", None)
            return
        if not self.racy and item.fut.done() and self.q.ready:
            # Done and some items ready: whether this one was handed out
            # yet depends on the hand-out order across kinds (or on the
            # order a bulk cancellation walked its set): not comparable.
            # (Not done: still pending, so refused by both; done and
            # nothing ready: handed out, so accepted by both.)
            self.event("readd", item.label, "skipped")
            return
        expect = self.closed_error()
        if expect is None and self.outstanding[item.label]:
            expect = (ValueError, dup_msg(item.fut))
        if self.try_add(item.fut, f"readd {item.label}", expect) is not None:
            self.outstanding[item.label] += 1

    def op_bad(self):
        was_closed = self.closed
        self.try_add(42, "non-awaitable",
                     self.closed_error() or (TypeError, TYPE_MSG))
        if not was_closed:
            self.bound = True  # the running loop, before the TypeError

    def op_other_loop(self):
        if not self.bound:
            self.event("other-loop", "skipped")  # it would bind the queue
            return
        if self.other_loop is None:
            self.other_loop = asyncio.new_event_loop()
        fut = asyncio.Future(loop=self.other_loop)
        self.try_add(fut, "other-loop",
                     self.closed_error() or (ValueError, LOOP_MSG))

    def op_complete(self, k, how):
        item = self.pick(k, self.items)
        if item is None:
            self.event("complete", None)
            return
        if how[0] == "cancel":
            self.event("complete", item.label, "cancel",
                       item.fut.cancel(msg=how[1]))
        elif item.gate is not None:
            done = item.gate.done()
            if not done:
                item.gate.set_result(how[0])
            self.event("complete", item.label, how[0], not done)
        elif item.kind == "future":
            done = item.fut.done()
            if not done:
                if how[0] == "raise":
                    item.fut.set_exception(Boom(item.label))
                else:
                    item.fut.set_result(f"{item.label}:ok")
            self.event("complete", item.label, how[0], not done)
        else:
            self.event("complete", item.label, how[0], "n/a")

    def op_poll(self):
        ready = self.q.ready
        x = self.q.poll()
        if (x is None) != (ready == 0):
            self.bad(f"poll() returned {x!r} with ready={ready}")
        if x is not None:
            self.handed(x, "poll")
        self.event("poll", x is not None)

    def op_cancel(self, msg):
        want = sum(1 for i in self.in_queue() if not i.fut.done())
        self.mark_bulk()
        got = self.q.cancel(msg) if msg is not None else self.q.cancel()
        if got != want:
            self.bad(f"cancel() returned {got}, expected {want}")
        self.event("cancel", got)

    def op_close(self, flag):
        if flag:
            self.event("close", "skipped")
            return
        self.q.close()
        self.closed = True
        if self.q.closed is not True:
            self.bad("closed is not True after close()")
        self.event("close")

    def op_spawn(self, kind):
        j = len(self.consumers)
        timeout = None
        if kind == "next0":
            timeout = 0
        elif kind == "timed":
            timeout = 1.1 + 0.013 * (j + 1)  # off the grid: see diff_plans
        self.consumers.append(
            self.loop.create_task(self.consumer(j, kind, timeout)))
        self.event("spawn", j, kind)

    def op_poke(self):
        """Add a done future (which wakes the first waiting consumer at
        once), then cancel the oldest waiting consumer before it resumes:
        the wake-up must pass on."""
        self.op_add("done", "result")
        waiting = [t for t in self.consumers if not t.done()]
        if waiting:
            waiting[0].cancel()
        self.event("poke", self.consumers.index(waiting[0])
                   if waiting else None)

    def op_uncons(self, k):
        task = self.pick(k, self.consumers)
        if task is None:
            self.event("uncons", None)
            return
        done = task.done()
        task.cancel()
        self.event("uncons", self.consumers.index(task), done)

    async def op_next(self, timeout):
        q = self.q
        if timeout is None and q.ready == 0 and len(q) > 0:
            if self.racy:
                timeout = 0
            elif self.timed:
                # Off the 0.1 grid, as diff_plans' timeouts are, and never
                # the same twice: a timer item added when one such timeout
                # expired (at T) and a consumer that starts waiting when an
                # earlier timer item finishes (at 4.1) with the same timeout
                # T are due together (T + 4.1), where the C queue sees the
                # item inside the coroutine's last step and the reference
                # one iteration later (README; found on 3.15, whose due
                # window is an ulp of the clock, with 2.9).
                self.default_timeouts += 1
                timeout = 2.9071 + 0.0113 * self.default_timeouts
            else:
                self.event("next", "skipped")  # it could wait forever
                return
        n, ready = len(q), q.ready
        try:
            x = await q.next(timeout=timeout)
        except (TimeoutError, asyncio.QueueEmpty) as e:
            status = type(e).__name__
            self.check_error(e, "next()", timeout)
            if n == 0 and type(e) is not asyncio.QueueEmpty:
                self.bad(f"next() on an empty queue raised {e!r}")
            if ready:
                self.bad(f"next() raised {e!r} with {ready} ready")
        else:
            status = "got"
            self.handed(x, "next")
            if n == 0:
                self.bad("next() returned an item from an empty queue")
        self.event("next", status)

    async def op_exit(self, flag):
        if flag:
            self.event("exit", "skipped")
            return
        self.mark_bulk()
        r = await self.q.__aexit__(None, None, None)
        self.closed = True
        if r is not False:
            self.bad(f"__aexit__ returned {r!r}")
        if not self.q.closed or self.q.pending:
            self.bad(f"after __aexit__: {self.q!r}")
        self.event("exit", r)

    async def consumer(self, j, kind, timeout):
        q, who = self.q, f"c{j}"
        try:
            if kind == "iter":
                async for x in q:
                    self.handed(x, who)
                status = "end"
            elif kind == "loop":
                while True:
                    try:
                        x = await q.next()
                    except asyncio.QueueEmpty:
                        break
                    self.handed(x, who)
                status = "end"
            else:
                x = await q.next(timeout=timeout)
                self.handed(x, who)
                status = "got"
        except asyncio.CancelledError:
            self.status[j] = "cancelled"
            raise
        except (TimeoutError, asyncio.QueueEmpty) as e:
            status = type(e).__name__
            self.check_error(e, who, timeout)
            if kind in ("iter", "loop"):
                self.bad(f"{who} ({kind}) raised {e!r}")
        self.status[j] = status

    def check_error(self, e, who, timeout):
        """QueueEmpty only when nothing is pending or ready (now: it was
        raised in this very step), TimeoutError only with a timeout."""
        if type(e) is asyncio.QueueEmpty:
            if str(e) != EMPTY_MSG or len(self.q):
                self.bad(f"{who} raised {e!r} with {self.q!r}")
        elif timeout is None:
            self.bad(f"{who} without a timeout raised {e!r}")

    async def do(self, op):
        name = op[0]
        if name == "add":
            self.op_add(op[1], op[2])
        elif name == "readd":
            self.op_readd(op[1])
        elif name == "bad":
            self.op_bad()
        elif name == "other-loop":
            self.op_other_loop()
        elif name == "complete":
            self.op_complete(op[1], op[2])
        elif name == "poll":
            self.op_poll()
        elif name == "cancel":
            self.op_cancel(op[1])
        elif name == "close":
            self.op_close(op[1])
        elif name == "spawn":
            self.op_spawn(op[1])
        elif name == "uncons":
            self.op_uncons(op[1])
        elif name == "poke":
            self.op_poke()
        elif name == "step":
            for _ in range(op[1]):
                await asyncio.sleep(0)
        elif name == "settle":
            await self.settle()  # and check liveness
        elif name == "next":
            await self.op_next(op[1])
        elif name == "sleep":
            await asyncio.sleep(op[1])
        elif name == "exit":
            await self.op_exit(op[1])
        else:  # pragma: no cover
            raise AssertionError(op)
        self.check_counts(f"after {op}")

    def check_liveness(self, where):
        """On a settled loop, no consumer waits while an item is ready, or
        while nothing is pending or ready."""
        q = self.q
        waiting = [j for j, t in enumerate(self.consumers) if not t.done()]
        if waiting and (q.ready or not len(q)):
            self.bad(f"{where}: consumers {waiting} wait with {q!r}")

    async def settle(self):
        for _ in range(SETTLE):
            await asyncio.sleep(0)
        q = self.q
        self.check_liveness("settled")
        self.event("state", len(q), q.pending, q.ready, q.closed, repr(q))

    async def finish(self):
        for _ in range(SETTLE):
            await asyncio.sleep(0)
        self.check_liveness("before the release")
        # Release: everything still pending completes; surplus consumers
        # must then end (the queue runs dry), the others get items.
        for item in self.in_queue():
            if item.gate is not None and not item.gate.done():
                item.gate.set_result("result")
            elif item.kind == "future" and not item.fut.done():
                item.fut.set_result(f"{item.label}:ok")
        if self.timed:
            await asyncio.sleep(10)  # timer items finish, consumers time out
        for _ in range(SETTLE):
            await asyncio.sleep(0)
        self.check_liveness("after the release")
        q = self.q
        self.event("released", len(q), q.pending, q.ready)
        for task in self.consumers:
            task.cancel()
        for _ in range(SETTLE):
            await asyncio.sleep(0)
        if not all(t.done() for t in self.consumers):
            self.bad("consumers still running after cancellation")
        for j in range(len(self.consumers)):
            self.status.setdefault(j, "not-started")
        self.check_counts("after the consumers")
        # Whatever is still pending: cancelled, then handed out.
        self.op_cancel(None)
        for t in self.own_tasks:
            t.cancel()  # outside tasks a closed queue refused
        for _ in range(50):
            if not self.q.pending and all(t.done() for t in self.own_tasks):
                break
            await asyncio.sleep(0)
        else:
            self.bad(f"did not settle: {self.q!r}")
        while (x := self.q.poll()) is not None:
            self.handed(x, "drain")
        self.check_counts("end")
        lost = [label for label, n in self.outstanding.items() if n]
        if lost:
            self.bad(f"never handed out: {lost}")

    async def main(self, plan):
        if self.racy:
            for op in plan:
                await self.do(op)
        else:
            for group in plan:
                for op in group:
                    await self.do(op)
                await self.settle()
        await self.finish()

    def probe(self):
        self.check_counts(f"loop iteration {self.loop.fw_iteration}")

    def execute(self, plan):
        self.loop = loop = new_loop(clock=VirtualClock() if self.timed
                                    else None)
        self.q = self.cq()
        self.items, self.by_id = [], {}
        self.outstanding = collections.Counter()
        self.consumers, self.own_tasks = [], []
        self.counter = 0
        self.bulk, self.bulks = {}, 0
        self.closed = self.bound = False
        self.other_loop = None
        self.default_timeouts = 0
        loop.fw_probes.append(self.probe)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    run(loop, self.main(plan))
                except BaseException as e:  # the harness itself failed
                    self.bad(f"scenario raised {e!r}")
                loop.fw_probes.remove(self.probe)
                self.q = self.items = self.by_id = None
                self.consumers = self.own_tasks = None
                for ctx in loop.fw_exceptions.take():
                    self.bad(f"logged: {describe_context(ctx)!r}")
            for w in caught:
                self.bad(f"warning: {w.category.__name__}: {w.message}")
        finally:
            if self.other_loop is not None:
                self.other_loop.close()
            close_loop(loop)
        return self


msgs = st.sampled_from([None, "m"])
idx = st.integers(0, 15)
rare = st.integers(0, 5)  # close/exit happen when this draws 0


def add_ops(timed):
    options = [
        st.tuples(st.just("add"),
                  st.sampled_from(["future", "task", "coro", "awaitable"]),
                  st.booleans()),
        st.tuples(st.just("add"), st.just("done"),
                  st.sampled_from(["result", "raise", "cancel"])),
        st.tuples(st.just("add"), st.just("instant"), st.booleans()),
    ]
    if timed:
        options.append(st.tuples(st.just("add"), st.just("timer"),
                                 st.sampled_from([1.3, 2.7, 4.1])))
    return st.one_of(options)


complete_ops = st.tuples(
    st.just("complete"), idx,
    st.one_of(st.just(("result",)), st.just(("raise",)),
              st.tuples(st.just("cancel"), msgs)))


def sync_ops(consumer_kinds, timed=False):
    """Operations that do not wait; ``consumer_kinds`` empty: no spawn."""
    spawns = ([st.tuples(st.just("spawn"), st.sampled_from(consumer_kinds))]
              if consumer_kinds else [])
    return st.one_of(
        add_ops(timed), add_ops(timed), complete_ops, complete_ops,
        st.tuples(st.just("readd"), idx),
        st.just(("bad",)),
        st.just(("other-loop",)),
        st.just(("poll",)),
        st.tuples(st.just("cancel"), msgs),
        st.tuples(st.just("close"), rare),
        st.tuples(st.just("uncons"), idx),
        st.just(("poke",)),
        *spawns,
    )


racy_spawns = st.tuples(st.just("spawn"),
                        st.sampled_from(["next", "next0", "iter", "loop"]))

# Equally likely families (spawns twice), so that plans have consumers.
racy_plans = st.lists(
    st.one_of(
        add_ops(False),
        complete_ops,
        racy_spawns,
        racy_spawns,
        st.one_of(st.just(("poke",)), st.tuples(st.just("uncons"), idx)),
        st.one_of(st.just(("poll",)),
                  st.tuples(st.just("next"), st.sampled_from([None, 0]))),
        st.one_of(st.tuples(st.just("step"), st.integers(1, 3)),
                  st.just(("settle",))),
        st.one_of(
            st.tuples(st.just("readd"), idx),
            st.just(("bad",)),
            st.just(("other-loop",)),
            st.tuples(st.just("cancel"), msgs),
            st.tuples(st.just("close"), rare),
            st.tuples(st.just("exit"), rare),
        ),
    ),
    min_size=12,  # hypothesis favours small examples: keep them busy
    max_size=30,
).map(tuple)


@st.composite
def diff_plans(draw):
    timed = draw(st.booleans())
    kinds = ["next", "timed"] if timed else ["next"]
    # Consumers' timeouts lie off the 0.1 grid of the sleeps and the timer
    # items: a consumer that times out at the very instant a timer item's
    # coroutine finishes wakes in the iteration in which the C queue
    # already holds that item and the reference does not yet (the README:
    # a coroutine's completion is seen inside its last step), so one takes
    # it and the other raises TimeoutError
    # (test_coroutine_completion_seen_in_its_last_step pins that).
    timeouts = [None, 0.9071, 2.9071] if timed else [None]
    # A consumer starts in a group of its own, on a settled loop: started
    # in the iteration in which the C queue already sees a coroutine's
    # completion and the reference does not yet, it would take the item
    # ahead of (C) or behind (reference) a consumer already woken for it,
    # and which consumer is left waiting is then not comparable.
    spawn = st.tuples(st.just("spawn"), st.sampled_from(kinds))
    awaiting = [st.tuples(st.just("next"), st.sampled_from(timeouts)),
                st.tuples(st.just("exit"), rare), spawn]
    if timed:
        awaiting.append(st.tuples(st.just("sleep"),
                                  st.sampled_from([0.5, 1.7])))
    group = st.one_of(
        st.lists(sync_ops([], timed), min_size=1, max_size=3),
        st.lists(sync_ops([], timed), min_size=1, max_size=3),
        st.one_of(awaiting).map(lambda op: [op]),
        spawn.map(lambda op: [op]),
    ).map(tuple)
    return timed, tuple(draw(st.lists(group, min_size=5, max_size=12)))


@given(plan=racy_plans)
def test_nothing_lost(cq_impl, plan):
    note(repr(plan))
    settle_garbage()
    result = QueueRun(cq_impl, racy=True).execute(plan)
    assert not result.violations, result.violations


def by_kind(handouts):
    """Hand-out order within each kind group.  Items that one bulk
    cancellation cancelled finish in the order it walked a set (arbitrary,
    by address): each run of them is sorted."""
    out = collections.defaultdict(list)
    for label, group, _, _, bulk in handouts:
        seq = out[group]
        if bulk is not None and seq and seq[-1][0] == bulk:
            seq[-1][1].append(label)
        else:
            seq.append((bulk, [label]))
    return {
        group: [label for bulk, run in seq
                for label in (sorted(run) if bulk is not None else run)]
        for group, seq in out.items()
    }


def handed_multiset(handouts):
    return collections.Counter((h[0], h[2]) for h in handouts)


@pytest.mark.parametrize(
    "target",
    [pytest.param(NativeCQ, id="c-vs-py")] if fastwait.NATIVE
    # Without the extension: the reference against itself, which checks
    # that the scenario runner is deterministic.
    else [pytest.param(PyCQ, id="py-vs-py")],
)
@given(spec=diff_plans())
def test_native_matches_reference(target, spec):
    timed, plan = spec
    note(repr(spec))
    settle_garbage()
    want = QueueRun(PyCQ, racy=False, timed=timed).execute(plan)
    got = QueueRun(target, racy=False, timed=timed).execute(plan)
    assert not want.violations, ("reference", want.violations)
    assert not got.violations, ("target", got.violations)
    if got.events != want.events:
        for a, b in zip(got.events, want.events):
            if a != b:
                note(f"first difference: target {a!r} vs reference {b!r}")
                break
    assert got.events == want.events
    assert got.status == want.status
    assert handed_multiset(got.handouts) == handed_multiset(want.handouts)
    assert by_kind(got.handouts) == by_kind(want.handouts)


def test_scenario_runner_sees_things_happen(cq_impl):
    """The runner is not vacuous: a busy plan hands items out through every
    path, and a broken queue would be caught."""
    plan = (
        ("add", "coro", False), ("add", "future", False),
        ("add", "task", True), ("add", "done", "raise"),
        ("add", "instant", True), ("add", "awaitable", False),
        ("spawn", "iter"), ("spawn", "next"), ("spawn", "next0"),
        ("step", 2), ("complete", 0, ("result",)),
        ("complete", 1, ("raise",)), ("uncons", 1), ("poll",),
        ("readd", 3), ("readd", 0), ("bad",), ("other-loop",),
        ("step", 3), ("next", None), ("cancel", "m"), ("close", 0),
        ("add", "coro", False), ("exit", 0), ("next", 0),
    )
    result = QueueRun(cq_impl, racy=True).execute(plan)
    assert not result.violations, result.violations
    # Six items, one of them added twice (i3, a done future, re-added after
    # it was handed out); handed out by the consumers and the driver.
    labels = [h[0] for h in result.handouts]
    assert sorted(set(labels)) == ["i0", "i1", "i2", "i3", "i4", "i5"]
    assert collections.Counter(labels)["i3"] == 2 and len(labels) == 7
    assert any(h[3].startswith("c") for h in result.handouts)
    assert result.status[0] == "end" and result.status[1] == "cancelled"
    errors = [e[2] for e in result.events if e[0] == "add-error"]
    assert errors == ["ValueError", "TypeError", "ValueError",
                      "RuntimeError"]



class LeakyQueue(PyCQ):
    """A broken queue: poll() drops the item after the one it returns."""

    def poll(self):
        x = super().poll()
        if x is not None:
            super().poll()
        return x


def test_scenario_runner_catches_a_lost_item():
    broken = QueueRun(LeakyQueue, racy=True).execute(
        (("add", "done", "result"), ("add", "done", "result"), ("poll",)))
    assert any("never handed out" in v for v in broken.violations), (
        broken.violations)
    assert any("model says" in v for v in broken.violations)


def test_differential_runner_is_deterministic():
    plan = (
        (("add", "coro", False), ("add", "future", True),
         ("spawn", "next")),
        (("add", "instant", False), ("complete", 1, ("result",))),
        (("spawn", "timed"), ("add", "timer", 1.3)),
        (("sleep", 1.7),),
        (("complete", 0, ("cancel", "m")), ("poll",)),
        (("next", 0.9),),
        (("exit", 0),),
    )
    first = QueueRun(PyCQ, racy=False, timed=True).execute(plan)
    second = QueueRun(PyCQ, racy=False, timed=True).execute(plan)
    assert not first.violations, first.violations
    assert (first.events, first.status, by_kind(first.handouts)) == (
        second.events, second.status, by_kind(second.handouts))
    assert first.status == {0: "got", 1: "got"}


def test_coroutine_needs_the_queues_running_loop(cq_impl, loop):
    """A coroutine (or other awaitable) is run on the running loop, which
    must be the one the queue is bound to; a refused coroutine is closed,
    so it does not warn "never awaited"."""
    import warnings

    other = asyncio.new_event_loop()
    try:
        q = cq_impl()
        foreign = other.create_future()
        q.add(foreign)  # binds the queue to `other`

        async def child():
            return 1

        async def main():
            coro = child()
            with pytest.raises(ValueError, match="different loop"):
                q.add(coro)
            assert coro.cr_frame is None  # closed
            return True

        assert run(loop, main)
        # No running loop at all: RuntimeError, and the coroutine closed.
        coro = child()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(RuntimeError, match="no running event loop"):
                cq_impl().add(coro)
        assert coro.cr_frame is None
        foreign.cancel()
    finally:
        other.close()


def test_next_binds_the_loop_when_awaited(cq_impl, loop):
    """next() on an empty, unbound queue: calling it outside a loop is
    fine (it is a coroutine); awaiting it raises QueueEmpty."""
    q = cq_impl()
    waiting = q.next()

    async def main():
        with pytest.raises(asyncio.QueueEmpty):
            await waiting
        return True

    assert run(loop, main)


def test_cancelled_waiter_passes_on_no_wake_up_it_did_not_get(cq_impl):
    """Found by the long differential run (C vs the reference): four
    consumers wait; a coroutine item that finishes at once is added and
    consumer 0 is cancelled in the same iteration.  The C queue sees the
    item inside the coroutine's last step, before consumer 0 resumes with
    its CancelledError, and wakes consumer 1 for it.  Consumer 0 never got
    a wake-up (its waiter was cancelled, not given a result), so it passes
    none on: consumer 2 stays second in line and takes the timer item at
    1.3 s, consumer 3 runs dry.  (Passing on a wake-up it did not get
    woke consumer 2 for an item promised to consumer 1, and consumer 2
    queued again behind consumer 3.)"""
    plan = ((("add", "timer", 1.3),), (("spawn", "next"),), (("spawn", "next"),),
            (("spawn", "next"),), (("spawn", "next"),),
            (("add", "instant", False), ("uncons", 0)))
    result = QueueRun(cq_impl, racy=False, timed=True).execute(plan)
    assert not result.violations, result.violations
    assert result.status == {0: "cancelled", 1: "got", 2: "got", 3: "QueueEmpty"}
    assert [(h[0], h[3]) for h in result.handouts] == [("i1", "c1"), ("i0", "c2")]
