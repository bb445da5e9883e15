"""Parity tests for ``shield``: every behaviour, on both implementations.

Each scenario is traced with ``impl.shield`` and with ``asyncio.shield`` on
fresh loops of the active axes (``sparity``); the traces must be equal: the
loop iteration of every event (when the outer future completes, when the
awaiting task resumes), results and exceptions with their identity,
cancelled states and ``cancelling()`` counts, whether the inner's exception
was retrieved, the done-callbacks left on the inner and the outer,
exception-handler calls after gc ("exception was never retrieved",
"Exception in callback ..."), warnings.  Then each test pins what holds on
every supported version explicitly.

The stdlib's shield() is the same code on 3.11-3.13 (3.11 converts the
argument with ``_ensure_future``); the version-dependent parts are those of
ensure_future (no running loop: 3.12+ warn) and of the eager task factory.
"""

import asyncio
import gc
import inspect
import re
import sys
import warnings

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from conftest import (
    LOOP_KIND,
    TASKS_KIND,
    close_loop,
    entry,
    events,
    new_loop,
    normalize_addresses,
    print_traces,
    run,
    run_briefly,
    settle_garbage,
    trace_scenario,
    when,
)
from helpers import (PY314, Boom, GraphWatch, reset_event_loop_policy,
                     stepping_child, worker_outcome)

EAGER = TASKS_KIND == "eager"
PyFuture = asyncio.futures._PyFuture
PyTask = asyncio.tasks._PyTask


# ---------------------------------------------------------------------------
# Harness
# ---------------------------------------------------------------------------

def sparity(impl, scenario, **kwargs):
    """Trace ``scenario`` with ``impl.shield`` and with ``asyncio.shield``
    (each on a fresh loop) and assert the traces are equal; return the
    trace.  The scenario calls ``sc.shield(...)``."""

    def trace(shield):
        def wrapped(sc):
            sc.shield = shield
            scenario(sc)

        return trace_scenario(shield, wrapped, **kwargs)

    got = trace(impl.shield)
    want = trace(asyncio.shield)
    print_traces(got, want, f"{impl.__name__}.shield", "asyncio.shield")
    assert got == want
    return got


def cb_names(fut):
    """The names of ``fut``'s done-callbacks, in order."""
    return [getattr(cb, "__qualname__", repr(cb))
            for cb, _ in (fut._callbacks or ())]


def watch(sc, fut, name):
    """Record the iteration in which ``fut`` becomes done (a probe: no
    done-callback is added) and its state then."""
    sc.label(fut, name)
    if fut.done():
        sc(f"{name}:done-at-watch", sc.state(fut))
        return fut
    probes = sc.loop.fw_probes

    def probe():
        if fut.done():
            probes.remove(probe)
            sc(f"{name}:done", sc.state(fut))

    probes.append(probe)
    return fut


async def child(sc, name, *, steps=0, gate=None, result=None, exc=None):
    """Suspend ``steps`` times (then await ``gate``), then return ``result``
    or raise ``exc``; cancellations are recorded and re-raised."""
    sc(f"{name}:start")
    try:
        for _ in range(steps):
            await asyncio.sleep(0)
        if gate is not None:
            await gate
    except asyncio.CancelledError as e:
        sc(f"{name}:cancelled", e)
        raise
    return worker_outcome(sc, name, exc, result)


async def await_shield(sc, arg, name="main"):
    """``await sc.shield(arg)``, recording the outcome."""
    sc(f"{name}:call")
    try:
        outer = sc.shield(arg)
    except BaseException as e:
        sc(f"{name}:call-raised", e)
        return None
    if outer is not arg:
        watch(sc, outer, "outer")
    sc(f"{name}:shield-returned", "arg" if outer is arg else "new",
       type(outer).__name__, sc.state(outer))
    try:
        r = await outer
    except BaseException as e:
        sc(f"{name}:raised", e)
        return None
    sc(f"{name}:returned", r)
    return r


def after(loop, n, fn, *args):
    """Call ``fn(*args)`` ``n`` loop iterations from now (n=0: now)."""
    if n <= 0:
        fn(*args)
    else:
        loop.call_soon(after, loop, n - 1, fn, *args)


def finals(sc, *futs):
    for f in futs:
        name = sc.label(f)
        sc(f"{name}:final", sc.state(f), cb_names(f))


# ---------------------------------------------------------------------------
# Results, exceptions, cancellation, iterations
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("steps", [0, 1, 3])
def test_pending_task_result(impl, steps):
    def scenario(sc):
        async def main():
            t = sc.loop.create_task(child(sc, "inner", steps=steps,
                                          result=42))
            sc.label(t, "inner")
            watch(sc, t, "inner")
            await await_shield(sc, t)
            finals(sc, t)

        sc.run(main)

    trace = sparity(impl, scenario)
    if steps or not EAGER:
        # The outer completes one iteration after the inner, and the
        # awaiting task resumes one iteration after that.
        assert when(trace, "outer:done") == when(trace, "inner:done") + 1
        assert when(trace, "main:returned") == when(trace, "outer:done") + 1
        assert entry(trace, "main:shield-returned")[0] == "new"
    else:
        # Eager: the task finished inside create_task: the shortcut.
        assert entry(trace, "main:shield-returned")[0] == "arg"
    assert entry(trace, "main:returned") == (42,)


def test_returns_a_plain_future_of_the_loop(impl, loop):
    async def main():
        f = loop.create_future()
        outer = impl.shield(f)
        assert type(outer) is type(loop.create_future())
        assert outer is not f and not outer.done()
        assert outer.get_loop() is loop
        f.set_result("x")
        assert await outer == "x"
        assert impl.shield(outer) is outer  # done now: the shortcut

    run(loop, main)


def test_outer_is_what_the_loops_create_future_returns(impl, loop):
    made = []
    real = loop.create_future

    def create_future():
        fut = real()
        made.append(fut)
        return fut

    loop.create_future = create_future
    try:
        async def main():
            f = real()
            outer = impl.shield(f)
            assert made == [outer]
            f.set_result(1)
            assert await outer == 1

        run(loop, main)
    finally:
        del loop.create_future


@pytest.mark.parametrize("how", ["result", "exception", "cancel"])
def test_already_done_future_is_returned_itself(impl, loop, how):
    async def main():
        f = loop.create_future()
        if how == "result":
            f.set_result(5)
        elif how == "exception":
            f.set_exception(Boom("b"))
        else:
            f.cancel("m")
        assert impl.shield(f) is f
        assert f._callbacks in (None, [])
        if how == "exception":
            f.exception()

    run(loop, main)


def test_coroutine_finishing_eagerly_returns_the_task(impl, loop):
    async def quick():
        return 7

    async def main():
        outer = impl.shield(quick())
        if EAGER:
            # Done inside create_task: the task itself, already done.
            assert isinstance(outer, asyncio.Task) and outer.done()
        else:
            assert type(outer) is type(loop.create_future())
        assert await outer == 7

    run(loop, main)


def test_coroutine_and_awaitable_arguments(impl):
    class Awaitable:
        def __await__(self):
            return (yield from asyncio.sleep(0, "aw").__await__())

    def scenario(sc):
        async def main():
            await await_shield(sc, child(sc, "coro", steps=1, result=1))
            await await_shield(sc, Awaitable(), "aw")
            tasks = [t for t in asyncio.all_tasks() if not t.done()]
            sc("pending-tasks", len(tasks))

        sc.run(main)

    trace = sparity(impl, scenario)
    assert entry(trace, "main:returned") == (1,)
    assert entry(trace, "aw:returned") == ("aw",)


def test_inner_exception_propagates_and_is_retrieved(impl):
    def scenario(sc):
        async def main():
            t = sc.loop.create_task(child(sc, "inner", steps=1,
                                          exc=Boom("x")))
            sc.label(t, "inner")
            watch(sc, t, "inner")
            await await_shield(sc, t)
            finals(sc, t)
            del t

        sc.run(main)

    trace = sparity(impl, scenario)
    assert entry(trace, "main:raised")[0][2] == "inner.exc"
    assert when(trace, "outer:done") == when(trace, "inner:done") + 1
    assert not [e for e in trace if e[1] == "exception-handler"]


def test_inner_exception_outer_not_awaited_is_reported(impl):
    # Nobody awaits the outer: its exception is never retrieved, reported
    # when the outer dies.
    def scenario(sc):
        async def main():
            t = sc.loop.create_task(child(sc, "inner", steps=1,
                                          exc=Boom("x")))
            sc.label(t, "inner")
            outer = sc.shield(t)
            watch(sc, outer, "outer")
            del outer
            for _ in range(4):
                await asyncio.sleep(0)
                sc("tick")
            finals(sc, t)

        sc.run(main)

    trace = sparity(impl, scenario)
    reports = [e for e in trace if e[1] == "exception-handler"]
    assert len(reports) == 1
    assert reports[0][2] == "Future exception was never retrieved"


@pytest.mark.parametrize("kind", ["task", "future"])
def test_unawaited_outer_reports_in_the_stdlibs_iteration(impl, kind):
    """An outer that gets the inner's exception and that nobody holds dies
    when the stdlib's outer callback has run (its handle keeps the closure,
    and so the outer, alive until then): the report comes in that
    iteration, not earlier."""

    def scenario(sc):
        def handler(loop, ctx):
            sc("handler", ctx["message"], ctx.get("exception"))

        sc.loop.set_exception_handler(handler)

        async def main():
            if kind == "task":
                t = sc.loop.create_task(child(sc, "inner", steps=1,
                                              exc=Boom("x")))
            else:
                t = sc.loop.create_future()
                after(sc.loop, 1, t.set_exception, Boom("x"))
            sc.label(t, "inner")
            sc.shield(t)
            for _ in range(5):
                await asyncio.sleep(0)
                sc("tick")
            sc.loop.set_exception_handler(sc.loop.fw_exceptions)
            finals(sc, t)

        sc.run(main)

    trace = sparity(impl, scenario)
    assert [e[2] for e in trace if e[1] == "handler"] == [
        "Future exception was never retrieved"]


@pytest.mark.parametrize("msg", [None, "inner-msg"])
def test_inner_cancelled_cancels_outer_without_message(impl, msg):
    def scenario(sc):
        async def main():
            gate = sc.loop.create_future()
            t = sc.loop.create_task(child(sc, "inner", gate=gate))
            sc.label(t, "inner")
            after(sc.loop, 2, t.cancel, msg)
            watch(sc, t, "inner")
            await await_shield(sc, t)
            finals(sc, t)

        sc.run(main)

    trace = sparity(impl, scenario)
    exc = entry(trace, "main:raised")[0]
    assert exc[0] == "CancelledError" and exc[1] == ()
    assert when(trace, "outer:done") == when(trace, "inner:done") + 1
    assert entry(trace, "outer:done")[0] == ("cancelled",)


def test_cancelled_plain_future_inner(impl, loop):
    async def main():
        f = loop.create_future()
        outer = impl.shield(f)
        f.cancel("fmsg")
        with pytest.raises(asyncio.CancelledError) as info:
            await outer
        assert info.value.args == ()
        assert outer.cancelled()

    run(loop, main)


@pytest.mark.parametrize("how", ["result", "exception", "waiter-cancelled"])
def test_loop_whose_create_future_is_pure_python(impl, how):
    """A loop whose create_future() returns a pure-Python future: the outer
    is that future, and the outer callback runs as in asyncio."""

    def scenario(sc):
        sc.loop.create_future = lambda: PyFuture(loop=sc.loop)

        async def main():
            gate = sc.loop.create_future()
            t = sc.loop.create_task(child(
                sc, "inner", gate=gate, result="r",
                exc=Boom("x") if how == "exception" else None))
            sc.label(t, "inner")
            watch(sc, t, "inner")
            w = sc.loop.create_task(await_shield(sc, t, "waiter"))
            for _ in range(2):
                await asyncio.sleep(0)
            if how == "waiter-cancelled":
                w.cancel()
            gate.set_result(None)
            for _ in range(4):
                await asyncio.sleep(0)
            finals(sc, t)
            del t, w, gate

        try:
            sc.run(main)
        finally:
            del sc.loop.create_future

    trace = sparity(impl, scenario)
    if how != "waiter-cancelled":
        assert when(trace, "outer:done") == when(trace, "inner:done") + 1


@pytest.mark.parametrize("late", ["result", "exception", "cancel"])
@pytest.mark.parametrize("gap", [-1, 0, 1, 2])
def test_outer_cancelled_first_inner_keeps_running(impl, late, gap):
    """The awaiting task is cancelled; the inner is told to finish ``gap``
    iterations later (-1: just before the cancellation, in the same
    iteration).  At -1 the inner finishes in the next iteration before the
    outer's callback runs: the inner callback still runs and, up to 3.13,
    marks the inner's exception retrieved (3.14 no longer does: reported).
    From 0 on, the outer callback has removed it first: the inner's
    exception is never retrieved and is reported."""

    def scenario(sc):
        async def main():
            gate = sc.loop.create_future()
            t = sc.loop.create_task(child(sc, "inner", gate=gate,
                                          result="r",
                                          exc=Boom("late")
                                          if late == "exception" else None))
            sc.label(t, "inner")
            watch(sc, t, "inner")
            waiter = sc.loop.create_task(await_shield(sc, t, "waiter"))
            sc.label(waiter, "waiter")
            for _ in range(2):
                await asyncio.sleep(0)

            def finish():
                sc("finish-inner")
                if late == "cancel":
                    t.cancel("imsg")
                else:
                    gate.set_result(None)

            if gap < 0:
                finish()
            sc("cancel-waiter", waiter.cancel("wmsg"))
            if gap >= 0:
                after(sc.loop, gap, finish)
            for _ in range(6):
                await asyncio.sleep(0)
            sc("inner-callbacks", cb_names(t))
            finals(sc, t)
            del t, waiter, gate

        sc.run(main)

    trace = sparity(impl, scenario)
    raised = entry(trace, "waiter:raised")[0]
    assert raised[0] == "CancelledError"
    reports = [e for e in trace if e[1] == "exception-handler"]
    if late == "exception" and (gap >= 0 or PY314):
        assert len(reports) == 1
        assert reports[0][2] == "Task exception was never retrieved"
    else:
        assert reports == []


def test_outer_cancelled_directly(impl):
    def scenario(sc):
        async def main():
            gate = sc.loop.create_future()
            t = sc.loop.create_task(child(sc, "inner", gate=gate,
                                          exc=Boom("e")))
            sc.label(t, "inner")
            outer = sc.shield(t)
            watch(sc, outer, "outer")
            sc("outer-callbacks", cb_names(outer))
            sc("inner-callbacks", cb_names(t))
            sc("cancel", outer.cancel("omsg"))
            sc("cancel-again", outer.cancel())
            await asyncio.sleep(0)
            sc("inner-callbacks", cb_names(t))
            gate.set_result(None)
            for _ in range(3):
                await asyncio.sleep(0)
            finals(sc, t, outer)
            del t, outer

        sc.run(main)

    trace = sparity(impl, scenario)
    seen = [e[2] for e in trace if e[1] == "inner-callbacks"]
    # 3.14: shield() runs in a task, so the inner is recorded in the call
    # graph and a callback removes that edge.
    assert seen == [(["shield.<locals>._clear_awaited_by_callback"]
                     if PY314 else []) +
                    ["shield.<locals>._inner_done_callback"], []]
    assert entry(trace, "outer-callbacks") == (
        ["shield.<locals>._outer_done_callback"],)


@pytest.mark.parametrize("same_iteration", [False, True])
def test_outer_given_a_result_by_its_user(impl, same_iteration):
    """Someone completes the outer itself.  If the inner finishes before the
    outer's callback ran, the inner callback later calls set_result() on a
    done future: InvalidStateError, reported as an exception in a
    callback."""

    def scenario(sc):
        async def main():
            f = sc.loop.create_future()
            sc.label(f, "inner")
            outer = sc.shield(f)
            watch(sc, outer, "outer")
            outer.set_result("mine")
            if not same_iteration:
                await asyncio.sleep(0)  # the outer callback runs
            f.set_result("r")
            for _ in range(4):
                await asyncio.sleep(0)
            sc("outer-result", outer.result())
            finals(sc, f, outer)
            del f, outer

        sc.run(main)

    trace = sparity(impl, scenario)
    reports = [e for e in trace if e[1] == "exception-handler"]
    if same_iteration:
        assert len(reports) == 1
        message = reports[0][2]
        assert message.startswith("Exception in callback ")
        assert "shield.<locals>._inner_done_callback" in message
        assert reports[0][3][0] == "InvalidStateError"
    else:
        assert reports == []


def test_outer_given_an_exception_by_its_user(impl, loop):
    async def main():
        gate = loop.create_future()

        async def inner_fn():
            await gate
            raise Boom("late")

        t = loop.create_task(inner_fn())
        outer = impl.shield(t)
        outer.set_exception(KeyError("k"))
        await asyncio.sleep(0)
        assert t._callbacks in (None, [])  # the inner callback was removed
        gate.set_result(None)
        await asyncio.sleep(0)
        assert t.done()
        with pytest.raises(KeyError):
            await outer

    run(loop, main)
    # The inner's exception was never retrieved.
    del main
    records = loop.fw_exceptions.take()
    assert [r["message"] for r in records] == [
        "Task exception was never retrieved"]


def test_shield_of_a_shield(impl):
    def scenario(sc):
        async def main():
            t = sc.loop.create_task(child(sc, "inner", steps=2, result=3))
            sc.label(t, "inner")
            o1 = sc.shield(t)
            sc.label(o1, "o1")
            watch(sc, t, "inner")
            watch(sc, o1, "o1")
            await await_shield(sc, o1)
            finals(sc, t, o1)

        sc.run(main)

    trace = sparity(impl, scenario)
    assert when(trace, "outer:done") == when(trace, "o1:done") + 1


def test_many_shields_of_one_task(impl):
    def scenario(sc):
        async def main():
            t = sc.loop.create_task(child(sc, "inner", steps=1, result=9))
            sc.label(t, "inner")
            outers = [sc.shield(t) for _ in range(3)]
            for i, o in enumerate(outers):
                watch(sc, o, f"o{i}")
            outers[1].cancel()
            sc("inner-callbacks", cb_names(t))
            for _ in range(3):
                await asyncio.sleep(0)
            finals(sc, t, *outers)

        sc.run(main)

    sparity(impl, scenario)


def test_pure_python_future_and_task_inner(impl):
    def scenario(sc):
        async def main():
            f = PyFuture(loop=sc.loop)
            sc.label(f, "pyfut")
            after(sc.loop, 2, f.set_result, "py")
            watch(sc, f, "pyfut")
            await await_shield(sc, f, "f")
            t = PyTask(child(sc, "pytask", steps=1, exc=Boom("p")),
                       loop=sc.loop)
            sc.label(t, "pytask")
            watch(sc, t, "pytask")
            await await_shield(sc, t, "t")
            finals(sc, f, t)

        sc.run(main)

    sparity(impl, scenario)


def test_cancel_of_awaiting_task_counts(impl):
    def scenario(sc):
        async def main():
            gate = sc.loop.create_future()
            t = sc.loop.create_task(child(sc, "inner", gate=gate, result=1))
            sc.label(t, "inner")

            async def waiter():
                try:
                    return await sc.shield(t)
                except asyncio.CancelledError as e:
                    sc("waiter-cancelled", e,
                       asyncio.current_task().cancelling())
                    raise

            w = sc.loop.create_task(waiter())
            sc.label(w, "waiter")
            await asyncio.sleep(0)
            w.cancel("a")
            w.cancel("b")
            await asyncio.sleep(0)
            gate.set_result(None)
            await asyncio.sleep(0)
            sc("waiter", sc.state(w), "inner", sc.state(t))
            await asyncio.sleep(0)
            sc("inner", sc.state(t))

        sc.run(main)

    sparity(impl, scenario)


# ---------------------------------------------------------------------------
# Callbacks and reprs
# ---------------------------------------------------------------------------

_TASK_NAME = re.compile(r"name='[^']*'")


def norm(text):
    return _TASK_NAME.sub("name=?", normalize_addresses(text))


def test_reprs_list_the_stdlib_callbacks(impl, loop_factory):
    """repr(inner) and repr(outer) read as with the stdlib, source location
    of the closures included."""

    def reprs(shield):
        loop = loop_factory()
        out = []

        async def main():
            gate = loop.create_future()

            async def inner_fn():
                await gate
                return 1

            t = loop.create_task(inner_fn(), name="inner")
            await asyncio.sleep(0)
            outer = shield(t)
            out.append(norm(repr(t)))
            out.append(norm(repr(outer)))
            outer.cancel()
            await asyncio.sleep(0)
            out.append(norm(repr(t)))
            gate.set_result(None)
            await t

        run(loop, main)
        return out

    got, want = reprs(impl.shield), reprs(asyncio.shield)
    assert got == want
    assert "shield.<locals>._inner_done_callback() at " in want[0]
    assert "tasks.py:" in want[0]
    assert "shield.<locals>._outer_done_callback() at " in want[1]


def test_exception_in_callback_message_matches(impl, loop_factory):
    def message(shield):
        loop = loop_factory()

        async def main():
            f = loop.create_future()
            outer = shield(f)
            outer.set_result(0)
            f.set_result(1)  # the inner callback runs after the outer's
            for _ in range(3):
                await asyncio.sleep(0)

        run(loop, main)
        records = loop.fw_exceptions.take()
        assert len(records) == 1
        return (norm(records[0]["message"]),
                type(records[0]["exception"]).__name__)

    got, want = message(impl.shield), message(asyncio.shield)
    assert got == want
    assert want[1] == "InvalidStateError"
    assert "shield.<locals>._inner_done_callback" in want[0]


# ---------------------------------------------------------------------------
# Bad input, loops
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("arg", [1, None, "x", (), object()])
def test_not_awaitable(impl, loop, arg):
    async def main():
        with pytest.raises(TypeError) as info:
            impl.shield(arg)
        assert str(info.value) == (
            "An asyncio.Future, a coroutine or an awaitable is required")

    run(loop, main)


@pytest.mark.parametrize("args,kwargs", [
    ((), {}), ((1, 2), {}), ((), {"aw": 1}), ((1,), {"arg": 1}),
])
def test_argument_binding_errors(impl, args, kwargs):
    with pytest.raises(TypeError) as got:
        impl.shield(*args, **kwargs)
    with pytest.raises(TypeError) as want:
        asyncio.shield(*args, **kwargs)
    assert str(got.value) == str(want.value)


def test_keyword_argument(impl, loop):
    async def main():
        f = loop.create_future()
        outer = impl.shield(arg=f)
        f.set_result(2)
        assert await outer == 2

    run(loop, main)


def test_signature(impl):
    assert str(inspect.signature(impl.shield)) == "(arg)"


def test_future_of_another_loop(impl, loop_factory):
    def outcome(shield):
        loop = loop_factory()
        other = loop_factory()
        out = []

        async def main():
            f = other.create_future()
            outer = shield(f)
            out.append(outer.get_loop() is other)
            out.append(type(outer) is type(other.create_future()))
            try:
                await outer
            except RuntimeError as e:
                out.append(norm(str(e)))
            f.cancel()

        run(loop, main)
        run(other, asyncio.sleep(0))
        return out

    got, want = outcome(impl.shield), outcome(asyncio.shield)
    assert got == want
    assert want[:2] == [True, True]


def test_no_running_loop_with_a_future(impl, loop):
    f = loop.create_future()
    outer = impl.shield(f)
    assert outer.get_loop() is loop
    f.set_result(1)
    assert loop.run_until_complete(outer) == 1


def test_no_running_loop_with_a_coroutine(impl, event_loop_policy_guard):
    """Outside a loop, ensure_future() takes the policy's loop: 3.12+ warn
    'There is no current event loop' (at the caller's line) and make one;
    3.11 makes one silently."""

    async def coro():
        return "c"

    def attempt(shield):
        reset_event_loop_policy()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            c = coro()
            try:
                outer = shield(c)
            except RuntimeError as e:
                # 3.14: get_event_loop() raises before create_task, which
                # leaves the coroutine as it was
                state = inspect.getcoroutinestate(c)
                c.close()
                return ((type(e).__name__, e.args, state),
                        [(w.category, str(w.message), w.filename)
                         for w in caught])
        loop = outer.get_loop()
        try:
            result = loop.run_until_complete(outer)
        finally:
            loop.close()
            asyncio.set_event_loop(None)
        return result, [(w.category, str(w.message), w.filename)
                        for w in caught]

    got, want = attempt(impl.shield), attempt(asyncio.shield)
    assert got == want
    if PY314:
        assert want == (("RuntimeError", (
            "There is no current event loop in thread 'MainThread'.",),
            inspect.CORO_CREATED), [])
        return
    if sys.version_info >= (3, 12):
        assert want[1] == [(DeprecationWarning,
                            "There is no current event loop", __file__)]
    else:
        assert want[1] == []
    assert want[0] == "c"


def test_coroutine_closed_when_create_task_fails(impl,
                                                 event_loop_policy_guard):
    """A closed current loop: create_task raises RuntimeError and the
    coroutine is closed, as ensure_future closes it."""

    async def coro():
        return 1

    closed = new_loop()
    closed.close()
    asyncio.set_event_loop(closed)
    try:
        c = coro()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with pytest.raises(RuntimeError, match="Event loop is closed"):
                impl.shield(c)
        assert inspect.getcoroutinestate(c) == inspect.CORO_CLOSED
    finally:
        asyncio.set_event_loop(None)


def test_coroutine_not_closed_on_other_factory_errors(impl, loop):
    async def coro():
        return 1

    def factory(loop, coro, **kwargs):
        raise ValueError("no tasks today")

    async def main():
        c = coro()
        loop.set_task_factory(factory)
        try:
            with pytest.raises(ValueError, match="no tasks today"):
                impl.shield(c)
        finally:
            loop.set_task_factory(original)
        assert inspect.getcoroutinestate(c) == inspect.CORO_CREATED
        c.close()

    original = loop.get_task_factory()
    run(loop, main)


def test_non_asyncio_future_and_callbacks_on_outer(impl):
    """Callbacks that compare with == in an unusual way stay untouched."""
    calls = []

    class EqEverything:
        def __init__(self, tag):
            self.tag = tag

        def __eq__(self, other):
            calls.append(self.tag)
            return False

        __hash__ = object.__hash__

        def __call__(self, fut):
            calls.append(("called", self.tag))

    def scenario(sc):
        async def main():
            t = sc.loop.create_task(child(sc, "inner", steps=1, result=1))
            sc.label(t, "inner")
            outer = sc.shield(t)
            outer.add_done_callback(EqEverything("a"))
            watch(sc, outer, "outer")
            r = await outer
            await asyncio.sleep(0)
            sc("returned", r, list(calls))
            calls.clear()

        sc.run(main)

    trace = sparity(impl, scenario)
    assert entry(trace, "returned")[1] == [("called", "a")]


# ---------------------------------------------------------------------------
# Differential: random inner behaviours and outer cancellations
# ---------------------------------------------------------------------------

inner_specs = st.fixed_dictionaries({
    "kind": st.sampled_from(["task", "task", "future", "pyfuture", "coro"]),
    "steps": st.integers(0, 4),
    "outcome": st.sampled_from(["return", "raise", "cancel", "self_cancel"]),
})
outer_specs = st.one_of(
    st.none(),
    st.tuples(st.sampled_from(["cancel_waiter", "cancel_outer",
                               "result_outer"]),
              st.integers(0, 5)),
)


def differential_scenario(inner, outer, awaited):
    def scenario(sc):
        async def main():
            loop = sc.loop
            k = inner["steps"]
            outcome = inner["outcome"]
            if inner["kind"] in ("future", "pyfuture"):
                cls = asyncio.Future if inner["kind"] == "future" else PyFuture
                arg = cls(loop=loop)

                def resolve():
                    if arg.done():
                        return
                    if outcome == "return":
                        arg.set_result("v")
                    elif outcome == "raise":
                        exc = Boom("f")
                        sc.label(exc, "inner.exc")
                        arg.set_exception(exc)
                    else:
                        arg.cancel("fmsg")
                    sc("resolved", outcome)

                after(loop, k, resolve)
                inner_fut = arg
            else:
                async def body():
                    sc("inner:start")
                    for _ in range(k):
                        await asyncio.sleep(0)
                    if outcome == "raise":
                        exc = Boom("t")
                        sc.label(exc, "inner.exc")
                        raise exc
                    if outcome == "self_cancel":
                        raise asyncio.CancelledError("self")
                    if outcome == "cancel":
                        asyncio.current_task().cancel("ext")
                        await asyncio.sleep(0)
                    sc("inner:return")
                    return "v"

                arg = body()
                inner_fut = None
                if inner["kind"] == "task":
                    arg = inner_fut = loop.create_task(arg)

            holder = {}

            async def waiter():
                try:
                    outer_fut = sc.shield(arg)
                except BaseException as e:  # pragma: no cover
                    sc("shield-raised", e)
                    return
                holder["outer"] = outer_fut
                sc("shield-returned",
                   "arg" if outer_fut is arg else "new")
                if outer_fut is not arg:
                    sc.label(outer_fut, "outer")
                    watch(sc, outer_fut, "outer")
                if not awaited:
                    return
                try:
                    sc("waiter:returned", await outer_fut)
                except BaseException as e:
                    sc("waiter:raised", e)

            w = loop.create_task(waiter())
            sc.label(w, "waiter")
            if inner_fut is not None:
                sc.label(inner_fut, "inner")
                watch(sc, inner_fut, "inner")
            if outer is not None:
                what, j = outer

                def act():
                    o = holder.get("outer")
                    if what == "cancel_waiter":
                        sc("act", what, w.cancel("wmsg"))
                    elif o is not None and not o.done():
                        if what == "cancel_outer":
                            sc("act", what, o.cancel("omsg"))
                        else:
                            o.set_result("mine")
                            sc("act", what)

                after(loop, j, act)
            for _ in range(12):
                await asyncio.sleep(0)
            o = holder.pop("outer", None)
            if o is not None and o is not inner_fut:
                sc("outer:final", sc.state(o), cb_names(o))
            if inner_fut is not None:
                sc("inner:final", sc.state(inner_fut), cb_names(inner_fut))
            del o, inner_fut, arg, w, holder

        sc.run(main)

    return scenario


@given(inner=inner_specs, outer=outer_specs, awaited=st.booleans())
def test_shield_matches_stdlib(inner, outer, awaited):
    import fastwait

    note(f"inner={inner} outer={outer} awaited={awaited}")
    sparity(fastwait, differential_scenario(inner, outer, awaited))
    settle_garbage()


# ---------------------------------------------------------------------------
# 3.14: call-graph edges (asyncio.capture_call_graph)
# ---------------------------------------------------------------------------

def _shield_graph(shield, loop_factory, case):
    loop = loop_factory()
    gw = GraphWatch(loop)

    child = stepping_child

    async def waiter(outer):
        return await outer

    async def main():
        me = gw.track("main", asyncio.current_task())
        inner = gw.track("inner", loop.create_task(
            child(3, Boom("x") if case == "inner-fails" else None)))
        gw.each_iteration(8)
        if case == "outside-task":
            made = []
            loop.call_soon(lambda: made.append(shield(inner)))
            await asyncio.sleep(0)
            outer = made[0]
        else:
            outer = shield(inner)
        gw.track("outer", outer)
        gw.snap("after-call")
        if case == "outer-cancelled":
            after(loop, 1, outer.cancel)
        elif case == "waiter-cancelled":
            w = gw.track("waiter", loop.create_task(waiter(outer)))
            after(loop, 1, w.cancel)
        elif case == "main-cancelled":
            after(loop, 1, me.cancel)
        try:
            out = ("result", await outer)
        except BaseException as e:  # noqa: B902 - recorded
            out = ("raised", type(e).__name__, e.args)
        gw.snap("after-await")
        for _ in range(6):
            await asyncio.sleep(0)
        gw.snap("end")
        if inner.done() and not inner.cancelled():
            inner.exception()
        gw.release()
        return out, cb_names(inner)

    return run(loop, main), gw.log


@pytest.mark.parametrize("case", ["result", "inner-fails", "outer-cancelled",
                                  "waiter-cancelled", "main-cancelled",
                                  "outside-task"])
def test_call_graph_edges(impl, loop_factory, case):
    """3.14: shield() called in a task records the inner as awaited by that
    task; a callback on the inner removes the edge when the inner finishes,
    the outer's callback removes it (and that callback) when the outer
    finishes first.  From a plain callback (no task) nothing is recorded
    and the inner gets no such callback."""
    got = _shield_graph(impl.shield, loop_factory, case)
    want = _shield_graph(asyncio.shield, loop_factory, case)
    assert got == want
    if not PY314:
        return
    log = dict(want[1])
    assert dict(log["after-call"])["inner"] == (
        [] if case == "outside-task" else ["main"])
    assert dict(log["end"])["inner"] == []
