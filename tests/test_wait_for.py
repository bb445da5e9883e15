"""Parity tests for ``wait_for``: both implementations, every behaviour.

Each scenario is traced with ``impl.wait_for`` (and ``impl.timeout`` where a
scenario nests scopes) and with asyncio's own on fresh loops (``tparity``
from test_timeout.py); the traces must be equal: the loop iteration of every
event, results and exceptions with their identity and chains, which task
runs the awaitable, ``cancelling()`` counts, states of the inner futures,
exception-handler calls after gc, warnings.  Then each test pins what holds
on every supported version; where the versions differ (3.11's wait_for is a
different algorithm: the awaitable runs in a task of its own, a waiter
future and a timer handle; 3.12+ run it in the caller's task inside
``timeouts.timeout``), the expectation is computed from the running version.

Timing as in test_timeout.py: the virtual clock, stepped (``step=``) where
the exact iteration of an expiry matters, so that an implementation that
shares one loop timer between scopes (and may wake an idle loop at a removed
deadline) cannot shift the iteration numbers.
"""

import asyncio
import gc
import warnings

import pytest

from conftest import LOOP_KIND, PY, TASKS_KIND, entry, run, when
from helpers import creation_site, strip_origin
from test_timeout import (
    Boom,
    MyCancelled,
    cause_of,
    ctx_of,
    exc_info,
    hang,
    me,
    now,
    scoped,
    step,
    manual,
    tparity,
)

EAGER = TASKS_KIND == "eager"
PY311 = PY < (3, 12)
NAN = float("nan")
INF = float("inf")


async def inner(sc, name="inner", *, sleeps=0, sleep_t=None, result="r",
                exc=None, catch=False, after_catch=None):
    """The awaitable: records the task it runs in (``caller`` or another),
    suspends (``sleeps`` times sleep(0), then sleep(``sleep_t``)), returns
    ``result`` or raises ``exc``.  A CancelledError is recorded and
    re-raised unless ``catch`` (then ``after_catch`` is returned)."""
    sc(f"{name}:start", "caller" if me() is sc.caller else "other-task",
       me().cancelling())
    try:
        for _ in range(sleeps):
            await asyncio.sleep(0)
        if sleep_t is not None:
            await asyncio.sleep(sleep_t)
    except asyncio.CancelledError as e:
        sc.label(e, f"{name}.cancel")
        sc(f"{name}:cancelled", e, me().cancelling(), now(sc))
        if not catch:
            raise
        sc(f"{name}:suppressed", after_catch)
        return after_catch
    if exc is not None:
        sc.label(exc, f"{name}.exc")
        sc(f"{name}:raise", exc)
        raise exc
    sc(f"{name}:return", result, now(sc))
    return result


async def call(sc, aw, timeout, name="wf", reraise=False):
    """``await sc.impl.wait_for(aw, timeout)``; record the outcome with the
    caller's cancelling() count and the time (an exception is returned,
    or re-raised with ``reraise``)."""
    sc(f"{name}:call", me().cancelling())
    try:
        r = await sc.impl.wait_for(aw, timeout)
    except BaseException as e:
        sc(f"{name}:raised", e, me().cancelling(), now(sc))
        if reraise:
            raise
        return e
    sc(f"{name}:returned", r, me().cancelling(), now(sc))
    return r


def run_main(sc, main):
    """Run ``main`` as the caller task (``sc.caller``)."""

    async def wrapper():
        sc.caller = me()
        return await main()

    t = sc.loop.create_task(wrapper())
    sc.label(t, "caller")
    sc.run(t)
    sc("caller:final", sc.state(t))


# ---------------------------------------------------------------------------
# Outcomes
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("timeout", [None, 10, INF])
@pytest.mark.parametrize("sleeps", [0, 2])
def test_result(impl, timeout, sleeps):
    """The result, and where the coroutine runs: inline with no timeout;
    with a timeout in a task of its own on 3.11, in the caller's task on
    3.12+."""

    def scenario(sc):
        async def main():
            await call(sc, inner(sc, sleeps=sleeps), timeout)

        run_main(sc, main)

    trace = tparity(impl, scenario)
    assert entry(trace, "wf:returned")[:2] == ("r", 0)
    where = entry(trace, "inner:start")[0]
    assert where == ("other-task" if PY311 and timeout is not None
                     else "caller")


def test_result_on_the_active_loop(impl):
    def scenario(sc):
        async def main():
            await call(sc, inner(sc, sleeps=3), 1000)
            f = sc.loop.create_future()
            sc.loop.call_soon(f.set_result, "f")
            await call(sc, f, 1000, "wf2")

        run_main(sc, main)

    trace = tparity(impl, scenario, virtual=False)
    assert entry(trace, "wf:returned")[:2] == ("r", 0)
    assert entry(trace, "wf2:returned")[:2] == ("f", 0)


@pytest.mark.parametrize("timeout", [None, 10])
def test_exception(impl, timeout):
    def scenario(sc):
        async def main():
            await call(sc, inner(sc, sleeps=1, exc=Boom("b")), timeout)

        run_main(sc, main)

    trace = tparity(impl, scenario)
    raised = entry(trace, "wf:raised")
    assert raised[0][2] == "inner.exc"
    assert raised[1] == 0


@pytest.mark.parametrize("timeout", [None, 10])
def test_inner_raising_cancelled_error(impl, timeout):
    """The awaitable raises CancelledError by itself: it propagates (3.11:
    from the inner task, as that task's cancellation)."""

    def scenario(sc):
        async def main():
            await call(sc, inner(sc, sleeps=1,
                                 exc=asyncio.CancelledError("own")), timeout)

        run_main(sc, main)

    trace = tparity(impl, scenario)
    assert entry(trace, "wf:raised")[0][0] == "CancelledError"


@pytest.mark.parametrize("kind", ["future", "task", "pending-then-result"])
def test_futures_and_tasks(impl, kind):
    def scenario(sc):
        async def main():
            if kind == "future":
                f = sc.loop.create_future()
                sc.loop.call_later(1, f.set_result, "f")
            elif kind == "task":
                f = sc.loop.create_task(inner(sc, sleep_t=1))
            else:
                f = sc.loop.create_future()
                sc.loop.call_soon(f.set_result, "soon")
            sc.label(f, "f")
            await call(sc, f, 5)
            sc("f:final", sc.state(f))

        run_main(sc, main)

    trace = tparity(impl, scenario, step=0.5)
    assert entry(trace, "wf:returned")[1] == 0


# ---------------------------------------------------------------------------
# Expiry
# ---------------------------------------------------------------------------

def test_expiry_raises_timeout_error_from_the_cancelled_error(impl):
    def scenario(sc):
        async def main():
            e = await call(sc, inner(sc, sleep_t=10), 2)
            sc("chain", e.__cause__ is e.__context__, e.__suppress_context__)

        run_main(sc, main)

    trace = tparity(impl, scenario, step=0.5)
    raised = entry(trace, "wf:raised")
    assert raised[0][:2] == ("TimeoutError", ())
    assert cause_of(raised[0]) == ctx_of(raised[0]) == "inner.cancel"
    assert raised[1] == 0
    # 3.11: the inner task is cancelled, finishes, its done-callback
    # releases the waiter, then wait_for resumes: two more iterations.
    gap = 2 if PY311 else 0
    assert when(trace, "wf:raised") == when(trace, "inner:cancelled") + gap
    assert entry(trace, "chain") == (True, True)


def test_expiry_of_a_future(impl):
    def scenario(sc):
        async def main():
            f = sc.loop.create_future()
            sc.label(f, "f")
            await call(sc, f, 1)
            sc("f:final", sc.state(f))

        run_main(sc, main)

    trace = tparity(impl, scenario, step=0.5)
    assert entry(trace, "wf:raised")[0][0] == "TimeoutError"
    assert entry(trace, "f:final") == (("cancelled",),)


def test_expiry_when_the_inner_suppresses_the_cancellation(impl):
    """The inner code swallows the CancelledError and returns a value:
    wait_for returns it (3.11 too, bpo-40607)."""

    def scenario(sc):
        async def main():
            await call(sc, inner(sc, sleep_t=10, catch=True,
                                 after_catch="late"), 1)

        run_main(sc, main)

    trace = tparity(impl, scenario, step=0.5)
    assert entry(trace, "wf:returned")[:2] == ("late", 0)


def test_expiry_when_the_inner_raises_instead(impl):
    """The inner code turns the cancellation into another exception: it
    propagates (3.13 splices a TimeoutError into its context chain)."""

    def scenario(sc):
        async def body():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError as e:
                sc.label(e, "inner.cancel")
                raise KeyError("k")

        async def main():
            e = await call(sc, body(), 1)
            sc("ctx", e.__context__)

        run_main(sc, main)

    trace = tparity(impl, scenario, step=0.5)
    assert entry(trace, "wf:raised")[0][0] == "KeyError"
    ctx = entry(trace, "ctx")[0]
    if PY >= (3, 13):
        assert ctx[0] == "TimeoutError"
    else:
        assert ctx[2] == "inner.cancel"


def test_expiry_when_the_inner_suppresses_and_keeps_waiting(impl):
    """The inner swallows the cancellation and waits again; wait_for waits
    for it (3.11: _cancel_and_wait) and returns its value."""

    def scenario(sc):
        async def body():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                sc("inner:swallowed", now(sc))
            await asyncio.sleep(2)
            sc("inner:done", now(sc))
            return "eventually"

        async def main():
            await call(sc, body(), 1)

        run_main(sc, main)

    trace = tparity(impl, scenario, step=0.5)
    assert entry(trace, "wf:returned")[0] == "eventually"


# Timers due at exactly the same loop time run in heap order, which depends on
# every timer in the loop's heap; an implementation keeping its deadlines
# behind one loop timer may order exact ties differently (README, difference
# 5).  The tests below make the deadline and the inner's timer due in the
# same iteration but a quarter of a clock resolution apart, so that their
# order is the order of their times.
TIE_BREAKS = ["deadline-first", "inner-first"]


def tie(sc, how):
    """A quarter of the clock resolution, signed: added to the inner's
    sleep, it makes the deadline (``deadline-first``) or the inner's timer
    (``inner-first``) the earlier of two timers due in one iteration."""
    eps = sc.loop._clock_resolution / 4
    return eps if how == "deadline-first" else -eps


@pytest.mark.parametrize("how", TIE_BREAKS)
def test_deadline_and_completion_in_the_same_iteration(impl, how):
    """The inner's own timer and the deadline are due in one iteration."""

    def scenario(sc):
        d = tie(sc, how)

        async def main():
            await call(sc, inner(sc, sleep_t=2 + d), 2)
            await call(sc, inner(sc, "inner2", sleep_t=2.25 + d), 2, "wf2")

        run_main(sc, main)

    tparity(impl, scenario, step=0.5)


@pytest.mark.parametrize("timeout", [0, -1, -INF])
@pytest.mark.parametrize("kind", ["coro", "coro-quick", "pending-future",
                                  "done-future", "failed-future",
                                  "cancelled-future", "pending-task",
                                  "done-task"])
def test_non_positive_timeout(impl, timeout, kind):
    """timeout <= 0: ensure_future(); an already-done future gives its
    outcome; else it is cancelled and awaited (a coroutine's task is
    cancelled before it starts, unless an eager task factory ran it) and
    TimeoutError is raised from its CancelledError."""

    def scenario(sc):
        async def main():
            if kind == "coro":
                aw = inner(sc, sleeps=1)
            elif kind == "coro-quick":
                aw = inner(sc)
            elif kind.endswith("future"):
                aw = sc.loop.create_future()
                if kind == "done-future":
                    aw.set_result("done")
                elif kind == "failed-future":
                    aw.set_exception(Boom("f"))
                elif kind == "cancelled-future":
                    aw.cancel("fmsg")
            else:
                aw = sc.loop.create_task(inner(sc, sleeps=1))
                if kind == "done-task":
                    await asyncio.sleep(0)
                    await asyncio.sleep(0)
                    await asyncio.sleep(0)
            sc.label(aw, "aw")
            await call(sc, aw, timeout)
            if asyncio.isfuture(aw):
                sc("aw:final", sc.state(aw))

        run_main(sc, main)

    trace = tparity(impl, scenario)
    raised = [e for e in trace if e[1] == "wf:raised"]
    started = any(e[1] == "inner:start" for e in trace)
    if kind == "coro":
        assert started == EAGER
        assert raised[0][2][0] == "TimeoutError"
        assert cause_of(raised[0][2]) is not None
    elif kind == "coro-quick":
        if EAGER:
            assert entry(trace, "wf:returned")[0] == "r"
        else:
            assert not started
            assert raised[0][2][0] == "TimeoutError"
    elif kind == "done-future":
        assert entry(trace, "wf:returned")[0] == "done"
    elif kind == "failed-future":
        assert raised[0][2][:2] == ("Boom", ("f",))
    elif kind == "cancelled-future":
        assert raised[0][2][:2] == ("CancelledError", ("fmsg",))
    elif kind == "pending-future":
        assert raised[0][2][0] == "TimeoutError"
        assert entry(trace, "aw:final") == (("cancelled",),)
        assert when(trace, "wf:raised") == when(trace, "wf:call") + 2


def test_non_positive_timeout_on_the_active_loop(impl):
    def scenario(sc):
        async def main():
            await call(sc, inner(sc, sleeps=2), 0)
            f = sc.loop.create_future()
            sc.label(f, "f")
            await call(sc, f, -1, "wf2")
            sc("f:final", sc.state(f))

        run_main(sc, main)

    trace = tparity(impl, scenario, virtual=False)
    assert entry(trace, "wf2:raised")[0][0] == "TimeoutError"


def test_non_positive_timeout_inner_suppresses(impl):
    """timeout 0 on a task that swallows the cancellation and returns:
    its result is returned."""

    def scenario(sc):
        async def main():
            t = sc.loop.create_task(inner(sc, sleeps=3, catch=True,
                                          after_catch="kept"))
            await asyncio.sleep(0)
            await call(sc, t, 0)

        run_main(sc, main)

    trace = tparity(impl, scenario)
    assert entry(trace, "wf:returned")[0] == "kept"


HAS_GRAPH = hasattr(asyncio, "capture_call_graph")


def graph_of(sc, fut):
    """What the 3.14 call graph records for ``fut``: the labels of the
    futures awaiting it (``_asyncio_awaited_by``) and, through
    ``asyncio.capture_call_graph(fut)``, each awaiter's frames of this test
    module (asyncio's and fastwait's own frames differ: C has none)."""
    if not HAS_GRAPH:
        return "no-graph"
    g = asyncio.capture_call_graph(fut)
    assert g.future is fut and set(a.future for a in g.awaited_by) == set(
        fut._asyncio_awaited_by or ())
    return sorted(
        (sc.label(a.future),
         tuple(e.frame.f_code.co_name for e in a.call_stack
               if e.frame.f_code.co_filename == __file__))
        for a in g.awaited_by)


@pytest.mark.parametrize("kind", ["pending-task", "pending-future",
                                  "suppressing-task"])
def test_non_positive_timeout_call_graph_edge(impl, kind):
    """3.14+ (gh-157058): while wait_for(aw, 0) cancels a pending future
    and waits for it (``_cancel_and_wait``), the future is recorded as
    awaited by the calling task -- from the cancel() on until the caller
    resumes -- so capture_call_graph() sees the caller; the edge is gone
    afterwards.  Before 3.14 there is no call graph."""

    def scenario(sc):
        async def graph_inner(name, catch=False):
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                sc(f"{name}:cancelled", graph_of(sc, me()))
                await asyncio.sleep(0)
                sc(f"{name}:cancelled+1", graph_of(sc, me()))
                if not catch:
                    raise
            return "kept"

        async def caller_main():
            if kind.endswith("task"):
                aw = sc.loop.create_task(
                    graph_inner("inner", catch=kind.startswith("supp")))
                await asyncio.sleep(0)
            else:
                aw = sc.loop.create_future()
            sc.label(aw, "aw")
            sc("aw:before", graph_of(sc, aw))

            def probe():
                sc("aw:probe", graph_of(sc, aw))

            sc.loop.fw_probes.append(probe)
            try:
                await call(sc, aw, 0)
            finally:
                sc.loop.fw_probes.remove(probe)
            sc("aw:after", graph_of(sc, aw), sc.state(aw))

        run_main(sc, caller_main)

    trace = tparity(impl, scenario)
    probes = [e[2] for e in trace if e[1] == "aw:probe"]
    assert entry(trace, "aw:before") == ([] if HAS_GRAPH else "no-graph",)
    assert entry(trace, "aw:after")[0] == ([] if HAS_GRAPH else "no-graph")
    if HAS_GRAPH:
        edge = [("caller", ("call", "caller_main", "wrapper"))]
        assert probes and all(p == edge for p in probes)
        if kind.endswith("task"):
            assert entry(trace, "inner:cancelled") == (edge,)
            assert entry(trace, "inner:cancelled+1") == (edge,)
    else:
        assert set(probes) == {"no-graph"}
    if kind == "suppressing-task":
        assert entry(trace, "wf:returned")[0] == "kept"
    else:
        assert entry(trace, "wf:raised")[0][0] == "TimeoutError"


@pytest.mark.parametrize("timeout", [None, 10])
def test_call_graph_while_waiting(impl, timeout):
    """3.14+: while the caller waits in wait_for(task, timeout) (in a scope,
    or inline), the task it awaits records the caller in the call graph
    (the caller's Task does, for the future it blocks on), with the same
    frames of this module; the edge goes when the caller resumes."""

    def scenario(sc):
        async def worker():
            await asyncio.sleep(0)
            sc("worker:graph", graph_of(sc, me()))
            return "done"

        async def caller_main():
            t = sc.loop.create_task(worker())
            sc.label(t, "worker")
            await call(sc, t, timeout)
            sc("worker:after", graph_of(sc, t))

        run_main(sc, caller_main)

    trace = tparity(impl, scenario)
    if HAS_GRAPH:
        assert entry(trace, "worker:graph") == (
            [("caller", ("call", "caller_main", "wrapper"))],)
        assert entry(trace, "worker:after") == ([],)
    else:
        assert entry(trace, "worker:graph") == ("no-graph",)


# ---------------------------------------------------------------------------
# The caller is cancelled
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("timeout", [None, 10])
@pytest.mark.parametrize("catch", [False, True])
def test_outer_cancel_while_waiting(impl, timeout, catch):
    """The caller is cancelled while waiting: the inner is cancelled.
    If the inner swallows it and returns: 3.12+ (and timeout=None
    everywhere) return the value with cancelling() still 1; 3.11 with a
    timeout waits for the inner task and re-raises CancelledError."""

    def scenario(sc):
        manual(sc)

        async def main():
            await call(sc, inner(sc, sleep_t=5, catch=catch,
                                 after_catch="swallowed"), timeout)

        caller = sc.loop.create_task(main())
        sc.caller = caller
        step(sc, 0, 3)
        sc("cancel", caller.cancel("outer"), caller.cancelling())
        step(sc, 0, 4)
        sc("caller:done", caller.done())
        if not caller.done():
            step(sc, 10.0, 3)

    trace = tparity(impl, scenario)
    got = [e for e in trace if e[1] in ("wf:returned", "wf:raised")][0]
    if catch and not (PY311 and timeout is not None):
        assert got[1:4] == ("wf:returned", "swallowed", 1)
    else:
        assert got[1] == "wf:raised"
        assert got[2][:2] == ("CancelledError", ("outer",))
        assert got[3] == 1
    if PY311 and timeout is not None:
        # The inner task's CancelledError is not the one re-raised.
        assert got[2][2] != "inner.cancel"


def test_outer_cancel_after_the_inner_finished(impl):
    """The inner finishes in the iteration the caller is cancelled: 3.11's
    wait_for swallows its own cancellation and returns the inner result
    (the waiter was not released yet); 3.12+ let the CancelledError
    through."""

    def scenario(sc):
        manual(sc)

        async def main():
            await call(sc, f, 10)

        f = sc.loop.create_future()
        sc.label(f, "f")
        caller = sc.loop.create_task(main())
        sc.caller = caller
        step(sc, 0, 2)

        def finish_then_cancel():
            f.set_result("res")
            sc("cancel", caller.cancel(), caller.cancelling())

        sc.loop.call_soon(finish_then_cancel)
        step(sc, 0, 4)
        sc("caller:state", sc.state(caller))

    trace = tparity(impl, scenario)
    if PY311:
        assert entry(trace, "wf:returned")[:2] == ("res", 1)
    else:
        assert entry(trace, "wf:raised")[0][0] == "CancelledError"


def test_outer_cancel_after_the_inner_task_finished_311_rule(impl):
    """The same with a coroutine (3.11: the inner task finished, its
    done-callback has not released the waiter yet)."""

    def scenario(sc):
        manual(sc)

        async def main():
            await call(sc, inner(sc, sleeps=1), 10)

        caller = sc.loop.create_task(main())
        sc.caller = caller
        for _ in range(6):
            step(sc)
            if any(e[1] == "inner:return" for e in sc.tr.events) and \
                    not caller.done() and not caller.cancelling():
                sc("cancel", caller.cancel(), caller.cancelling())
        sc("caller:state", sc.state(caller))

    trace = tparity(impl, scenario)
    if PY311:
        assert entry(trace, "wf:returned")[:2] == ("r", 1)
        assert when(trace, "wf:returned") == when(trace, "cancel") + 1
    else:
        # The coroutine ran in the caller's task and returned in one step.
        assert entry(trace, "wf:returned")[:2] == ("r", 0)
        assert "cancel" not in [e[1] for e in trace]


@pytest.mark.parametrize("where", ["before", "same-before", "same-after",
                                   "after"])
def test_outer_cancel_racing_the_deadline(impl, where):
    """The caller is cancelled before, in the same iteration as (a hair
    before or after: exactly equal times run in heap order, README
    difference 5), or after the deadline (t=1002)."""

    def scenario(sc):
        manual(sc)
        eps = sc.loop._clock_resolution / 4

        async def main():
            await call(sc, inner(sc, sleep_t=50), 2)

        caller = sc.loop.create_task(main())
        sc.caller = caller

        def cancel():
            sc("cancel", caller.cancel("outer"), caller.cancelling())

        step(sc)
        if where != "after":
            sc.loop.call_at({"before": 1001.0,
                             "same-before": 1002.0 - eps,
                             "same-after": 1002.0 + eps}[where], cancel)
        step(sc, 1.0)
        step(sc, 1.0)
        if where == "after":
            cancel()
        step(sc, 0, 5)
        sc("caller:state", sc.state(caller))

    trace = tparity(impl, scenario)
    names = [e[1] for e in trace]
    assert "wf:raised" in names


# ---------------------------------------------------------------------------
# Nesting
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("inner_t,outer_t", [(1, 3), (3, 1), (2, 2)])
def test_wait_for_inside_a_timeout(impl, inner_t, outer_t):
    def scenario(sc):
        async def body():
            return await call(sc, inner(sc, sleep_t=10), inner_t,
                              reraise=True)

        async def main():
            try:
                await scoped(sc, sc.impl.timeout(outer_t), "t", body)
            except TimeoutError as e:
                sc("main:timeout", e, me().cancelling())

        run_main(sc, main)

    trace = tparity(impl, scenario, step=0.5)
    names = [e[1] for e in trace]
    if inner_t < outer_t:
        assert entry(trace, "wf:raised")[0][0] == "TimeoutError"
        # ...and goes through the scope, which did not expire.
        assert entry(trace, "t:raised")[1:3] == ("<Timeout [finished]>",
                                                 False)
    else:
        # The outer scope's deadline (first, or the same one: its request
        # is the first) wins; wait_for lets the CancelledError through.
        assert entry(trace, "wf:raised")[0][0] == "CancelledError"
        assert "main:timeout" in names


@pytest.mark.parametrize("inner_t,outer_t", [(1, 3), (3, 1)])
def test_timeout_inside_wait_for(impl, inner_t, outer_t):
    def scenario(sc):
        async def body():
            try:
                return await scoped(sc, sc.impl.timeout(inner_t), "t",
                                    hang, sc, "hang")
            except TimeoutError as e:
                sc("scope:timeout", e, me().cancelling())
                return "scope-timed-out"

        async def main():
            await call(sc, body(), outer_t)

        run_main(sc, main)

    tparity(impl, scenario, step=0.5)


def test_nested_wait_for(impl):
    def scenario(sc):
        async def mid():
            return await call(sc, inner(sc, sleep_t=10), 3, "wf-inner",
                              reraise=True)

        async def main():
            await call(sc, mid(), 1, "wf-outer")
            await call(sc, call(sc, inner(sc, "i2", sleep_t=10), 1, "a"), 3,
                       "b")

        run_main(sc, main)

    trace = tparity(impl, scenario, step=0.5)
    assert entry(trace, "wf-outer:raised")[0][0] == "TimeoutError"
    # The inner wait_for saw the outer's cancellation: not a timeout.
    assert entry(trace, "wf-inner:raised")[0][0] == "CancelledError"
    assert entry(trace, "a:raised")[0][0] == "TimeoutError"
    assert entry(trace, "b:returned")[0][0] == "TimeoutError"


def test_wait_for_in_a_taskgroup_child(impl):
    def scenario(sc):
        async def child():
            return await call(sc, inner(sc, sleep_t=10), 1)

        async def failing():
            await asyncio.sleep(2)
            raise Boom("child")

        async def main():
            try:
                async with sc.impl.TaskGroup() as tg:
                    tg.create_task(child())
                    tg.create_task(failing())
            except BaseException as e:
                sc("main:raised", type(e).__name__, me().cancelling())

        run_main(sc, main)

    tparity(impl, scenario, step=0.5)


# ---------------------------------------------------------------------------
# Bad input, coroutine-function behaviour
# ---------------------------------------------------------------------------

def await_error(obj):
    """The running interpreter's TypeError message for ``await obj``
    ("object int can't be used in 'await' expression" before 3.14,
    "'int' object can't be awaited" since)."""
    async def f():
        await obj

    c = f()
    with warnings.catch_warnings():
        # (an __await__ that returns a coroutine: dropped unawaited)
        warnings.simplefilter("ignore")
        try:
            c.send(None)
        except TypeError as e:
            return e.args[0]
        finally:
            c.close()
            gc.collect()
    raise AssertionError(f"{obj!r} was awaitable")


@pytest.mark.parametrize("arg", [42, "x", None])
@pytest.mark.parametrize("timeout", [None, 1, 0])
def test_non_awaitable(impl, loop, arg, timeout):
    """The error comes at the await, not at the call: the interpreter's own
    message for ``await arg`` (inline await: timeout None, or 3.12+), or
    ensure_future's 'An asyncio.Future, a coroutine or an awaitable is
    required' (3.11 with a timeout, every version with timeout <= 0)."""

    async def main(mod):
        c = mod.wait_for(arg, timeout)
        try:
            await c
        except TypeError as e:
            return e.args, me().cancelling()

    got = run(loop, main(impl))
    assert got == run(loop, main(asyncio))
    msg = got[0][0]
    if timeout == 0 or (PY311 and timeout is not None):
        assert msg == ("An asyncio.Future, a coroutine or an awaitable is "
                       "required")
    else:
        assert msg == await_error(arg)


class BadAwait:
    """An awaitable whose __await__ breaks the protocol."""

    def __init__(self, kind):
        self.kind = kind
        self.called = False

    def __await__(self):
        self.called = True
        if self.kind == "non-iterator":
            return 5
        if self.kind == "coroutine":
            return inner_coro()
        raise Boom("in __await__")


@pytest.mark.parametrize("kind", ["non-iterator", "coroutine", "raises"])
@pytest.mark.parametrize("timeout", [None, 1, 0])
def test_bad_await_protocol(impl, loop, kind, timeout):
    """An __await__ that returns a non-iterator or a coroutine, or raises:
    the interpreter's own error at the same point (3.15 words it
    "X.__await__() must return an iterator, not Y"), whether the awaitable
    is awaited inline or by ensure_future's wrapper task (3.11 with a
    timeout, and timeout <= 0, where a lazy wrapper is cancelled before it
    calls __await__)."""

    def observe(mod):
        async def main():
            aw = BadAwait(kind)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    res = await mod.wait_for(aw, timeout)
                except (TypeError, Boom, TimeoutError) as e:
                    res = (type(e).__name__, e.args,
                           type(e.__context__).__name__,
                           type(e.__cause__).__name__)
                gc.collect()
            return res, me().cancelling(), [
                (w.category.__name__, creation_site(str(w.message)))
                for w in caught], aw.called

        return run(loop, main)

    got = observe(impl)
    assert got == observe(asyncio)
    called = got[3]
    if timeout == 0 and not EAGER:
        assert not called
    if timeout == 0 and not called:
        # The wrapper task is cancelled before it runs (lazy tasks; with
        # uvloop on 3.14+ the eager axis's factory is handed
        # eager_start=None, which starts lazily): __await__ is never
        # called.
        want = ("TimeoutError", ())
    elif kind == "raises":
        want = ("Boom", ("in __await__",))
    elif PY311 and timeout is not None:
        # 3.11's wrapper is a generator: `yield from aw.__await__()`.
        want = (1 if kind == "coroutine"
                else ("TypeError", ("'int' object is not iterable",)))
    else:
        want = ("TypeError", (await_error(BadAwait(kind)),))
    assert (got[0] if want == 1 else got[0][:2]) == want


@pytest.mark.parametrize("timeout", ["x", [1], b"1"])
def test_bad_timeout_type(impl, loop, timeout):
    """``timeout <= 0`` is evaluated first (at the await): its TypeError;
    the coroutine argument is never awaited (its warning)."""

    def observe(mod):
        async def main():
            co = inner_coro()
            try:
                await mod.wait_for(co, timeout)
            except TypeError as e:
                res = e.args
            state = co.cr_frame is not None
            co.close()
            return res, state, me().cancelling()

        return run(loop, main)

    got = observe(impl)
    assert got == observe(asyncio)
    assert got[0][0].startswith("'<=' not supported between instances of")


async def inner_coro():
    return 1


def _drop(wait_for, *args):
    c = wait_for(*args)
    del c


def test_never_awaited_warning(impl, loop):
    def observe(mod):
        async def main():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                f = asyncio.get_running_loop().create_future()
                _drop(mod.wait_for, f, 1)
                gc.collect()
                _drop(mod.wait_for, 42, None)
                gc.collect()
                n = len(f._callbacks or ())
            return [(w.category, creation_site(str(w.message)))
                    for w in caught], n

        return run(loop, main)

    got = observe(impl)
    assert got == observe(asyncio)
    assert ([(c, strip_origin(m)) for c, m in got[0]], got[1]) == (
        [(RuntimeWarning, "coroutine 'wait_for' was never awaited")] * 2, 0)


def test_call_has_no_side_effects(impl, loop):
    """Calling wait_for does nothing until awaited (no task, no timer)."""

    async def main(mod):
        f = asyncio.get_running_loop().create_future()
        tasks_before = len(asyncio.all_tasks())
        c = mod.wait_for(f, 10)
        out = [len(asyncio.all_tasks()) - tasks_before,
               len(f._callbacks or ()), asyncio.iscoroutine(c)]
        c.close()
        f.cancel()
        return out

    got = run(loop, main(impl))
    assert got == run(loop, main(asyncio)) == [0, 0, True]


def test_no_running_loop(impl, event_loop_policy_guard):
    def observe(mod):
        out = []
        for t in (None, 1, 0):
            aw = inner_coro()
            c = mod.wait_for(aw, t)
            try:
                c.send(None)
            except BaseException as e:
                out.append((type(e).__name__, e.args))
            c.close()
            aw.close()
        return out

    got = observe(impl)
    assert got == observe(asyncio)
    assert got[:2] == [("RuntimeError", ("no running event loop",))] * 2


def test_signature(impl):
    def observe(mod):
        out = []
        for args, kw in [((), {}), ((1,), {}), ((1, 2, 3), {}),
                         ((), {"fut": 1, "timeout": None}),
                         ((1,), {"timeout": None, "x": 2})]:
            try:
                c = mod.wait_for(*args, **kw)
            except TypeError as e:
                out.append(("TypeError", e.args))
            else:
                c.close()
                out.append("ok")
        return out

    got = observe(impl)
    assert got == observe(asyncio)
    assert got[3] == "ok"


def test_nan_timeout(impl):
    """NaN: not <= 0, so a timer at NaN (3.11: call_later; 3.12+:
    timeout()).  The active loop's outcome, as for timeout(nan)."""

    def scenario(sc):
        async def main():
            await call(sc, inner(sc, sleep_t=100), NAN)

        caller = sc.loop.create_task(main())
        sc.caller = caller
        try:
            sc.run(caller)
        except ValueError as e:
            sc("loop-failed", e)
            for h in getattr(sc.loop, "_scheduled", ()):
                if h.when() != h.when():
                    h.cancel()
            caller.cancel()
            try:
                sc.run(caller)
            except BaseException as e:
                sc("second-run:raised", e)

    trace = tparity(impl, scenario, virtual=False)
    nan_error = ("ValueError", ("cannot convert float NaN to integer",))
    if LOOP_KIND == "uvloop":
        assert exc_info(entry(trace, "wf:raised")[0]) == nan_error
    elif PY >= (3, 13):
        assert exc_info(entry(trace, "loop-failed")[0]) == nan_error
    else:
        assert entry(trace, "wf:raised")[0][0] == "TimeoutError"


def test_inf_timeout(impl):
    def scenario(sc):
        async def main():
            await call(sc, inner(sc, sleep_t=100), INF)

        run_main(sc, main)

    trace = tparity(impl, scenario)
    assert entry(trace, "wf:returned")[0] == "r"


def test_cancelled_error_subclass_from_the_inner_after_expiry(impl):
    def scenario(sc):
        async def body():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                raise MyCancelled("sub")

        async def main():
            await call(sc, body(), 1)

        run_main(sc, main)

    tparity(impl, scenario, step=0.5)


@pytest.mark.parametrize("how", TIE_BREAKS)
@pytest.mark.parametrize("removed", [False, True],
                         ids=["alone", "after-a-removed-deadline"])
def test_deadline_and_completion_due_together(impl, removed, how):
    """The deadline and the inner's own timer are due in one iteration, a
    hair apart.  3.11: the earlier one runs first; if it is the deadline,
    wait_for resumes first and cancels the inner (TimeoutError), else the
    inner finishes first and its result is returned.  3.12+: the scope
    cancels the task either way (TimeoutError).  With another scope's
    deadline removed before (``removed``), an implementation sharing one
    loop timer may wake the idle loop there and re-arm: the outcome must
    not change.  Compared without iteration numbers (the autojump clock
    idles across the removed deadline)."""

    def scenario(sc):
        d = tie(sc, how)

        async def other():
            async with sc.impl.timeout(0.25) as t:
                t.reschedule(None)
            sc("other:done", now(sc))

        async def main():
            if removed:
                await sc.loop.create_task(other())
            await call(sc, inner(sc, sleep_t=0.5 + d), 0.5)

        run_main(sc, main)

    def trace(mod):
        from conftest import VirtualClock, trace_scenario

        def wrapped(sc):
            sc.impl = mod
            scenario(sc)

        return [e[1:] for e in trace_scenario(mod, wrapped,
                                              clock=VirtualClock())]

    got = trace(impl)
    want = trace(asyncio)
    assert got == want
    if PY311 and how == "inner-first":
        assert [e for e in want if e[0] == "wf:returned"][0][1] == "r"
    else:
        raised = [e for e in want if e[0] == "wf:raised"]
        assert raised and raised[0][1][0] == "TimeoutError"


@pytest.mark.parametrize("how", TIE_BREAKS)
def test_deadline_and_completion_due_together_after_another_wait_for(impl,
                                                                     how):
    """Found by the differential (stepping clock, exact iterations):
    another task's wait_for returns at once (its deadline is removed),
    then this task's deadline and its inner's sleep are due in the same
    iteration on 3.11 (its inner task starts one iteration late): the
    earlier of the two runs first; the deadline: the inner is cancelled,
    TimeoutError; the inner's timer: its result.  3.12+: the body resumes
    (a ready callback) before the deadline's timer runs in that iteration
    and returns."""

    def scenario(sc):
        async def quick():
            return "quick"

        async def other():
            sc("other", await sc.impl.wait_for(quick(), 0.25))

        async def waiter():
            sc.caller = me()
            await call(sc, inner(sc, sleep_t=0.25 + tie(sc, how)), 0.5)

        async def main():
            # Both start in the same iteration, ``other`` first (its
            # deadline is the earliest until it is removed).
            a = sc.loop.create_task(other())
            b = sc.loop.create_task(waiter())
            await a
            await b

        sc.run(main)

    trace = tparity(impl, scenario, step=0.25)
    if PY311 and how == "deadline-first":
        assert entry(trace, "wf:raised")[0][0] == "TimeoutError"
    else:
        assert entry(trace, "wf:returned")[:2] == ("r", 0)


def test_removed_deadline_splits_a_cancellation_from_an_outer_deadline(impl):
    """README difference 5, on a clock that jumps to the next timer: a
    removed deadline (1 s) still has the shared loop timer armed.  The
    inner's sleep (1 s + res/2), a cancellation of the caller from outside
    (1 s + 0.75 res) and an outer scope's deadline (1 s + 1.4 res) follow
    within less than one clock resolution of each other.  asyncio wakes at
    the sleep and runs all three: wait_for raises CancelledError with
    cancelling() 2 (the outside cancellation and the outer scope's).
    fastwait wakes at the removed deadline, where the outer deadline is
    not due yet: wait_for raises with cancelling() 1, and the outer scope
    exits before its deadline.  The outcome is the same: the caller is
    cancelled, cancelling() 1.  (3.11: wait_for's own task has finished,
    the cancellation is swallowed and the result returned, with
    cancelling() 2 and 1.)"""

    def observe(mod):
        from conftest import VirtualClock, new_loop

        loop = new_loop(clock=VirtualClock(1000.0))
        res = loop._clock_resolution
        log = []

        async def sleeper(t0):
            await asyncio.sleep(t0 + 1 + 0.5 * res - loop.time())
            return "slept"

        async def caller():
            t0 = loop.time()
            async with mod.timeout(1):
                pass
            loop.call_at(t0 + 1 + 0.75 * res,
                         lambda: log.append(("cancel", task.cancel())))
            try:
                async with mod.timeout_at(t0 + 1 + 1.4 * res) as t:
                    try:
                        r = await mod.wait_for(sleeper(t0), 10)
                        log.append(("wait_for returned", r, me().cancelling()))
                    except asyncio.CancelledError:
                        log.append(("wait_for raised", me().cancelling()))
                        raise
            except BaseException as e:
                log.append(("scope raised", type(e).__name__, t.expired(),
                            me().cancelling()))
                raise

        task = loop.create_task(caller())
        try:
            loop.run_until_complete(task)
        except asyncio.CancelledError:
            pass
        log.append(("final", task.cancelled(), task.cancelling()))
        loop.close()
        return log

    import fastwait

    want = observe(asyncio)
    got = observe(impl)
    split = impl is fastwait and "timeout" in fastwait.NATIVE_NAMES
    if PY311:
        # wait_for's own task has finished; 3.11 swallows the caller's
        # cancellation and returns its result.
        assert want == [("cancel", True), ("wait_for returned", "slept", 2),
                        ("final", False, 1)]
        assert got == ([("cancel", True),
                        ("wait_for returned", "slept", 1),
                        ("final", False, 1)] if split else want)
        return
    assert want == [("cancel", True), ("wait_for raised", 2),
                    ("scope raised", "CancelledError", True, 1),
                    ("final", True, 1)]
    assert got == ([("cancel", True), ("wait_for raised", 1),
                    ("scope raised", "CancelledError", False, 1),
                    ("final", True, 1)] if split else want)


def test_deadlines_within_one_resolution_keep_their_order(impl):
    """Three timers due in one iteration, none at exactly the same time:
    another scope's deadline (1 s - eps), the inner's sleep (1 s), this
    wait_for's deadline (1 s + eps).  The loop runs them in that order.
    3.11: the inner task is woken before wait_for, finishes, and its
    result is returned; 3.12+: the scope cancels the task either way."""

    def scenario(sc):
        manual(sc)
        eps = sc.loop._clock_resolution / 4

        async def other():
            try:
                async with sc.impl.timeout(1.0 - eps):
                    await sc.loop.create_future()
            except TimeoutError:
                sc("other:timeout", now(sc))

        async def waiter():
            sc.caller = me()
            await call(sc, inner(sc, sleep_t=1.0), 1.0 + eps)

        a = sc.loop.create_task(other())
        b = sc.loop.create_task(waiter())
        step(sc, 0, 3)   # everything started (3.11: the inner task too)
        step(sc, 1.0)    # all three timers due
        step(sc, 0, 4)
        sc("done", a.done(), b.done())

    import fastwait
    from conftest import VirtualClock, trace_scenario

    if PY311 and impl is fastwait and "timeout" in fastwait.NATIVE_NAMES:
        # README difference #5: fastwait's deadlines share one loop timer,
        # and the deadlines due in one iteration expire together, at the
        # place of the earliest; the inner's sleep, due between them, runs
        # after both.  On 3.11 that decides wait_for's outcome: TimeoutError
        # where asyncio returns the inner's result.
        def wrapped(sc):
            sc.impl = impl
            scenario(sc)

        trace = trace_scenario(impl, wrapped, clock=VirtualClock(1000.0))
        assert entry(trace, "wf:raised")[0][0] == "TimeoutError"
        assert entry(trace, "done") == (True, True)
        trace = tparity(asyncio, scenario)  # the stdlib's, pinned below
    else:
        trace = tparity(impl, scenario)
    if PY311:
        assert entry(trace, "wf:returned")[:2] == ("r", 0)
    else:
        assert entry(trace, "wf:raised")[0][0] == "TimeoutError"
    assert entry(trace, "done") == (True, True)
