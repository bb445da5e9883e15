"""race(*aws, timeout=None): the native implementation (fastwait._fastwait).

docs/extras.md, "race(*aws, timeout=None)".  The tests run on a loop with a
virtual clock (``vloop``): ``loop.time()`` moves only to the next timer, so
times are exact.  The loop fixture fails a test that leaves an
exception-handler call behind (an exception never retrieved, a task
destroyed pending); pytest turns warnings into errors.

Choices where the spec is silent (also in src/_fastwait/race.c):
- with duplicates, the ExceptionGroup holds one error per child, in the
  order of first appearance;
- a cancelled child's error is the CancelledError its exception() raises;
- a thrown-in exception (the caller's CancelledError) wins over a winner,
  the deadline and "all failed"; a child's KeyboardInterrupt/SystemExit
  wins over everything;
- an error creating the children (a future of another loop, a
  non-awaitable) cancels and awaits the children created so far and closes
  the coroutines never wrapped, then propagates;
- the timeout is checked before "no awaitable".
"""

import asyncio
import gc
import inspect
import math
import sys
import weakref

import pytest

from conftest import new_loop, close_loop, run_briefly
from helpers import BaseBoom, Boom

fw = pytest.importorskip("fastwait._fastwait")
race = fw.race


def run(loop, coro):
    return loop.run_until_complete(coro)


class Log:
    def __init__(self, loop):
        self.loop = loop
        self.events = []

    def __call__(self, *what):
        self.events.append((self.loop.time() - 1000.0,) + what)

    def child(self, name, delay, result=None, exc=None, on_cancel=None):
        """A child: sleep `delay`, then return `result` or raise `exc`.
        Cancelled, it logs and re-raises (or runs `on_cancel`)."""

        async def child():
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                self(name, "cancelled")
                if on_cancel is not None:
                    return await on_cancel()
                raise
            self(name, "finished")
            if exc is not None:
                raise exc
            return result if result is not None else name

        return child()


def no_other_tasks(loop):
    cur = asyncio.current_task(loop)
    return [t for t in asyncio.all_tasks(loop) if t is not cur] == []


# ---------------------------------------------------------------- basics


def test_signature_and_doc():
    assert str(inspect.signature(race)) == "(*aws, timeout=None)"
    assert "first" in race.__doc__


def test_first_success_wins(vloop):
    log = Log(vloop)

    async def main():
        r = await race(log.child("a", 3), log.child("b", 1),
                       log.child("c", 2))
        log("race returned", r)
        assert no_other_tasks(vloop)
        return r

    assert run(vloop, main()) == "b"
    # b wins at t=1; a and c are cancelled then and awaited.
    assert log.events == [
        (1.0, "b", "finished"),
        (1.0, "a", "cancelled"),
        (1.0, "c", "cancelled"),
        (1.0, "race returned", "b"),
    ]


def test_returns_a_coroutine_started_only_when_awaited(vloop):
    log = Log(vloop)

    async def main():
        coro = race(log.child("a", 0))
        assert asyncio.iscoroutine(coro)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert log.events == []  # nothing started
        assert no_other_tasks(vloop)
        return await coro

    assert run(vloop, main()) == "a"


def test_failure_before_the_winner(vloop):
    log = Log(vloop)

    async def main():
        return await race(log.child("a", 1, exc=Boom("a")),
                          log.child("b", 2), log.child("c", 3))

    assert run(vloop, main()) == "b"
    # a's exception was retrieved: the loop fixture checks no handler call.
    assert log.events == [(1.0, "a", "finished"), (2.0, "b", "finished"),
                          (2.0, "c", "cancelled")]


def test_tie_in_one_iteration_first_completion_seen(vloop):
    log = Log(vloop)

    async def main():
        return await race(log.child("a", 0), log.child("b", 0),
                          log.child("c", 0))

    assert run(vloop, main()) == "a"
    # a won inside its step: b and c were cancelled before theirs ran.
    assert log.events == [(0.0, "a", "finished"), (0.0, "b", "cancelled"),
                          (0.0, "c", "cancelled")]


def test_tie_of_futures_in_completion_order(vloop):
    async def main():
        loop = asyncio.get_running_loop()
        f1, f2 = loop.create_future(), loop.create_future()

        def resolve():
            f2.set_result("f2")
            f1.set_result("f1")

        loop.call_soon(resolve)
        return await race(f1, f2)

    assert run(vloop, main()) == "f2"


# ---------------------------------------------------------------- failures


def test_all_fail_exception_group_in_argument_order(vloop):
    log = Log(vloop)
    errors = [Boom("a"), ValueError("b"), KeyError("c")]

    async def main():
        # They fail in the order c, a, b.
        return await race(log.child("a", 2, exc=errors[0]),
                          log.child("b", 3, exc=errors[1]),
                          log.child("c", 1, exc=errors[2]))

    with pytest.raises(ExceptionGroup) as info:
        run(vloop, main())
    eg = info.value
    assert type(eg) is ExceptionGroup
    assert eg.message == "all racers failed"
    assert list(eg.exceptions) == errors
    assert vloop.time() == 1003.0


def test_all_fail_base_exception_group(vloop):
    log = Log(vloop)
    base = BaseBoom("b")

    async def main():
        return await race(log.child("a", 1, exc=Boom("a")),
                          log.child("b", 2, exc=base))

    with pytest.raises(BaseExceptionGroup) as info:
        run(vloop, main())
    assert type(info.value) is BaseExceptionGroup
    assert info.value.message == "all racers failed"
    assert [type(e) for e in info.value.exceptions] == [Boom, BaseBoom]
    assert info.value.exceptions[1] is base


def test_cancelled_child_error_is_its_cancelled_error(vloop):
    async def main():
        loop = asyncio.get_running_loop()
        f = loop.create_future()
        t = loop.create_task(asyncio.sleep(10))
        loop.call_later(1, f.cancel, "gone")
        loop.call_later(2, t.cancel)
        return await race(f, t)

    with pytest.raises(BaseExceptionGroup) as info:
        run(vloop, main())
    errs = info.value.exceptions
    assert type(info.value) is BaseExceptionGroup
    assert [type(e) for e in errs] == [asyncio.CancelledError] * 2
    assert errs[0].args == ("gone",)


def test_all_fail_when_done_at_creation(vloop):
    async def main():
        loop = asyncio.get_running_loop()
        f = loop.create_future()
        f.set_exception(Boom("f"))
        return await race(f)

    with pytest.raises(ExceptionGroup) as info:
        run(vloop, main())
    assert [str(e) for e in info.value.exceptions] == ["f"]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboardinterrupt_from_a_child(vloop, exc_type):
    log = Log(vloop)
    exc = exc_type("k")

    async def main():
        try:
            await race(log.child("a", 1, exc=exc), log.child("b", 5),
                       log.child("c", 0.5, exc=Boom("c")))
        except BaseException as e:
            log("race raised", type(e).__name__)
            assert e is exc
            assert no_other_tasks(vloop)
            raise

    task = vloop.create_task(main())
    # As from any Task, the exception also leaves the loop from the
    # child's step.
    with pytest.raises(exc_type):
        vloop.run_until_complete(task)
    with pytest.raises(exc_type):
        vloop.run_until_complete(task)
    assert log.events == [(0.5, "c", "finished"), (1.0, "a", "finished"),
                          (1.0, "b", "cancelled"),
                          (1.0, "race raised", exc_type.__name__)]


# ---------------------------------------------------------------- the caller


def test_caller_cancelled_children_awaited_first(vloop):
    log = Log(vloop)

    async def slow_cleanup():
        await asyncio.sleep(1)
        log("b", "cleaned up")
        raise asyncio.CancelledError

    async def main():
        try:
            await race(log.child("a", 5),
                       log.child("b", 5, on_cancel=slow_cleanup))
        except asyncio.CancelledError:
            log("race raised CancelledError",
                asyncio.current_task().cancelling())
            assert no_other_tasks(vloop)
            raise

    task = vloop.create_task(main())
    vloop.call_later(2, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        vloop.run_until_complete(task)
    assert task.cancelled()
    assert log.events == [(2.0, "a", "cancelled"), (2.0, "b", "cancelled"),
                          (3.0, "b", "cleaned up"),
                          (3.0, "race raised CancelledError", 1)]


def test_cancellation_while_awaiting_the_children_does_not_interrupt(vloop):
    log = Log(vloop)

    async def slow_cleanup():
        await asyncio.sleep(3)
        log("a", "cleaned up")
        return "late"

    async def main():
        try:
            await race(log.child("a", 5, on_cancel=slow_cleanup),
                       log.child("b", 1))
        except asyncio.CancelledError:
            # cancelling() counts the two cancel() calls, as for any await.
            log("race raised CancelledError",
                asyncio.current_task().cancelling())
            raise

    task = vloop.create_task(main())
    # b wins at 1; a cleans up until 4; the caller is cancelled at 2 and 3.
    vloop.call_later(2, task.cancel)
    vloop.call_later(3, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        vloop.run_until_complete(task)
    assert log.events == [(1.0, "b", "finished"), (1.0, "a", "cancelled"),
                          (4.0, "a", "cleaned up"),
                          (4.0, "race raised CancelledError", 2)]


def test_caller_cancelled_after_the_win_cancellation_wins(vloop):
    async def main():
        loop = asyncio.get_running_loop()
        f = loop.create_future()
        me = asyncio.current_task()

        def win_then_cancel():
            f.set_result("f")
            me.cancel()

        loop.call_soon(win_then_cancel)
        return await race(f, asyncio.sleep(10))

    task = vloop.create_task(main())
    with pytest.raises(asyncio.CancelledError):
        vloop.run_until_complete(task)
    assert vloop.time() == 1000.0


def test_uncancelled_caller_keeps_cancelling_count_zero(vloop):
    async def main():
        r = await race(asyncio.sleep(1, "x"))
        return r, asyncio.current_task().cancelling()

    assert run(vloop, main()) == ("x", 0)


# ---------------------------------------------------------------- timeout


def test_timeout(vloop):
    log = Log(vloop)

    async def slow_cleanup():
        await asyncio.sleep(0.5)
        log("b", "cleaned up")
        raise asyncio.CancelledError

    async def main():
        try:
            await race(log.child("a", 5),
                       log.child("b", 6, on_cancel=slow_cleanup), timeout=2)
        except TimeoutError as e:
            log("timeout", e.args, e.__cause__,
                asyncio.current_task().cancelling())
            assert no_other_tasks(vloop)

    run(vloop, main())
    assert log.events == [(2.0, "a", "cancelled"), (2.0, "b", "cancelled"),
                          (2.5, "b", "cleaned up"),
                          (2.5, "timeout", (), None, 0)]


@pytest.mark.parametrize("timeout", [0, -1, 0.0, -math.inf])
def test_expired_timeout_fires_in_the_next_iteration(vloop, timeout):
    log = Log(vloop)

    async def main():
        with pytest.raises(TimeoutError):
            await race(log.child("a", 1), timeout=timeout)

    run(vloop, main())
    assert log.events == [(0.0, "a", "cancelled")]


def test_expired_timeout_child_done_in_its_first_step_wins(vloop):
    async def instant():
        return "i"

    async def main():
        return await race(instant(), timeout=0)

    assert run(vloop, main()) == "i"


@pytest.mark.parametrize("timeout", [math.inf, 10**400, 10])
def test_timeout_not_reached(vloop, timeout):
    async def main():
        return await race(asyncio.sleep(1, "x"), timeout=timeout)

    async def later():
        # Nothing happens at the deadline any more.
        await asyncio.sleep(20)
        return asyncio.all_tasks()

    assert run(vloop, main()) == "x"
    assert len(run(vloop, later())) == 1


# ---------------------------------------------------------------- children


def test_child_ignoring_its_cancellation(vloop):
    log = Log(vloop)

    async def ignore():
        await asyncio.sleep(2)
        log("a", "ignored the cancellation")
        return "a-late"

    async def main():
        return await race(log.child("a", 5, on_cancel=ignore),
                          log.child("b", 1))

    assert run(vloop, main()) == "b"
    assert log.events == [(1.0, "b", "finished"), (1.0, "a", "cancelled"),
                          (3.0, "a", "ignored the cancellation")]


def test_loser_exception_after_cancel_is_retrieved(vloop):
    log = Log(vloop)

    async def fail():
        await asyncio.sleep(1)
        raise Boom("late")

    async def main():
        return await race(log.child("a", 5, on_cancel=fail),
                          log.child("b", 1))

    assert run(vloop, main()) == "b"
    gc.collect()
    assert vloop.fw_exceptions.take() == []


def test_futures_and_tasks_passed_in(vloop):
    async def main():
        loop = asyncio.get_running_loop()
        f = loop.create_future()
        t = loop.create_task(asyncio.sleep(5, "t"))
        loop.call_later(1, f.set_result, "f")
        r = await race(t, f)
        # The task passed in was cancelled and awaited.
        assert t.cancelled()
        return r

    assert run(vloop, main()) == "f"


def test_done_future_wins(vloop):
    async def main():
        loop = asyncio.get_running_loop()
        f = loop.create_future()
        f.set_result("done")
        g = loop.create_future()
        r = await race(g, f)
        assert g.cancelled()
        return r

    assert run(vloop, main()) == "done"


def test_duplicates_are_one_child(vloop):
    log = Log(vloop)

    async def main():
        c = log.child("a", 1)
        before = len(asyncio.all_tasks())
        coro = race(c, c, c)
        return await coro, before

    r, _ = run(vloop, main())
    assert r == "a"
    assert log.events == [(1.0, "a", "finished")]


def test_duplicate_failures_are_one_error(vloop):
    async def main():
        loop = asyncio.get_running_loop()
        f = loop.create_future()
        f.set_exception(Boom("x"))
        return await race(f, f)

    with pytest.raises(ExceptionGroup) as info:
        run(vloop, main())
    assert len(info.value.exceptions) == 1


def test_other_awaitables(vloop):
    class Aw:
        def __await__(self):
            yield from asyncio.sleep(1).__await__()
            return "aw"

    async def main():
        return await race(Aw(), asyncio.sleep(2, "s"))

    assert run(vloop, main()) == "aw"


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize("timeout, exc, msg", [
    ("1", TypeError, "timeout must be a number or None, not str"),
    (True, TypeError, "timeout must be a number or None, not bool"),
    ([1], TypeError, "timeout must be a number or None, not list"),
    (float("nan"), ValueError, "timeout must not be NaN"),
])
def test_bad_timeout_rejected_at_the_call(timeout, exc, msg):
    async def child():
        pass

    c = child()
    with pytest.raises(exc) as info:
        race(c, timeout=timeout)
    assert str(info.value) == msg
    # Nothing was touched: the coroutine is still unstarted and open.
    assert inspect.getcoroutinestate(c) == inspect.CORO_CREATED
    c.close()


def test_no_awaitable():
    with pytest.raises(TypeError) as info:
        race()
    assert str(info.value) == "race() needs at least one awaitable"
    with pytest.raises(TypeError) as info:
        race(timeout=1)
    assert str(info.value) == "race() needs at least one awaitable"
    # The timeout is checked first.
    with pytest.raises(TypeError, match="not str"):
        race(timeout="x")


def test_unknown_keyword():
    with pytest.raises(TypeError, match="unexpected keyword argument 'x'"):
        race(x=1)


def test_not_awaitable_argument_at_the_first_step(vloop):
    async def child():
        return 1

    async def main():
        c1, c2 = child(), child()
        with pytest.raises(TypeError):
            await race(c1, 42, c2)
        # c1's task was cancelled and awaited, c2 closed (never awaited).
        assert no_other_tasks(vloop)
        assert inspect.getcoroutinestate(c2) == inspect.CORO_CLOSED

    run(vloop, main())


def test_future_of_another_loop(vloop):
    other = new_loop()
    try:
        async def main():
            f = other.create_future()
            with pytest.raises(ValueError, match="different loop"):
                await race(asyncio.sleep(1), f)
            assert no_other_tasks(vloop)

        run(vloop, main())
    finally:
        close_loop(other)


def test_no_running_loop():
    async def child():
        pass

    c = child()
    coro = race(c)
    with pytest.raises(RuntimeError, match="no running event loop"):
        coro.send(None)
    assert inspect.getcoroutinestate(c) == inspect.CORO_CLOSED


def test_never_awaited_warns():
    async def child():
        pass

    c = child()
    coro = race(c)
    c.close()
    with pytest.warns(RuntimeWarning, match="race' was never awaited"):
        del coro
        gc.collect()


# ---------------------------------------------------------------- task paths


@pytest.mark.needs_eager_factory
def test_eager_task_factory(vloop):
    vloop.set_task_factory(asyncio.eager_task_factory)
    log = Log(vloop)

    async def instant(name):
        log(name, "ran")
        return name

    async def main():
        r = await race(log.child("a", 1), instant("b"), instant("c"),
                       log.child("d", 1))
        assert no_other_tasks(vloop)
        return r

    assert run(vloop, main()) == "b"
    # b finished inside create_task; c and d were still created (eagerly
    # started: c ran) and d cancelled.
    assert log.events == [(0.0, "b", "ran"), (0.0, "c", "ran"),
                          (0.0, "a", "cancelled"), (0.0, "d", "cancelled")]


@pytest.mark.needs_eager_factory
def test_eager_all_fail_in_the_first_step(vloop):
    vloop.set_task_factory(asyncio.eager_task_factory)

    async def fail(name):
        raise Boom(name)

    async def main():
        return await race(fail("a"), fail("b"))

    with pytest.raises(ExceptionGroup) as info:
        run(vloop, main())
    assert [str(e) for e in info.value.exceptions] == ["a", "b"]


def test_custom_task_factory_callback_path(vloop):
    made = []

    def factory(loop, coro, **kw):
        made.append(coro)
        return asyncio.Task(coro, loop=loop, **kw)

    vloop.set_task_factory(factory)
    log = Log(vloop)

    async def main():
        return await race(log.child("a", 2), log.child("b", 1),
                          log.child("c", 3, exc=Boom("c")))

    assert run(vloop, main()) == "b"
    # The factory got the coroutines themselves, not fastwait's wrapper.
    assert all(inspect.iscoroutine(c) for c in made[1:])
    assert log.events == [(1.0, "b", "finished"), (1.0, "a", "cancelled"),
                          (1.0, "c", "cancelled")]


# ---------------------------------------------------------------- lifetime


def test_close_mid_race_cancels_the_children(vloop):
    log = Log(vloop)

    async def main():
        coro = race(log.child("a", 1), log.child("b", 2))
        it = coro.__await__()
        fut = next(it)  # the waiter
        assert isinstance(fut, asyncio.Future)
        await asyncio.sleep(0)  # the children start
        coro.close()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert no_other_tasks(vloop)

    run(vloop, main())
    assert log.events == [(0.0, "a", "cancelled"), (0.0, "b", "cancelled")]


def test_no_references_left(vloop):
    refs = []

    class Result:
        pass

    async def child(delay):
        await asyncio.sleep(delay)
        r = Result()
        refs.append(weakref.ref(r))
        return r

    async def main():
        tasks = []
        r = await race(child(1), child(2))
        refs.append(weakref.ref(r))
        del r
        return tasks

    run(vloop, main())
    gc.collect()
    assert all(ref() is None for ref in refs)


def test_many_children(vloop):
    async def child(i):
        await asyncio.sleep(i + 1)
        return i

    async def main():
        r = await race(*[child(i) for i in reversed(range(200))])
        assert no_other_tasks(vloop)
        return r

    assert run(vloop, main()) == 0
    assert vloop.time() == 1001.0


def test_run_briefly_iterations(vloop):
    """Two children that return after one sleep(0): the winner's step
    cancels the other; race returns in the next iteration (lazy tasks)."""
    vloop.set_task_factory(None)
    done = []

    async def child(v):
        await asyncio.sleep(0)
        return v

    async def main():
        done.append(await race(child(1), child(2)))

    vloop.create_task(main())
    run_briefly(vloop, 3)  # main starts race; children step; winner
    assert done == []
    run_briefly(vloop, 1)
    assert done == [1]


def test_callback_repr_on_a_future_passed_in(vloop):
    async def main():
        loop = asyncio.get_running_loop()
        f = loop.create_future()
        t = loop.create_task(race(f))
        await asyncio.sleep(0)
        assert "race.<locals>._on_completion" in repr(f)
        state = f._callbacks[0][0]
        assert repr(state) == "<race racing children=1 pending=1>"
        f.set_result(1)
        return await t

    assert run(vloop, main()) == 1


def test_deadline_taken_at_the_first_step(vloop):
    async def main():
        coro = race(asyncio.sleep(10), timeout=2)
        await asyncio.sleep(5)
        with pytest.raises(TimeoutError):
            await coro
        return asyncio.get_running_loop().time()

    assert run(vloop, main()) == 1007.0


def test_caller_cancel_message_kept(vloop):
    seen = []

    async def main():
        try:
            await race(asyncio.sleep(5), asyncio.sleep(6))
        except asyncio.CancelledError as e:
            seen.append(e.args)
            raise

    task = vloop.create_task(main())
    vloop.call_later(1, task.cancel, "bye")
    with pytest.raises(asyncio.CancelledError):
        vloop.run_until_complete(task)
    assert seen == [("bye",)]


def test_close_while_awaiting_the_children(vloop):
    log = Log(vloop)

    async def slow_cleanup():
        await asyncio.sleep(1)
        log("a", "cleaned up")

    async def main():
        coro = race(log.child("a", 5, on_cancel=slow_cleanup),
                    log.child("b", 1))
        it = coro.__await__()
        fut = next(it)
        await asyncio.sleep(1.5)  # b won at 1; a cleans up until 2
        assert not fut.done()  # released once a is done
        coro.close()  # a is cancelled again, not awaited
        await asyncio.sleep(0)
        assert no_other_tasks(vloop)

    run(vloop, main())
    assert log.events == [(1.0, "b", "finished"), (1.0, "a", "cancelled")]


def test_children_tasks_made_as_create_task_makes_them(vloop):
    # On asyncio's own create_task with no task factory race makes the
    # Tasks itself (tasks.Task, read at each call); a create_task set on the
    # loop instance is called instead, as ensure_future would.
    made = []

    class Spied(asyncio.Task):
        def __init__(self, coro, **kwargs):
            made.append(kwargs)
            super().__init__(coro, **kwargs)

    async def one(x):
        await asyncio.sleep(0)
        return x

    async def main():
        saved = asyncio.tasks.Task
        asyncio.tasks.Task = Spied
        try:
            assert await race(one(1), one(2)) == 1
        finally:
            asyncio.tasks.Task = saved
        if vloop.get_task_factory() is None:
            # BaseEventLoop.create_task's own call
            kwargs = ({"loop": vloop} if sys.version_info >= (3, 14)
                      else {"loop": vloop, "name": None, "context": None})
            assert made == [kwargs, kwargs]
        else:
            # (the eager axis: the factory gets the call, with its own
            # Task class)
            assert made == []
        calls = []
        create = vloop.create_task

        def spy(coro, **kwargs):
            calls.append(coro)
            return create(coro, **kwargs)

        vloop.create_task = spy
        try:
            assert await race(one(3), one(4)) == 3
        finally:
            del vloop.create_task
        assert len(calls) == 2
        assert all(c.__wrapped__.__qualname__.endswith("one")
                   for c in calls)

    run(vloop, main())
