"""The native eager-start machinery behind gather(eager=True).

``fastwait._fastwait._eager_start(coro, loop=None, *, context=None,
on_finish=None)`` is a private test hook on the C function
``fw_eager_start`` (eager.c): it runs ``coro``'s first step inside the call,
in a copy of the context, and returns ``("returned", value)``,
``("raised", exc)`` or, when the coroutine suspended, ``("task", task)``: a
Task made by ``loop.create_task(wrapper, context=<the copy>)`` whose first
step receives what the coroutine's first step yielded.

Where "as if the Task had run the first step itself" can be checked, the
scenarios run twice and their traces are compared: once through
``_eager_start`` and once as a stdlib Task whose first step runs eagerly
(``asyncio.eager_task_factory``, 3.12+).  Loop iterations are compared only
on an eager-factory loop: on a lazy loop the wrapper's Task takes the
yielded object one iteration after the call (its first step is scheduled),
where an eager Task takes it at once.
"""

import asyncio
import contextvars
import gc
import inspect
import os
import subprocess
import sys
import textwrap
import traceback
import types
import warnings
import weakref
from collections.abc import Coroutine

import pytest

import fastwait
from conftest import HAS_EAGER, run, run_briefly
from helpers import BaseBoom, Boom, MyCancelled

pytestmark = pytest.mark.skipif(not fastwait.NATIVE,
                                reason="the native machinery only")

if fastwait.NATIVE:
    from fastwait._fastwait import _eager_start
    from fastwait._fastwait import CoroutineWrapper

needs_eager = pytest.mark.needs_eager_factory

var = contextvars.ContextVar("var", default="unset")


async def returns(value):
    return value


async def raises(exc):
    raise exc


async def waits(fut, log=None):
    """Suspends on fut; logs what it sees; returns fut's result."""
    try:
        value = await fut
    except BaseException as exc:
        if log is not None:
            log.append(("child-raised", type(exc).__name__, exc.args))
        raise
    if log is not None:
        log.append(("child-got", value))
    return value


def on_loop(loop, main):
    return run(loop, main())


# ---------------------------------------------------------------------------
# Finished in the first step: no Task at all


def counting_factory(calls):
    def factory(loop, coro, **kwargs):
        calls.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    return factory


def test_returns_without_suspending(loop):
    calls = []

    async def main():
        loop.set_task_factory(counting_factory(calls))
        before = asyncio.all_tasks()
        coro = returns(42)
        assert _eager_start(coro) == ("returned", 42)
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        assert asyncio.all_tasks() == before
        # a None result is a result
        assert _eager_start(returns(None)) == ("returned", None)
        # a tuple result is not unpacked
        assert _eager_start(returns((1, 2))) == ("returned", (1, 2))

    on_loop(loop, main)
    assert calls == []  # no task factory call


@pytest.mark.parametrize("exc_type", [Boom, ValueError, RuntimeError,
                                      asyncio.CancelledError, MyCancelled,
                                      BaseBoom, GeneratorExit])
def test_raises_in_first_step(loop, exc_type):
    calls = []

    async def main():
        loop.set_task_factory(counting_factory(calls))
        exc = exc_type("msg")
        coro = raises(exc)
        kind, got = _eager_start(coro)
        assert kind == "raised"
        assert got is exc
        # the coroutine's frame is in the traceback
        names = [f.f_code.co_name for f, _ in
                 traceback.walk_tb(got.__traceback__)]
        assert "raises" in names
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED

    on_loop(loop, main)
    assert calls == []


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_propagate(loop, exc_type):
    async def main():
        coro = raises(exc_type("stop"))
        with pytest.raises(exc_type) as info:
            _eager_start(coro)
        assert info.value.args == ("stop",)
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        return "survived"

    assert on_loop(loop, main) == "survived"


def test_already_awaited_coroutine_is_its_first_step_error(loop):
    async def main():
        coro = returns(1)
        assert _eager_start(coro) == ("returned", 1)
        kind, exc = _eager_start(coro)
        assert kind == "raised"
        assert type(exc) is RuntimeError
        assert str(exc) == "cannot reuse already awaited coroutine"

    on_loop(loop, main)


# ---------------------------------------------------------------------------
# Suspended: continued as a Task


def test_suspends_on_future_then_finishes_as_the_task(loop):
    finished = []

    async def main():
        fut = loop.create_future()
        log = []
        kind, task = _eager_start(waits(fut, log), on_finish=lambda *a:
                                  finished.append(a))
        assert kind == "task"
        assert isinstance(task, asyncio.Task)
        assert not task.done()
        assert task in asyncio.all_tasks()
        assert log == []
        loop.call_soon(fut.set_result, "value")
        assert await task == "value"
        assert log == [("child-got", "value")]

    on_loop(loop, main)
    assert finished == [("returned", "value")]


def test_suspends_then_raises_in_the_task(loop):
    finished = []

    async def child(fut):
        await fut
        raise Boom("late")

    async def main():
        fut = loop.create_future()
        kind, task = _eager_start(child(fut),
                                  on_finish=lambda *a: finished.append(a))
        fut.set_result(None)
        with pytest.raises(Boom) as info:
            await task
        assert task.exception() is info.value
        return info.value

    exc = on_loop(loop, main)
    assert finished == [("raised", exc)]


def test_bare_yield(loop):
    log = []

    async def child():
        log.append("first")
        await asyncio.sleep(0)
        log.append("second")
        return "done"

    async def main():
        kind, task = _eager_start(child())
        assert kind == "task"
        assert log == ["first"]
        assert await task == "done"
        assert log == ["first", "second"]

    on_loop(loop, main)


def test_bare_yield_iterations(loop_factory):
    """Lazy loop (no task factory): from 3.12 on the Task is started at
    once (Task(..., eager_start=True), what create_task builds, started),
    so it takes the bare yield inside the call and the coroutine resumes in
    the next iteration, as with an eager Task; on 3.11 (no eager start) the
    Task takes it in the next iteration and the coroutine resumes in the
    one after."""
    loop = loop_factory(tasks="lazy")
    seen = {}

    async def child():
        seen["first"] = loop.fw_iteration
        await asyncio.sleep(0)
        seen["second"] = loop.fw_iteration

    async def main():
        seen["call"] = loop.fw_iteration
        _, task = _eager_start(child())
        await task

    on_loop(loop, main)
    assert seen["first"] == seen["call"]
    assert seen["second"] == seen["call"] + (1 if HAS_EAGER else 2)


def test_timer_on_the_virtual_clock(vloop):
    async def child():
        await asyncio.sleep(10)
        return vloop.time()

    async def main():
        start = vloop.time()
        _, task = _eager_start(child())
        assert await task == start + 10

    on_loop(vloop, main)


@pytest.mark.parametrize("value", ["bad", 5])
def test_bad_yield_reaches_the_task(loop, value):
    """Anything a task rejects is rejected as if its own first step had
    produced it: the Task throws its RuntimeError into the coroutine."""
    class Yielder(Coroutine):
        def __init__(self):
            self.thrown = []

        def send(self, arg):
            if not self.thrown:
                return value
            raise StopIteration("stopped")

        def throw(self, *args):
            self.thrown.append(args[0])
            raise args[0]

        def close(self):
            pass

        def __await__(self):
            return self

    async def main():
        coro = Yielder()
        kind, task = _eager_start(coro)
        assert kind == "task"
        with pytest.raises(RuntimeError) as info:
            await task
        assert coro.thrown == [info.value]
        assert str(info.value) == f"Task got bad yield: {value!r}"

    on_loop(loop, main)


def test_future_of_another_loop_reaches_the_task(loop):
    other = asyncio.new_event_loop()
    try:
        async def main():
            fut = other.create_future()
            _, task = _eager_start(waits(fut))
            with pytest.raises(RuntimeError, match="attached to a different "
                                                   "loop"):
                await task

        on_loop(loop, main)
    finally:
        other.close()


# ---------------------------------------------------------------------------
# Cancellation


def make_factory(kind, eager):
    cls = asyncio.Task if kind == "task" else asyncio.tasks._PyTask
    if eager:
        base = asyncio.create_eager_task_factory(cls)

        def eager_factory(loop, coro, *, eager_start=None, **kwargs):
            # uvloop passes eager_start=None from 3.13 on, which 3.13.0's
            # factory does not take and which on 3.14 would override the
            # factory's eager start (conftest's _eager_factory_for).
            if eager_start is not None:
                kwargs["eager_start"] = eager_start
            return base(loop, coro, **kwargs)

        return eager_factory

    def factory(loop, coro, **kwargs):
        return cls(coro, loop=loop, **kwargs)

    return factory


TASK_KINDS = ["task", "pytask"]
FACTORY_MODES = [False, pytest.param(True, marks=needs_eager)]


def cancel_scenario(start, loop, msg, *, suppress=False, after_steps=0):
    """The child awaits a future and is cancelled `after_steps` loop
    iterations after it was started; returns the events."""
    log = []

    async def child(fut):
        try:
            await fut
        except asyncio.CancelledError as exc:
            log.append(("child-cancelled", type(exc).__name__, exc.args))
            if suppress:
                return "suppressed"
            raise
        log.append("child-resumed")

    async def main():
        fut = loop.create_future()
        fut.add_done_callback(
            lambda f: log.append(("fut-done", f.cancelled())))
        task = start(child(fut))
        for _ in range(after_steps):
            await asyncio.sleep(0)
        if msg is None:
            log.append(("cancel", task.cancel()))
        else:
            log.append(("cancel", task.cancel(msg)))
        log.append(("fut-at-cancel", fut.cancelled(),
                    fut._asyncio_future_blocking))
        try:
            result = await task
        except asyncio.CancelledError as exc:
            log.append(("task-cancelled", exc.args, task.cancelling()))
        else:
            log.append(("task-returned", result))
        log.append(("fut", fut.cancelled(), fut._asyncio_future_blocking))
        if fut.cancelled():
            with pytest.raises(asyncio.CancelledError) as info:
                fut.result()
            log.append(("fut-message", info.value.args))

    run(loop, main())
    return log


def entries(log, name):
    return [e for e in log if e[0] == name]


def eager_start_task(coro):
    kind, task = _eager_start(coro)
    assert kind == "task"
    return task


@needs_eager
@pytest.mark.parametrize("kind", TASK_KINDS)
@pytest.mark.parametrize("eager", FACTORY_MODES)
@pytest.mark.parametrize("msg", [None, "stop"])
@pytest.mark.parametrize("suppress", [False, True])
@pytest.mark.parametrize("after_steps", [0, 1, 2])
def test_cancelled_like_an_eager_task(loop_factory, kind, eager, msg,
                                      suppress, after_steps):
    """Cancelled before the Task's first step (lazy factory, after_steps 0:
    the wrapper's throw path) or while waiting: the child sees what a child
    of a Task that ran its first step eagerly sees (the future cancelled
    with the message, the CancelledError at its await)."""
    got_loop = loop_factory(tasks="lazy")
    got_loop.set_task_factory(make_factory(kind, eager))
    got = cancel_scenario(eager_start_task, got_loop, msg,
                          suppress=suppress, after_steps=after_steps)
    want_loop = loop_factory(tasks="lazy")
    want_loop.set_task_factory(make_factory(kind, True))
    want = cancel_scenario(want_loop.create_task, want_loop, msg,
                           suppress=suppress, after_steps=after_steps)
    if eager or after_steps:
        # The Task took the future in its own first step: from then on it
        # is a Task cancelled while waiting, exactly.
        assert got == want
    else:
        # Cancelled before the Task's first step (the wrapper's throw()
        # path).  The future is cancelled in that step, not inside
        # task.cancel(), and the CancelledError goes into the coroutine in
        # the same step, before the future's other done callbacks run.
        # (_asyncio_future_blocking was taken at the eager start, as a
        # Task's step takes it.)  Otherwise the same events.
        assert entries(got, "fut-at-cancel") == [("fut-at-cancel", False,
                                                  False)]
        assert entries(want, "fut-at-cancel") == [("fut-at-cancel", True,
                                                   False)]
        got = [e for e in got if e[0] != "fut-at-cancel"]
        want = [e for e in want if e[0] != "fut-at-cancel"]
        assert sorted(got, key=repr) == sorted(want, key=repr)
        assert got.index(entries(got, "child-cancelled")[0]) < got.index(
            ("fut-done", True))
    assert ("child-cancelled", "CancelledError",
            () if msg is None else (msg,)) in got


def test_cancelled_before_first_step_with_a_bare_yield(loop_factory):
    loop = loop_factory(tasks="lazy")
    log = []

    async def child():
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError as exc:
            log.append(("child-cancelled", exc.args))
            raise

    async def main():
        _, task = _eager_start(child())
        task.cancel("why")
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    on_loop(loop, main)
    assert log == [("child-cancelled", ("why",))]


def test_cancelled_before_first_step_on_an_already_done_future(
        loop_factory):
    """The yielded future finished before the Task took it: nothing to
    cancel; the CancelledError still goes in (Task.cancel() would set
    _must_cancel, and the next step would throw it)."""
    loop = loop_factory(tasks="lazy")
    log = []

    async def main():
        fut = loop.create_future()
        _, task = _eager_start(waits(fut, log))
        fut.set_result(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert fut.result() == 1

    on_loop(loop, main)
    assert log == [("child-raised", "CancelledError", ())]


class FakeLoop:
    """A "loop" whose create_task() returns the wrapper itself: the
    wrapper's protocol, tested without a Task."""

    def create_task(self, wrapper, *, context):
        return wrapper


def test_other_exception_thrown_before_first_step(loop):
    """Only a CancelledError cancels the held future; anything else is
    just thrown into the coroutine."""
    async def direct():
        fut = asyncio.get_running_loop().create_future()
        log = []
        coro = waits(fut, log)
        kind, wrapper = _eager_start(coro, FakeLoop())
        assert kind == "task"
        assert type(wrapper) is CoroutineWrapper
        with pytest.raises(Boom):
            wrapper.throw(Boom())
        assert not fut.cancelled()
        assert log == [("child-raised", "Boom", ())]

    on_loop(loop, direct)


def test_wrapper_protocol_before_first_step(loop):
    finished = []

    async def main():
        fut = asyncio.get_running_loop().create_future()
        coro = waits(fut)
        _, wrapper = _eager_start(coro, FakeLoop(),
                                  on_finish=lambda *a: finished.append(a))
        with pytest.raises(TypeError, match="can't send non-None value to a "
                                            "just-started coroutine"):
            wrapper.send(1)
        assert wrapper.send(None) is fut  # still held, handed out once
        # then forwarded
        fut.set_result(7)
        with pytest.raises(StopIteration) as info:
            wrapper.send(None)
        assert info.value.value == 7

        fut2 = asyncio.get_running_loop().create_future()
        coro2 = waits(fut2)
        _, wrapper2 = _eager_start(coro2, FakeLoop(),
                                   on_finish=lambda *a: finished.append(a))
        wrapper2.close()  # held yield dropped, nothing cancelled
        assert inspect.getcoroutinestate(coro2) == inspect.CORO_CLOSED
        assert not fut2.cancelled()

    on_loop(loop, main)
    assert finished == [("returned", 7)]  # close() reports nothing


# ---------------------------------------------------------------------------
# Contexts


def test_context_copy(loop):
    async def child(fut):
        seen = [("first", var.get())]
        var.set("child")
        await fut
        seen.append(("later", var.get()))
        return seen

    async def main():
        var.set("caller")
        fut = loop.create_future()
        kind, task = _eager_start(child(fut))
        assert var.get() == "caller"  # the child's set did not leak
        var.set("caller-after")  # nor does this reach the child
        if hasattr(task, "get_context"):
            assert task.get_context().get(var) == "child"
        fut.set_result(None)
        assert await task == [("first", "caller"), ("later", "child")]
        assert var.get() == "caller-after"

    on_loop(loop, main)


def test_context_copy_when_finished_in_first_step(loop):
    async def child():
        before = var.get()
        var.set("child")
        return before

    async def main():
        var.set("caller")
        assert _eager_start(child()) == ("returned", "caller")
        assert var.get() == "caller"

    on_loop(loop, main)


def test_one_copy_per_call(loop):
    async def child(fut, name):
        var.set(name)
        await fut
        return var.get()

    async def main():
        fut = loop.create_future()
        _, t1 = _eager_start(child(fut, "one"))
        _, t2 = _eager_start(child(fut, "two"))
        fut.set_result(None)
        assert await asyncio.gather(t1, t2) == ["one", "two"]

    on_loop(loop, main)


@pytest.mark.parametrize("shared", ["future", "task"])
def test_children_awaiting_one_future(loop_factory, shared):
    """Several children suspended on the same future (or Task) before any
    of their Tasks took it: each Task still gets it as a blocking future
    (asyncio's C future refuses a second await while the first await's
    _asyncio_future_blocking flag is set: the eager start takes the flag
    as a Task's step does)."""
    loop = loop_factory(tasks="lazy")

    async def gate(fut):
        return await fut

    async def main():
        fut = loop.create_future()
        target = fut if shared == "future" else loop.create_task(gate(fut))
        tasks = []
        for _ in range(3):
            kind, task = _eager_start(waits(target))
            assert kind == "task"
            tasks.append(task)
        await asyncio.sleep(0)
        fut.set_result("shared")
        assert await asyncio.gather(*tasks) == ["shared"] * 3

    on_loop(loop, main)


def test_base_context(loop):
    async def child(fut):
        first = var.get()
        var.set("child")
        await fut
        return first, var.get()

    async def main():
        var.set("base")
        base = contextvars.copy_context()
        var.set("caller")
        fut = loop.create_future()
        _, task = _eager_start(child(fut), context=base)
        assert base.get(var) == "base"  # the base itself is not touched
        fut.set_result(None)
        assert await task == ("base", "child")
        assert _eager_start(returns(1), context=base) == ("returned", 1)
        coro = returns(1)
        with pytest.raises(TypeError):
            _eager_start(coro, context={})
        coro.close()

    on_loop(loop, main)


def test_current_task_during_the_first_step(loop):
    async def child(fut):
        first = asyncio.current_task()
        await fut
        return first, asyncio.current_task()

    async def main():
        me = asyncio.current_task()
        fut = loop.create_future()
        _, task = _eager_start(child(fut))
        fut.set_result(None)
        first, later = await task
        assert first is me
        assert later is task
        assert asyncio.current_task() is me

    on_loop(loop, main)


# ---------------------------------------------------------------------------
# Task factories


@needs_eager
def test_eager_task_factory_loop(loop_factory):
    loop = loop_factory(tasks="eager")
    steps = []
    calls = []
    eager = asyncio.eager_task_factory

    def factory(loop, coro, *, eager_start=None, **kwargs):
        # (uvloop passes eager_start=None from 3.13 on: left out, as
        # conftest's _eager_factory_for does)
        calls.append((type(coro).__name__, sorted(kwargs)))
        if eager_start is not None:
            kwargs["eager_start"] = eager_start
        return eager(loop, coro, **kwargs)

    async def child(fut):
        steps.append(("first", loop.fw_iteration))
        await fut
        steps.append(("second", loop.fw_iteration))
        return "ok"

    async def main():
        loop.set_task_factory(factory)
        fut = loop.create_future()
        start = loop.fw_iteration
        _, task = _eager_start(child(fut))
        # the eager Task took the future inside create_task: nothing ran
        # twice, and the task waits on the future already
        assert steps == [("first", start)]
        assert not task.done()
        fut.set_result(None)
        assert await task == "ok"
        assert steps == [("first", start), ("second", start + 1)]
        assert _eager_start(returns(1)) == ("returned", 1)

    on_loop(loop, main)
    assert calls == [("CoroutineWrapper", ["context"])]


@needs_eager
@pytest.mark.parametrize("kind", TASK_KINDS)
def test_iterations_match_an_eager_task(loop_factory, kind):
    """On an eager-factory loop the whole life of the child, loop iteration
    by loop iteration, is an eager Task's."""
    def scenario(start):
        loop = loop_factory(tasks="lazy")
        loop.set_task_factory(make_factory(kind, True))
        log = []

        async def child(fut):
            log.append(("first", loop.fw_iteration))
            await asyncio.sleep(0)
            log.append(("slept", loop.fw_iteration))
            log.append(("got", await fut, loop.fw_iteration))
            await asyncio.sleep(0)
            return loop.fw_iteration

        async def main():
            fut = loop.create_future()
            task = start(child(fut))
            task.add_done_callback(
                lambda t: log.append(("done", loop.fw_iteration)))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            fut.set_result("v")
            log.append(("result", await task, loop.fw_iteration))

        run(loop, main())
        return log

    got = scenario(eager_start_task)
    want = scenario(lambda coro: asyncio.get_running_loop().create_task(coro))
    assert got == want


def test_create_task_fails_with_runtime_error(loop):
    log = []

    async def child(fut):
        try:
            await fut
        finally:
            log.append("closed")

    def factory(loop, coro, **kwargs):
        raise RuntimeError("no tasks today")

    async def main():
        fut = loop.create_future()
        coro = child(fut)
        loop.set_task_factory(factory)
        try:
            with pytest.raises(RuntimeError, match="no tasks today"):
                _eager_start(coro, on_finish=lambda *a: log.append(a))
        finally:
            loop.set_task_factory(None)
        assert log == ["closed"]  # closed, finish not called
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED

    on_loop(loop, main)


def test_create_task_fails_otherwise(loop):
    """Not a RuntimeError: the coroutine is left suspended, as
    fw_close_unscheduled leaves it; dropped, it is closed without a
    'never awaited' warning."""
    log = []

    async def child(fut):
        try:
            await fut
        finally:
            log.append("closed")

    def factory(loop, coro, **kwargs):
        raise TypeError("bad factory")

    async def main():
        fut = loop.create_future()
        coro = child(fut)
        loop.set_task_factory(factory)
        try:
            with pytest.raises(TypeError, match="bad factory"):
                _eager_start(coro, on_finish=lambda *a: log.append(a))
        finally:
            loop.set_task_factory(None)
        assert inspect.getcoroutinestate(coro) == inspect.CORO_SUSPENDED
        ref = weakref.ref(fut)
        return ref

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        on_loop(loop, main)
        gc.collect()
    assert log == ["closed"]
    assert caught == []


def test_loop_must_run(loop):
    coro = returns(1)
    try:
        with pytest.raises(RuntimeError, match="no running event loop"):
            _eager_start(coro)
    finally:
        coro.close()
    # with an explicit loop, a coroutine that never suspends needs no
    # running loop at all
    assert _eager_start(returns(2), loop) == ("returned", 2)


# ---------------------------------------------------------------------------
# Other coroutine types


def test_fastwait_coroutine(loop):
    """fastwait's own C coroutines (wait() returns one)."""
    async def main():
        fut = loop.create_future()
        kind, task = _eager_start(fastwait.wait([fut]))
        assert kind == "task"
        fut.set_result(3)
        done, pending = await task
        assert done == {fut} and not pending

        # wait() suspends even when everything is done (its completion
        # callbacks are scheduled)
        done_fut = loop.create_future()
        done_fut.set_result(1)
        kind, task = _eager_start(fastwait.wait([done_fut]))
        assert kind == "task"
        assert await task == ({done_fut}, set())

        # a wrapper of fastwait's own, already started, started again
        fut = loop.create_future()
        _, inner = _eager_start(waits(fut), FakeLoop())
        assert _eager_start(inner)[0] == "task"
        fut.set_result(None)

    on_loop(loop, main)


def test_nested_wrapper(loop):
    """A started wrapper started again (the send protocol throughout)."""
    async def main():
        fut = loop.create_future()
        _, inner = _eager_start(waits(fut), FakeLoop())
        kind, task = _eager_start(inner)
        assert kind == "task"
        fut.set_result("nested")
        assert await task == "nested"

    on_loop(loop, main)


def test_python_coroutine_class(loop):
    """A Coroutine without am_send: driven through send()."""
    class Coro(Coroutine):
        def __init__(self, fut):
            self.it = fut.__await__()
            self.sent = []

        def send(self, arg):
            self.sent.append(arg)
            return self.it.send(arg)

        def throw(self, *args):
            return self.it.throw(*args)

        def close(self):
            self.it.close()

        def __await__(self):
            return self

    async def main():
        fut = loop.create_future()
        coro = Coro(fut)
        kind, task = _eager_start(coro)
        assert kind == "task"
        fut.set_result("py")
        assert await task == "py"
        assert coro.sent[0] is None

    on_loop(loop, main)


def test_generator_based_coroutine(loop):
    @types.coroutine
    def gen(fut):
        value = yield from fut
        return value * 2

    async def main():
        fut = loop.create_future()
        kind, task = _eager_start(gen(fut))
        assert kind == "task"
        fut.set_result(21)
        assert await task == 42

    on_loop(loop, main)


# ---------------------------------------------------------------------------
# Introspection


def test_wrapper_introspection(loop):
    async def child_coro(fut):
        await fut
        return 1

    async def main():
        fut = loop.create_future()
        coro = child_coro(fut)
        _, task = _eager_start(coro)
        wrapper = task.get_coro()
        assert type(wrapper) is CoroutineWrapper
        assert wrapper.__wrapped__ is coro
        assert asyncio.iscoroutine(wrapper)
        assert wrapper.__name__ == "child_coro"
        assert wrapper.__qualname__ == coro.__qualname__
        assert wrapper.cr_code is coro.cr_code
        assert wrapper.cr_frame is coro.cr_frame
        assert wrapper.cr_running is False
        assert wrapper.cr_await is coro.cr_await is not None
        assert wrapper.cr_suspended is True
        assert repr(wrapper) == repr(coro)
        assert "coro=<test_wrapper_introspection.<locals>.child_coro() " \
               "running at " in repr(task)
        stack = task.get_stack()
        assert [f.f_code.co_name for f in stack] == ["child_coro"]
        await asyncio.sleep(0)  # the Task's own first step: same view
        assert task.get_coro() is wrapper
        assert wrapper.cr_await is coro.cr_await is not None
        fut.set_result(None)
        assert await task == 1
        assert wrapper.cr_frame is None

    on_loop(loop, main)


# ---------------------------------------------------------------------------
# No warnings, no leaks


def test_no_never_awaited_warnings(loop):
    async def main():
        fut = loop.create_future()
        _eager_start(returns(1))
        _eager_start(raises(Boom()))
        _, task = _eager_start(waits(fut))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        on_loop(loop, main)
        gc.collect()
    assert caught == []
    assert loop.fw_exceptions.take() == []


def test_pending_task_dropped_with_the_loop():
    """The loop closed with the Task never stepped: the coroutine (already
    started) is closed when collected, without a warning."""
    loop = asyncio.new_event_loop()
    log = []

    async def child(fut):
        try:
            await fut
        finally:
            log.append("closed")

    async def main():
        _, task = _eager_start(child(loop.create_future()))
        task._log_destroy_pending = False
        return weakref.ref(task)

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ref = loop.run_until_complete(main())
    finally:
        loop.close()
    gc.collect()
    assert ref() is None
    assert log == ["closed"]
    assert caught == []


def test_gc_breaks_cycles_through_the_held_yield():
    """The held yield takes part in GC: a cycle wrapper -> held object ->
    wrapper (through nothing else) is collected."""
    class Held:
        pass

    class Coro(Coroutine):
        ref = None

        def send(self, arg):
            held = Held()
            self.ref = weakref.ref(held)
            return held

        def throw(self, *args):
            raise args[0]

        def close(self):
            pass

        def __await__(self):
            return self

    coro = Coro()
    kind, wrapper = _eager_start(coro, FakeLoop())
    assert kind == "task"
    coro.ref().cycle = wrapper
    del wrapper
    gc.collect()
    assert coro.ref() is None


LEAK_SCRIPT = textwrap.dedent("""
    import asyncio, gc, sys
    from fastwait._fastwait import _eager_start, CoroutineWrapper

    async def ret(v):
        return v

    async def boom():
        raise ValueError("x")

    async def wait_on(fut):
        return await fut

    async def sleepy():
        await asyncio.sleep(0)
        return 1

    async def interrupt():
        raise KeyboardInterrupt

    class FakeLoop:
        def create_task(self, wrapper, *, context):
            return wrapper

    def refuse(loop, coro, **kwargs):
        raise RuntimeError("refused")

    async def batch(n):
        loop = asyncio.get_running_loop()
        fake = FakeLoop()
        for _ in range(n):
            assert _eager_start(ret(1)) == ("returned", 1)
            assert _eager_start(boom())[0] == "raised"
            try:
                _eager_start(interrupt())
            except KeyboardInterrupt:
                pass
        for _ in range(n // 10):
            fut = loop.create_future()
            _, t = _eager_start(wait_on(fut), on_finish=lambda *a: None)
            fut.set_result(2)
            assert await t == 2
            _, t = _eager_start(sleepy())
            assert await t == 1
            fut = loop.create_future()
            _, t = _eager_start(wait_on(fut))
            t.cancel("m")
            try:
                await t
            except asyncio.CancelledError:
                pass
            fut = loop.create_future()
            _, w = _eager_start(wait_on(fut), fake)
            w.close()
            loop.set_task_factory(refuse)
            try:
                _eager_start(wait_on(fut))
            except RuntimeError:
                pass
            loop.set_task_factory(None)

    def measure(n):
        loop = asyncio.new_event_loop()
        loop.run_until_complete(batch(n))
        loop.close()
        gc.collect()
        return sys.getallocatedblocks(), sys.getrefcount(CoroutineWrapper)

    measure(100000)
    measure(100000)
    b0, r0 = measure(100000)
    b1, r1 = measure(100000)
    b2, r2 = measure(200000)
    print(b1 - b0, b2 - b1, r1 - r0, r2 - r0)
""")


def test_no_leaks():
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)  # debug mode: only slower
    out = subprocess.run([sys.executable, "-c", LEAK_SCRIPT], env=env,
                         capture_output=True, text=True, check=True)
    grow1, grow2, refs1, refs2 = map(int, out.stdout.split())
    # A leaked object per call would be 100 000 blocks or more; the
    # allocator's own noise is a few hundred either way.
    assert grow1 < 1000 and grow2 < 1000, out.stdout
    assert refs1 == refs2 == 0, out.stdout  # no wrapper left alive
