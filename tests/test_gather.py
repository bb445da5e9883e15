"""Parity tests for ``gather``: every behaviour, on both implementations.

Most tests describe a scenario once and run it through ``parity``: the
scenario is traced with ``impl.gather`` and with ``asyncio.gather`` on fresh
loops of the active axes, the two traces must be equal (results, exception
types/args/identity, ``cancelled()``/``cancelling()``, exception-handler
calls, warnings, and the loop iteration of every event), and then the test
pins the facts that hold on every supported version explicitly.  Where a
version differs, the expectation is whatever ``asyncio.gather`` did in the
same run.
"""

import asyncio
import gc
import inspect
import types
import warnings

import pytest

from conftest import (
    fastwait_wraps_children,
    PY,
    TASKS_KIND,
    entry,
    events,
    normalize_addresses,
    parity,
    run,
    run_briefly,
    when,
)
from helpers import (PY314, BaseBoom, Boom, GraphWatch, policy_loop,
                     reset_event_loop_policy, stepping_child,
                     strip_created_at, strip_origin, unhashable_message,
                     worker_outcome)

EAGER = TASKS_KIND == "eager"
PY312 = PY >= (3, 12)


# ---------------------------------------------------------------------------
# Scenario building blocks
# ---------------------------------------------------------------------------

async def worker(sc, name, *, steps=0, result=None, exc=None, wait=(),
                 catch_cancel=False):
    """A child: suspends ``steps`` times, then awaits each of ``wait``, then
    returns ``result`` or raises ``exc`` (labelled ``<name>.exc``).  Every
    step is recorded; a CancelledError is recorded (labelled
    ``<name>.cancel``) and re-raised unless ``catch_cancel``."""
    sc(f"{name}:start")
    try:
        for i in range(steps):
            await asyncio.sleep(0)
            sc(f"{name}:step", i)
        for fut in wait:
            value = await fut
            sc(f"{name}:awaited", value)
    except asyncio.CancelledError as e:
        sc.label(e, f"{name}.cancel")
        sc(f"{name}:cancelled", e)
        if not catch_cancel:
            raise
        sc(f"{name}:return", "caught")
        return "caught"
    return worker_outcome(sc, name, exc, result)


async def drain(sc, limit=100):
    """Let every other task of the loop finish (bounded)."""
    me = asyncio.current_task()
    for _ in range(limit):
        if all(t.done() for t in asyncio.all_tasks() if t is not me):
            return
        await asyncio.sleep(0)
    raise AssertionError("tasks still pending after drain()")


async def await_outer(sc, g, name="main"):
    """Await ``g`` in the current task and record the outcome, the task's
    cancelling() count and the outer's cancelled() flag."""
    try:
        r = await g
    except BaseException as e:
        sc(f"{name}:raised", e)
    else:
        sc(f"{name}:result", r)
    sc(f"{name}:cancelling", asyncio.current_task().cancelling())
    sc("g:cancelled", g.cancelled())


def gather_and_await(make_args, *, return_exceptions=False, final=()):
    """Scenario: main gathers ``make_args(sc)``, awaits the outer, drains
    the other tasks and records the final state of the futures named in
    ``final`` (``make_args`` may register them in the dict it receives)."""

    def scenario(sc):
        named = {}

        async def main():
            args = make_args(sc, named)
            g = sc.gather(*args, return_exceptions=return_exceptions)
            sc.watch(g, "g")
            sc("gathered", g.done())
            await await_outer(sc, g)
            await drain(sc)
            for key in final:
                sc(f"{key}:final", sc.state(named[key]))

        sc.run(main)

    return scenario


def excinfo(tr_desc):
    """(type name, args) of an exception description from a trace."""
    return tr_desc[0], tr_desc[1]


# ---------------------------------------------------------------------------
# No arguments
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("return_exceptions", [False, True])
def test_empty_in_running_loop(impl, loop, return_exceptions):
    async def main():
        g = impl.gather(return_exceptions=return_exceptions)
        ref = asyncio.gather(return_exceptions=return_exceptions)
        plain = asyncio.get_running_loop().create_future()
        assert type(g) is type(ref) is type(plain)
        assert type(g).__name__ == "Future"
        assert g.done() and not g.cancelled()
        assert g.result() == []
        assert g.get_loop() is loop
        assert g.cancel() is False
        assert await g == []
        plain.cancel()

    run(loop, main)


def _call_gather(gather, *args):
    # One call site for both implementations, so that warnings attributed
    # to the caller point at the same line.
    return gather(*args)


def _outcome(fn):
    """Call ``fn`` with every warning recorded; return comparable data."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = fn()
        except Exception as e:
            result = ("raised", type(e).__name__, e.args)
            value = None
        else:
            result = ("returned",)
    ws = [(w.category.__name__, str(w.message), w.filename, w.lineno)
          for w in caught]
    return result, ws, value


@pytest.mark.parametrize("return_exceptions", [False, True])
def test_empty_outside_running_loop_with_current_loop(
        impl, loop, event_loop_policy_guard, return_exceptions):
    asyncio.set_event_loop(loop)
    got, got_ws, g = _outcome(
        lambda: impl.gather(return_exceptions=return_exceptions))
    want, want_ws, ref = _outcome(
        lambda: asyncio.gather(return_exceptions=return_exceptions))
    assert (got, got_ws) == (want, want_ws) == (("returned",), [])
    assert type(g) is type(ref)
    assert type(g).__name__ == "Future"
    assert g.get_loop() is ref.get_loop() is loop
    assert g.done() and g.result() == []


def test_empty_outside_running_loop_without_current_loop(
        impl, event_loop_policy_guard):
    """No current loop: the policy makes one; 3.12+ warns about it; 3.14's
    get_event_loop() raises instead."""

    def attempt(gather):
        reset_event_loop_policy()
        result, ws, g = _outcome(lambda: _call_gather(gather))
        info = None
        if g is not None:
            made = g.get_loop()
            info = (type(g).__name__, g.done(), g.result(),
                    made is policy_loop())
            made.close()
        reset_event_loop_policy()
        return result, ws, info

    got = attempt(impl.gather)
    want = attempt(asyncio.gather)
    assert got == want
    result, ws, info = got
    if PY314:
        assert (result, ws, info) == (
            ("raised", "RuntimeError",
             ("There is no current event loop in thread 'MainThread'.",)),
            [], None)
        return
    assert result == ("returned",)
    assert info == ("Future", True, [], True)
    if PY312:
        assert [w[:2] for w in ws] == [
            ("DeprecationWarning", "There is no current event loop")]
        assert ws[0][2] == __file__
    else:
        assert ws == []


def test_empty_outside_running_loop_loop_set_to_none(
        impl, event_loop_policy_guard):
    asyncio.set_event_loop(None)
    got = _outcome(lambda: impl.gather())[:2]
    want = _outcome(lambda: asyncio.gather())[:2]
    assert got == want
    assert got == (
        ("raised", "RuntimeError",
         ("There is no current event loop in thread 'MainThread'.",)),
        [],
    )


# ---------------------------------------------------------------------------
# Results, order, duplicates
# ---------------------------------------------------------------------------

def test_results_follow_argument_order(impl):
    def args(sc, named):
        f = sc.loop.create_future()
        sc.loop.call_soon(f.set_result, "F")
        return [
            worker(sc, "a", steps=3, result="A"),
            worker(sc, "b", steps=0, result="B"),
            worker(sc, "c", steps=1, result="C"),
            f,
        ]

    trace = parity(impl, gather_and_await(args))
    assert entry(trace, "main:result") == (["A", "B", "C", "F"],)
    assert entry(trace, "gathered") == (False,)
    assert entry(trace, "g:cancelled") == (False,)
    # The outer completes in the iteration after its last child, and its
    # awaiter resumes one iteration later.
    assert when(trace, "g:done") == when(trace, "a:return") + 1
    assert when(trace, "main:result") == when(trace, "g:done") + 1
    assert when(trace, "g:cb") == when(trace, "main:result")
    # Children start in argument order.
    starts = [e[0] for e in events(trace, "") if e[0].endswith(":start")]
    assert starts == ["a:start", "b:start", "c:start"]


def test_children_released_in_reverse_order(impl):
    """Children blocked on futures that are released last-first: results
    still follow argument order, the outer completes right after the first
    child (the last one released)."""

    def args(sc, named):
        gates = [sc.loop.create_future() for _ in range(3)]

        async def release():
            for i in (2, 1, 0):
                await asyncio.sleep(0)
                gates[i].set_result(f"g{i}")

        named["releaser"] = sc.loop.create_task(release())
        return [worker(sc, f"c{i}", result=i, wait=[gates[i]])
                for i in range(3)]

    trace = parity(impl, gather_and_await(args))
    assert entry(trace, "main:result") == ([0, 1, 2],)
    assert [e[0] for e in events(trace) if e[0].endswith(":awaited")] == [
        "c2:awaited", "c1:awaited", "c0:awaited"]
    assert entry(trace, "c0:awaited") == ("g0",)
    assert when(trace, "g:done") == when(trace, "c0:return") + 1


def test_outcome_timing_single_child(impl):
    trace = parity(impl, gather_and_await(
        lambda sc, named: [worker(sc, "a", steps=1, result=1)]))
    assert entry(trace, "main:result") == ([1],)
    start = when(trace, "a:start")
    assert when(trace, "a:return") == start + 1
    assert when(trace, "g:done") == start + 2
    assert when(trace, "main:result") == start + 3


def test_duplicate_task_is_one_child(impl):
    def args(sc, named):
        t = sc.loop.create_task(worker(sc, "t", steps=1, result=5))
        named["t"] = t
        return [t, t, worker(sc, "c", result=1)]

    trace = parity(impl, gather_and_await(args, final=["t"]))
    assert entry(trace, "main:result") == ([5, 5, 1],)
    assert len(events(trace, "t:start")) == 1
    assert entry(trace, "t:final") == (("result", 5, ("cancelling", 0)),)


def test_duplicate_coroutine_makes_one_task(impl, loop):
    runs = []

    async def child():
        runs.append(asyncio.current_task())
        await asyncio.sleep(0)
        return "r"

    async def main():
        before = asyncio.all_tasks()
        c = child()
        g = impl.gather(c, c, c)
        created = asyncio.all_tasks() - before
        assert len(created) == 1
        assert await g == ["r", "r", "r"]
        assert len(runs) == 1 and runs[0] in created

    run(loop, main)


def test_duplicate_future_and_exception_identity(impl):
    def args(sc, named):
        f = sc.loop.create_future()
        exc = Boom("f")
        sc.label(exc, "f.exc")
        sc.loop.call_soon(f.set_exception, exc)
        named["f"] = f
        return [f, worker(sc, "a", steps=1, result="A"), f]

    trace = parity(impl, gather_and_await(
        args, return_exceptions=True, final=["f"]))
    (results,) = entry(trace, "main:result")
    assert results[1] == "A"
    assert results[0] == results[2]
    assert results[0][:3] == ("Boom", ("f",), "f.exc")
    assert entry(trace, "f:final")[0][2] == "retrieved"


# ---------------------------------------------------------------------------
# Exceptions
# ---------------------------------------------------------------------------

def _mixed_children(sc, named):
    t = sc.loop.create_task(worker(sc, "d", steps=5))
    named["d"] = t
    sc.loop.call_soon(sc.loop.call_soon, t.cancel, "dmsg")
    return [
        worker(sc, "a", steps=1, result=1),
        worker(sc, "b", steps=2, exc=Boom("b")),
        worker(sc, "c", steps=0, exc=BaseBoom("c")),
        t,
    ]


def test_return_exceptions_true_collects_everything(impl):
    trace = parity(impl, gather_and_await(
        _mixed_children, return_exceptions=True, final=["d"]))
    (results,) = entry(trace, "main:result")
    assert results[0] == 1
    assert results[1][:3] == ("Boom", ("b",), "b.exc")
    assert results[2][:3] == ("BaseBoom", ("c",), "c.exc")
    # A cancelled Task contributes a *new* CancelledError whose message the
    # Task has already dropped.
    assert results[3][:2] == ("CancelledError", ("",))
    assert results[3][2] != "d.cancel"
    assert entry(trace, "d:final") == (("cancelled", ("cancelling", 1)),)
    assert entry(trace, "g:cancelled") == (False,)


def test_first_exception_propagates_others_keep_running(impl):
    def args(sc, named):
        ts = {
            "a": worker(sc, "a", steps=1, exc=Boom("a")),
            "b": worker(sc, "b", steps=2, exc=Boom("b")),
            "c": worker(sc, "c", steps=3, result="C"),
        }
        for k, coro in ts.items():
            named[k] = sc.loop.create_task(coro)
        return list(named.values())

    trace = parity(impl, gather_and_await(args, final=["a", "b", "c"]))
    assert entry(trace, "main:raised")[0][:3] == ("Boom", ("a",), "a.exc")
    assert when(trace, "g:done") == when(trace, "a:raise") + 1
    # The others were not cancelled and ran to completion...
    assert events(trace, "b:cancelled") == events(trace, "c:cancelled") == []
    assert entry(trace, "c:final") == (("result", "C", ("cancelling", 0)),)
    # ... and the later exception was marked retrieved by gather: no
    # "exception was never retrieved" log (the trace would hold it).
    final_b = entry(trace, "b:final")
    assert final_b[0][0] == "exception" and final_b[0][2] == "retrieved"
    assert final_b[0][1][:3] == ("Boom", ("b",), "b.exc")
    assert events(trace, "exception-handler") == []
    assert entry(trace, "g:cancelled") == (False,)


def test_first_exception_base_exception(impl):
    trace = parity(impl, gather_and_await(
        lambda sc, named: [worker(sc, "a", steps=2, result=1),
                           worker(sc, "b", steps=1, exc=BaseBoom("b"))]))
    assert entry(trace, "main:raised")[0][:3] == ("BaseBoom", ("b",), "b.exc")
    assert entry(trace, "a:return") == (1,)


def test_unawaited_outer_exception_is_logged(impl):
    """The outer itself logs "exception was never retrieved" like any
    Future (its class name is part of the message)."""

    def scenario(sc):
        async def main():
            g = sc.gather(worker(sc, "a", exc=Boom("a")))
            sc("gathered", g.done())
            await drain(sc)
            await asyncio.sleep(0)
            sc("g:state", sc.state(g))

        sc.run(main)

    trace = parity(impl, scenario)
    (state,) = entry(trace, "g:state")
    assert state[0] == "exception" and state[2] == "unretrieved"
    (handler,) = events(trace, "exception-handler")
    assert handler[1] == "_GatheringFuture exception was never retrieved"
    assert handler[2][:3] == ("Boom", ("a",), "a.exc")
    assert handler[3][:2] == ("future", "_GatheringFuture")


# ---------------------------------------------------------------------------
# A child is cancelled
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("msg", [None, "tmsg"])
def test_cancelled_child_task(impl, msg):
    def args(sc, named):
        t = sc.loop.create_task(worker(sc, "t", steps=10))
        named["t"] = t
        sc.loop.call_soon(sc.loop.call_soon, t.cancel, msg)
        return [worker(sc, "a", steps=4, result="A"), t]

    trace = parity(impl, gather_and_await(args, final=["t"]))
    raised = entry(trace, "main:raised")[0]
    # The outer's *exception* is the child's own CancelledError.
    assert raised[:3] == ("CancelledError", () if msg is None else (msg,),
                          "t.cancel")
    assert entry(trace, "g:cancelled") == (False,)
    assert entry(trace, "main:cancelling") == (0,)
    # The other child is not cancelled.
    assert entry(trace, "a:return") == ("A",)
    assert when(trace, "g:done") == when(trace, "t:cancelled") + 1
    assert entry(trace, "t:final") == (("cancelled", ("cancelling", 1)),)


@pytest.mark.parametrize("msg", [None, "self"])
def test_child_raises_cancelled_error_itself(impl, msg):
    def args(sc, named):
        exc = asyncio.CancelledError() if msg is None else \
            asyncio.CancelledError(msg)
        return [worker(sc, "a", steps=1, exc=exc),
                worker(sc, "b", steps=2, result="B")]

    trace = parity(impl, gather_and_await(args))
    raised = entry(trace, "main:raised")[0]
    assert raised[:2] == ("CancelledError", () if msg is None else (msg,))
    assert entry(trace, "g:cancelled") == (False,)


@pytest.mark.parametrize("pure", [False, True], ids=["cfuture", "pyfuture"])
def test_cancelled_child_future(impl, pure):
    def args(sc, named):
        cls = asyncio.futures._PyFuture if pure else asyncio.Future
        f = cls(loop=sc.loop)
        sc.loop.call_soon(f.cancel, "fmsg")
        return [f, worker(sc, "a", steps=2, result="A")]

    trace = parity(impl, gather_and_await(args))
    assert excinfo(entry(trace, "main:raised")[0]) == (
        "CancelledError", ("fmsg",))
    assert entry(trace, "g:cancelled") == (False,)


def test_return_exceptions_cancelled_task_vs_future_message(impl):
    def args(sc, named):
        t = sc.loop.create_task(worker(sc, "t", steps=10))
        f = sc.loop.create_future()
        p = asyncio.futures._PyFuture(loop=sc.loop)
        sc.loop.call_soon(t.cancel, "tmsg")
        sc.loop.call_soon(f.cancel, "fmsg")
        sc.loop.call_soon(p.cancel, "pmsg")
        return [t, f, p]

    trace = parity(impl, gather_and_await(args, return_exceptions=True))
    (results,) = entry(trace, "main:result")
    assert [excinfo(r) for r in results] == [
        ("CancelledError", ("",)),
        ("CancelledError", ("fmsg",)),
        ("CancelledError", ("pmsg",)),
    ]
    assert len({r[2] for r in results}) == 3


# ---------------------------------------------------------------------------
# Cancelling the outer
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("return_exceptions", [False, True])
@pytest.mark.parametrize("msg", [None, "m2"])
def test_outer_cancel_fans_out(impl, msg, return_exceptions):
    def scenario(sc):
        async def main():
            g = sc.gather(worker(sc, "a", steps=5),
                          worker(sc, "b", steps=5),
                          return_exceptions=return_exceptions)
            sc.watch(g, "g")
            await asyncio.sleep(0)
            sc("cancel", g.cancel(msg))
            sc("cancel-again", g.cancel(msg))
            sc("after-cancel", g.done(), g.cancelled())
            await await_outer(sc, g)
            sc("cancel-after-done", g.cancel())

        sc.run(main)

    trace = parity(impl, scenario)
    args = () if msg is None else (msg,)
    assert entry(trace, "cancel") == (True,)
    assert entry(trace, "cancel-again") == (True,)
    assert entry(trace, "after-cancel") == (False, False)
    assert excinfo(entry(trace, "a:cancelled")[0]) == ("CancelledError", args)
    assert excinfo(entry(trace, "b:cancelled")[0]) == ("CancelledError", args)
    raised = entry(trace, "main:raised")[0]
    if return_exceptions:
        # The outer still raises (bpo-32684), once every child is done, with
        # the LAST child's own CancelledError.
        assert raised[:3] == ("CancelledError", args, "b.cancel")
        assert when(trace, "g:done") == when(trace, "b:cancelled") + 1
    else:
        # The first child to finish cancelled propagates at once.
        assert raised[:3] == ("CancelledError", args, "a.cancel")
        assert when(trace, "g:done") == when(trace, "a:cancelled") + 1
    assert entry(trace, "g:cancelled") == (False,)
    assert entry(trace, "main:cancelling") == (0,)
    assert entry(trace, "cancel-after-done") == (False,)


@pytest.mark.parametrize("return_exceptions", [False, True])
def test_outer_cancel_error_comes_from_last_child_in_argument_order(
        impl, return_exceptions):
    """bpo-32684: with return_exceptions=True the CancelledError is made by
    the last child in argument order, even if that child finished normally
    (the message is lost).  Without it, the cancelled child propagates."""

    def args(sc, named):
        last = sc.loop.create_task(worker(sc, "last", result="L"))
        named["last"] = last

        async def cancel_soon():
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            sc("cancel", named["g"].cancel("m"))

        named["canceller"] = sc.loop.create_task(cancel_soon())
        return [worker(sc, "a", steps=6), last]

    def scenario(sc):
        named = {}

        async def main():
            g = sc.gather(*args(sc, named),
                          return_exceptions=return_exceptions)
            named["g"] = g
            sc.watch(g, "g")
            await await_outer(sc, g)
            await drain(sc)

        sc.run(main)

    trace = parity(impl, scenario)
    assert entry(trace, "cancel") == (True,)
    assert excinfo(entry(trace, "a:cancelled")[0]) == ("CancelledError",
                                                       ("m",))
    raised = entry(trace, "main:raised")[0]
    if return_exceptions:
        assert raised[:2] == ("CancelledError", ())
        assert raised[2] not in ("a.cancel",)
    else:
        assert raised[:3] == ("CancelledError", ("m",), "a.cancel")
    assert entry(trace, "g:cancelled") == (False,)


def test_cancel_when_all_children_done_returns_false(impl):
    def scenario(sc):
        async def main():
            a = sc.loop.create_task(worker(sc, "a", result="A"))
            f = sc.loop.create_future()
            f.set_result("F")
            await asyncio.sleep(0)
            g = sc.gather(a, f)
            sc.watch(g, "g")
            sc("gathered", g.done())
            sc("cancel", g.cancel("late"))
            await await_outer(sc, g)

        sc.run(main)

    trace = parity(impl, scenario)
    assert entry(trace, "main:result") == (["A", "F"],)
    # 3.12+ completes gather over finished children synchronously, so
    # cancel() sees a done outer; either way it returns False.
    assert entry(trace, "gathered") == (PY312,)
    assert entry(trace, "cancel") == (False,)


def test_cancel_after_children_finished_before_outer(impl):
    """Children are done but the outer's completion is still scheduled."""

    def scenario(sc):
        async def main():
            a = sc.loop.create_task(worker(sc, "a", steps=1, result="A"))
            b = sc.loop.create_task(worker(sc, "b", steps=1, result="B"))
            g = sc.gather(a, b)
            sc.watch(g, "g")
            for _ in range(5):
                if a.done() and b.done():
                    break
                await asyncio.sleep(0)
            sc("children-done", g.done())
            sc("cancel", g.cancel("x"))
            await await_outer(sc, g)

        sc.run(main)

    trace = parity(impl, scenario)
    assert entry(trace, "cancel") == (False,)
    assert entry(trace, "main:result") == (["A", "B"],)
    assert events(trace, "a:cancelled") == []


def test_cancel_outer_twice_with_different_messages(impl):
    def scenario(sc):
        async def main():
            g = sc.gather(worker(sc, "a", steps=3), worker(sc, "b", steps=3))
            await asyncio.sleep(0)
            sc("cancel1", g.cancel("first"))
            sc("cancel2", g.cancel("second"))
            await await_outer(sc, g)

        sc.run(main)

    trace = parity(impl, scenario)
    assert entry(trace, "cancel1") == entry(trace, "cancel2") == (True,)
    raised = entry(trace, "main:raised")[0]
    # A Task keeps the message of the latest cancel() request.
    assert raised[:3] == ("CancelledError", ("second",), "a.cancel")


def test_duplicate_task_cancelled_twice(impl):
    def scenario(sc):
        async def main():
            t = sc.loop.create_task(worker(sc, "t", steps=5))
            g = sc.gather(t, t)
            await asyncio.sleep(0)
            sc("cancel", g.cancel())
            sc("t:cancelling", t.cancelling())
            await await_outer(sc, g)
            sc("t:final", sc.state(t))

        sc.run(main)

    trace = parity(impl, scenario)
    assert entry(trace, "cancel") == (True,)
    assert entry(trace, "t:cancelling") == (2,)
    assert entry(trace, "t:final") == (("cancelled", ("cancelling", 2)),)
    assert entry(trace, "main:raised")[0][:3] == (
        "CancelledError", (), "t.cancel")


def test_cancel_outer_with_done_and_pending_children(impl):
    def scenario(sc):
        async def main():
            done = sc.loop.create_future()
            done.set_result("D")
            failed = sc.loop.create_future()
            failed.set_exception(Boom("x"))
            g = sc.gather(done, worker(sc, "a", steps=3), failed,
                          return_exceptions=True)
            sc.watch(g, "g")
            sc("cancel", g.cancel("m"))
            await await_outer(sc, g)

        sc.run(main)

    trace = parity(impl, scenario)
    # The last child (already failed, not cancelled) makes the error: no
    # message.
    assert excinfo(entry(trace, "main:raised")[0]) == ("CancelledError", ())


def test_nested_gather_cancel_propagates(impl):
    def scenario(sc):
        async def main():
            inner = sc.gather(worker(sc, "a", steps=4),
                              worker(sc, "b", steps=1, result="B"))
            sc.label(inner, "inner")
            g = sc.gather(inner, worker(sc, "c", steps=4))
            await asyncio.sleep(0)
            sc("cancel", g.cancel("deep"))
            await await_outer(sc, g)
            sc("inner:final", sc.state(inner))

        sc.run(main)

    trace = parity(impl, scenario)
    assert excinfo(entry(trace, "a:cancelled")[0]) == ("CancelledError",
                                                       ("deep",))
    assert excinfo(entry(trace, "main:raised")[0]) == ("CancelledError",
                                                       ("deep",))


# ---------------------------------------------------------------------------
# Cancelling the task that awaits gather
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("return_exceptions", [False, True])
@pytest.mark.parametrize("msg", [None, "pm"])
def test_cancel_awaiting_task(impl, msg, return_exceptions):
    def scenario(sc):
        async def main():
            g = sc.gather(worker(sc, "a", steps=5),
                          worker(sc, "b", steps=1, result="B"),
                          worker(sc, "c", steps=5, catch_cancel=True),
                          return_exceptions=return_exceptions)
            sc.watch(g, "g")
            await await_outer(sc, g)
            await drain(sc)

        task = sc.loop.create_task(main())
        sc.run_briefly(3)
        sc("cancel", task.cancel(msg), task.cancelling())
        try:
            sc.run(task)
        except BaseException as e:
            sc("run:raised", e)
        sc("task:final", sc.state(task))

    trace = parity(impl, scenario)
    args = () if msg is None else (msg,)
    assert entry(trace, "cancel") == (True, 1)
    assert excinfo(entry(trace, "a:cancelled")[0]) == ("CancelledError", args)
    assert entry(trace, "c:return") == ("caught",)
    raised = entry(trace, "main:raised")[0]
    # The last child swallowed its cancellation, so its fresh error has no
    # message... and the awaiting task still sees CancelledError.
    assert raised[0] == "CancelledError"
    assert entry(trace, "main:cancelling") == (1,)
    assert entry(trace, "task:final") == (("result", None, ("cancelling", 1)),)


def test_cancel_awaiting_task_after_children_done(impl):
    """The children are finished but the outer is not: g.cancel() returns
    False, so the awaiting task gets the cancellation on wake-up and the
    result is lost."""

    def scenario(sc):
        async def main():
            g = sc.gather(worker(sc, "a", steps=1, result="A"))
            sc.watch(g, "g")
            sc.label(g, "g")
            await await_outer(sc, g)

        task = sc.loop.create_task(main())
        for _ in range(6):
            sc.run_briefly()
            done = [e for e in sc.tr.events if e[1] == "a:return"]
            if done:
                break
        sc("cancel", task.cancel("late"))
        try:
            sc.run(task)
        except BaseException as e:
            sc("run:raised", e)
        sc("task:final", sc.state(task))

    trace = parity(impl, scenario)
    assert entry(trace, "cancel") == (True,)
    assert excinfo(entry(trace, "main:raised")[0]) == ("CancelledError",
                                                       ("late",))
    assert entry(trace, "g:done")[0] == ("result", ["A"])


# ---------------------------------------------------------------------------
# Non-coroutine awaitables
# ---------------------------------------------------------------------------

class Awaitable:
    def __init__(self, value, steps=1):
        self.value = value
        self.steps = steps

    def __await__(self):
        for _ in range(self.steps):
            yield
        return self.value


class FutureAwaitable:
    def __init__(self, fut):
        self.fut = fut

    def __await__(self):
        return self.fut.__await__()


class Unhashable(Awaitable):
    __hash__ = None


@types.coroutine
def generator_awaitable(value):
    yield
    return value


def test_non_coroutine_awaitables(impl):
    def scenario(sc):
        async def main():
            before = asyncio.all_tasks()
            pf = asyncio.futures._PyFuture(loop=sc.loop)
            sc.loop.call_soon(pf.set_result, "py")
            aw = Awaitable("aw", steps=2)
            gen = generator_awaitable("gen")
            g = sc.gather(aw, pf, gen, worker(sc, "c", result="C"), aw)
            created = asyncio.all_tasks() - before
            sc("created", len(created),
               sorted(t._log_destroy_pending for t in created))
            await await_outer(sc, g)

        sc.run(main)

    trace = parity(impl, scenario)
    assert entry(trace, "main:result") == (["aw", "py", "gen", "C", "aw"],)
    # Under eager_task_factory the wrapper of ``c`` finished inside gather()
    # and was never registered as a running task.
    n = 2 if EAGER else 3
    assert entry(trace, "created")[0] == n
    assert entry(trace, "created")[1] == [False] * n


def test_pure_python_future_exception(impl):
    def args(sc, named):
        pf = asyncio.futures._PyFuture(loop=sc.loop)
        exc = Boom("py")
        sc.label(exc, "py.exc")
        sc.loop.call_soon(pf.set_exception, exc)
        named["pf"] = pf
        return [worker(sc, "a", steps=3, result="A"), pf]

    trace = parity(impl, gather_and_await(args, final=["pf"]))
    assert entry(trace, "main:raised")[0][:3] == ("Boom", ("py",), "py.exc")
    assert entry(trace, "pf:final")[0][2] == "retrieved"


# ---------------------------------------------------------------------------
# Already-done children (3.12+ completes synchronously)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("return_exceptions", [False, True])
@pytest.mark.parametrize("kind", ["results", "exception", "cancelled",
                                  "mixed", "duplicate"])
def test_already_done_children(impl, kind, return_exceptions):
    def scenario(sc):
        async def main():
            f1 = sc.loop.create_future()
            f1.set_result(1)
            f2 = sc.loop.create_future()
            if kind == "exception":
                exc = Boom("done")
                sc.label(exc, "f2.exc")
                f2.set_exception(exc)
            elif kind == "cancelled":
                f2.cancel("c")
            else:
                f2.set_result(2)
            args = [f1, f2]
            if kind == "mixed":
                args.append(worker(sc, "a", steps=1, result="A"))
            if kind == "duplicate":
                args = [f1, f1, f2, f1]
            g = sc.gather(*args, return_exceptions=return_exceptions)
            sc.watch(g, "g")
            sc("gathered", g.done(), sc.state(g))
            await await_outer(sc, g)
            sc("f2:final", sc.state(f2))

        sc.run(main)

    trace = parity(impl, scenario)
    gathered = entry(trace, "gathered")
    if kind == "mixed":
        assert gathered[0] is False
    else:
        assert gathered[0] is PY312
    if kind in ("results", "mixed", "duplicate"):
        want = {"results": [1, 2], "mixed": [1, 2, "A"],
                "duplicate": [1, 1, 2, 1]}[kind]
        assert entry(trace, "main:result") == (want,)
    elif kind == "exception":
        if return_exceptions:
            (results,) = entry(trace, "main:result")
            assert results[0] == 1
            assert results[1][:3] == ("Boom", ("done",), "f2.exc")
        else:
            assert entry(trace, "main:raised")[0][:3] == (
                "Boom", ("done",), "f2.exc")
        assert entry(trace, "f2:final")[0][2] == "retrieved"
    else:
        if return_exceptions:
            (results,) = entry(trace, "main:result")
            assert results[0] == 1
            assert excinfo(results[1]) == ("CancelledError", ("c",))
        else:
            assert excinfo(entry(trace, "main:raised")[0]) == (
                "CancelledError", ("c",))
    assert entry(trace, "g:cancelled") == (False,)


def test_eagerly_finished_children_complete_gather_synchronously(
        impl, loop_factory):
    """With eager_task_factory (3.12+) children that never suspend finish
    inside gather(), so the outer is done on return."""

    def scenario(sc):
        async def main():
            g = sc.gather(worker(sc, "a", result="A"),
                          worker(sc, "b", result="B"))
            sc("gathered", g.done())
            await await_outer(sc, g)

        sc.run(main)

    if not hasattr(asyncio, "eager_task_factory"):
        assert PY < (3, 12)
        trace = parity(impl, scenario)
        assert entry(trace, "gathered") == (False,)
        return
    trace = parity(impl, scenario, tasks="eager")
    assert entry(trace, "gathered") == (True,)
    assert entry(trace, "main:result") == (["A", "B"],)
    assert when(trace, "a:start") == when(trace, "gathered")


# ---------------------------------------------------------------------------
# KeyboardInterrupt / SystemExit
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("steps", [0, 1])
def test_child_raises_keyboardinterrupt_or_systemexit(impl, exc_type, steps):
    def scenario(sc):
        named = {}

        async def main():
            g = sc.gather(worker(sc, "a", steps=steps, exc=exc_type("k")),
                          worker(sc, "b", steps=3, result="B"))
            named["g"] = g
            sc.watch(g, "g")
            await await_outer(sc, g)

        task = sc.loop.create_task(main())
        sc.label(task, "main")
        try:
            sc.run(task)
        except BaseException as e:
            sc("run:raised", e)
        else:
            sc("run:returned")
        # run_until_complete() on a task that failed with KeyboardInterrupt
        # would never stop; keep stepping the loop instead.
        for i in range(6):
            try:
                sc.run_briefly()
            except BaseException as e:
                sc("step:raised", i, e)
        sc("main:final", sc.state(task))
        if "g" in named:
            sc("g:final", sc.state(named["g"]))

    trace = parity(impl, scenario)
    assert entry(trace, "run:raised")[0][:3] == (
        exc_type.__name__, ("k",), "a.exc")
    escaped = entry(trace, "run:raised")[0]
    final = entry(trace, "main:final")[0]
    if "g:final" in [e[1] for e in trace]:
        # The exception escaped the loop from the child's step; the outer
        # then got it like any other exception, and so did its awaiter.
        g_final = entry(trace, "g:final")[0]
        assert g_final[:2] == ("exception", escaped)
        assert entry(trace, "main:raised") == (escaped,)
        assert final == ("result", None, ("cancelling", 0))
        assert entry(trace, "b:return") == ("B",)
    else:
        # Eager start: the child raised inside gather(), which never
        # returned; it went out through the awaiting task.
        assert EAGER and steps == 0
        assert final[:2] == ("exception", escaped)
        assert events(trace, "b:start") == []


# ---------------------------------------------------------------------------
# The outer future
# ---------------------------------------------------------------------------

def outer_repr(g):
    """repr(gather's future) without debug mode's " created at file:line":
    asyncio/tasks.py for asyncio's, the caller's line for fastwait's (C;
    test_differences.py's test_debug_mode_source_locations pins both).
    Whether it is there is kept."""
    text, where = strip_created_at(normalize_addresses(repr(g)))
    assert (where is not None) == g.get_loop().get_debug()
    return text


def test_outer_type_and_repr(impl):
    def scenario(sc):
        async def main():
            g = sc.gather(worker(sc, "a", steps=1, result=1),
                          worker(sc, "b", result=2))
            sc("isinstance", isinstance(g, asyncio.Future),
               isinstance(g, asyncio.Task), asyncio.isfuture(g))
            sc("type", type(g).__name__)
            sc("repr-new", outer_repr(g))
            sc("loop", g.get_loop() is sc.loop)
            await await_outer(sc, g)
            sc("repr-done", outer_repr(g))
            g2 = sc.gather(worker(sc, "c", exc=Boom("c")))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            sc("repr-exc", outer_repr(g2))
            g2.exception()

        sc.run(main)

    trace = parity(impl, scenario)
    assert entry(trace, "isinstance") == (True, False, True)
    assert entry(trace, "type") == ("_GatheringFuture",)
    assert entry(trace, "repr-new")[0].startswith("<_GatheringFuture pending")
    assert entry(trace, "repr-done") == (
        "<_GatheringFuture finished result=[1, 2]>",)
    assert entry(trace, "repr-exc") == (
        "<_GatheringFuture finished exception=Boom('c')>",)
    assert entry(trace, "loop") == (True,)


def test_outer_repr_while_awaited(impl, loop):
    """The pending repr (with the awaiting task's wake-up callback) reads
    the same as the stdlib's."""
    reprs = {}

    async def child():
        await asyncio.sleep(0)
        return 1

    async def main(gather, key):
        g = gather(child())
        waiter = asyncio.ensure_future(g)

        async def peek():
            reprs[key] = outer_repr(g)
        await asyncio.gather(waiter, peek())

    run(loop, main(asyncio.gather, "ref"))
    run(loop, main(impl.gather, "impl"))
    assert reprs["impl"] == reprs["ref"]
    assert reprs["ref"].startswith("<_GatheringFuture pending cb=[")


def test_outer_callbacks_and_multiple_awaiters(impl):
    def scenario(sc):
        async def main():
            g = sc.gather(worker(sc, "a", steps=2, result="A"))
            g.add_done_callback(lambda f: sc("cb1", sc.state(f)))
            g.add_done_callback(lambda f: sc("cb2", sc.state(f)))

            async def other():
                sc("other", await g)
            t = sc.loop.create_task(other())
            await await_outer(sc, g)
            await t

        sc.run(main)

    trace = parity(impl, scenario)
    # Eagerly started, ``other`` awaits the outer before main does.
    order = ["cb1", "cb2", "other", "main:result"] if EAGER else \
        ["cb1", "cb2", "main:result", "other"]
    assert [e[1] for e in trace if e[1] in ("cb1", "cb2", "other",
                                             "main:result")] == order
    assert when(trace, "cb1") == when(trace, "main:result")


def test_children_log_destroy_pending_flag(impl):
    def scenario(sc):
        async def probe(name):
            task = asyncio.current_task()
            sc(f"{name}:flag-start", task._log_destroy_pending)
            await asyncio.sleep(0)
            sc(f"{name}:flag", task._log_destroy_pending)
            return name

        async def main():
            user = sc.loop.create_task(probe("user"))
            g = sc.gather(probe("coro"), Awaitable("aw", steps=0), user)
            await await_outer(sc, g)

        sc.run(main)

    trace = parity(impl, scenario)
    assert entry(trace, "coro:flag") == (False,)
    assert entry(trace, "user:flag") == (True,)
    # An eager first step runs inside create_task(), before gather() gets
    # to clear the flag.
    assert entry(trace, "coro:flag-start") == (EAGER,)
    assert entry(trace, "user:flag-start") == (True,)


def test_destroyed_pending_children_are_logged_like_stdlib(impl):
    """Only the user's own task is reported as "destroyed but pending";
    the tasks gather created are not."""

    def scenario(sc):
        async def stuck(name):
            sc(f"{name}:start")
            await sc.loop.create_future()

        async def main():
            user = sc.loop.create_task(stuck("user"))
            never = sc.loop.create_future()
            g = sc.gather(stuck("coro"), user, FutureAwaitable(never))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            sc("pending", g.done())

        sc.run(main)

    trace = parity(impl, scenario)
    handlers = events(trace, "exception-handler")
    assert [h[1] for h in handlers] == ["Task was destroyed but it is pending!"]
    assert handlers[0][2][:2] == ("task", "Task")
    assert handlers[0][2][2].endswith(".stuck")
    assert handlers[0][2][3] == ("pending", ("cancelling", 0))


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------

NOT_AWAITABLE = ("An asyncio.Future, a coroutine or an awaitable is required",)


def _sync_call(make_args, *, return_exceptions=False):
    """Scenario: call gather synchronously inside a running task, record
    what it raised, how many tasks it left behind, then let everything
    settle."""

    def scenario(sc):
        async def main():
            before = asyncio.all_tasks()
            args = make_args(sc)
            try:
                g = sc.gather(*args, return_exceptions=return_exceptions)
            except BaseException as e:
                sc("gather:raised", e)
            else:
                sc("gather:returned", g.done())
                await await_outer(sc, g)
            left = asyncio.all_tasks() - before
            sc("tasks-left", len(left))
            del args
            await drain(sc)

        sc.run(main)

    return scenario


def test_non_awaitable_argument(impl):
    trace = parity(impl, _sync_call(lambda sc: [42]))
    assert excinfo(entry(trace, "gather:raised")[0]) == ("TypeError",
                                                         NOT_AWAITABLE)
    assert entry(trace, "tasks-left") == (0,)


@pytest.mark.parametrize("child_exc", [None, Boom])
def test_non_awaitable_after_coroutine_leaves_task(impl, child_exc):
    """gather(coro, 42) raises, but coro's task was created first and still
    runs; what is (not) reported afterwards matches the stdlib."""

    def make_args(sc):
        exc = None if child_exc is None else child_exc("left")
        return [worker(sc, "a", steps=1, result="A", exc=exc), 42]

    trace = parity(impl, _sync_call(make_args))
    assert excinfo(entry(trace, "gather:raised")[0]) == ("TypeError",
                                                         NOT_AWAITABLE)
    assert entry(trace, "tasks-left") == (1,)
    assert len(events(trace, "a:start")) == 1


def test_non_awaitable_before_coroutine(impl):
    """gather(42, coro): the coroutine is never wrapped; the stdlib leaves it
    un-awaited (the RuntimeWarning is part of the trace)."""
    trace = parity(impl, _sync_call(
        lambda sc: [42, worker(sc, "a", result="A")]))
    assert excinfo(entry(trace, "gather:raised")[0]) == ("TypeError",
                                                         NOT_AWAITABLE)
    assert events(trace, "a:start") == []
    assert [e[:-1] + (strip_origin(e[-1]),)
            for e in events(trace, "warning")] == [
        ("warning", "RuntimeWarning", "coroutine 'worker' was never awaited")]


def test_unhashable_awaitable(impl):
    def make_args(sc):
        return [worker(sc, "a", result="A"), Unhashable(1)]

    trace = parity(impl, _sync_call(make_args))
    # 3.14 names the key in dict's message (arg_to_fut is a dict).
    assert excinfo(entry(trace, "gather:raised")[0]) == (
        "TypeError", (unhashable_message(Unhashable(1), "a dict key"),))
    assert len(events(trace, "a:start")) == 1


def test_unexpected_keyword_argument(impl, loop):
    with pytest.raises(TypeError) as got:
        impl.gather(loop=loop)
    with pytest.raises(TypeError) as want:
        asyncio.gather(loop=loop)
    assert got.value.args == want.value.args == (
        "gather() got an unexpected keyword argument 'loop'",)


def test_return_exceptions_truthiness(impl):
    trace = parity(impl, gather_and_await(
        lambda sc, named: [worker(sc, "a", exc=Boom("a"))],
        return_exceptions=1))
    assert entry(trace, "main:result")[0][0][:2] == ("Boom", ("a",))


@pytest.mark.parametrize("first", ["future", "coroutine"])
def test_futures_from_another_loop(impl, loop_factory, first):
    other = loop_factory()

    def scenario(sc):
        async def main():
            before = asyncio.all_tasks()
            if first == "future":
                mine = sc.loop.create_future()
                sc.loop.call_soon(mine.set_result, 1)
            else:
                mine = worker(sc, "a", steps=1, result="A")
            foreign = other.create_future()
            try:
                sc.gather(mine, foreign)
            except BaseException as e:
                sc("gather:raised", e)
            sc("tasks-left", len(asyncio.all_tasks() - before))
            try:
                sc.gather(foreign, mine if first == "future" else 1)
            except BaseException as e:
                sc("gather2:raised", e)
            foreign.cancel()
            await drain(sc)

        sc.run(main)

    trace = parity(impl, scenario)
    assert excinfo(entry(trace, "gather:raised")[0]) == (
        "ValueError",
        ("The future belongs to a different loop than the one specified as "
         "the loop argument",))
    assert entry(trace, "tasks-left") == ((1 if first == "coroutine" else 0),)


def test_first_argument_decides_the_loop(impl, loop, loop_factory):
    """Called in loop A with a future of loop B first, gather binds to B
    (3.11-3.13): the coroutine's task is created on B and the outer
    completes there.  3.14 binds to the running loop first, so the foreign
    future is rejected and the coroutine never runs."""

    def observe(gather):
        other = loop_factory()

        async def child():
            return ("c", asyncio.get_running_loop() is other)

        async def main():
            foreign = other.create_future()
            c = child()
            try:
                g = gather(foreign, c)
            except ValueError as e:
                state = inspect.getcoroutinestate(c)
                c.close()
                return None, foreign, (type(e).__name__, e.args, state,
                                       len(asyncio.all_tasks(other)),
                                       len(asyncio.all_tasks()))
            info = (g.get_loop() is other, len(asyncio.all_tasks(other)),
                    len(asyncio.all_tasks()))
            return g, foreign, info

        g, foreign, info = run(loop, main)
        foreign.set_result("f")
        if g is None:
            return info, None
        return info, other.run_until_complete(g)

    got = observe(impl.gather)
    want = observe(asyncio.gather)
    assert got == want
    if PY314:
        assert got == (("ValueError", (
            "The future belongs to a different loop than the one specified "
            "as the loop argument",), inspect.CORO_CREATED, 0, 1), None)
    else:
        assert got == ((True, 1, 1), ["f", ("c", True)])


def _closed_loop_call(impl, loop_factory, make_args):
    """Call gather outside a running loop whose current loop is closed;
    compare what happens (exception, coroutine states, warnings)."""
    results = []
    for gather in (impl.gather, asyncio.gather):
        closed = loop_factory()
        closed.close()
        asyncio.set_event_loop(closed)
        args = make_args(closed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                g = gather(*args)
            except BaseException as e:
                out = ("raised", type(e).__name__, e.args)
            else:
                out = ("returned", type(g).__name__, g.done())
            states = [inspect.getcoroutinestate(a) for a in args
                      if inspect.iscoroutine(a)]
            del args
            gc.collect()
        results.append((out, states,
                        [(w.category.__name__, str(w.message))
                         for w in caught]))
        asyncio.set_event_loop(None)
    assert results[0] == results[1]
    return results[0]


async def _plain():
    return 1


def test_closed_loop_coroutine(impl, loop_factory, event_loop_policy_guard):
    out, states, ws = _closed_loop_call(
        impl, loop_factory, lambda closed: [_plain()])
    assert out == ("raised", "RuntimeError", ("Event loop is closed",))
    assert states == [inspect.CORO_CLOSED]
    assert ws == []


def test_closed_loop_future_then_coroutine(impl, loop_factory,
                                           event_loop_policy_guard):
    out, states, ws = _closed_loop_call(
        impl, loop_factory,
        lambda closed: [asyncio.Future(loop=closed), _plain()])
    assert out == ("raised", "RuntimeError", ("Event loop is closed",))
    assert states == [inspect.CORO_CLOSED]
    assert ws == []


def test_closed_loop_awaitable(impl, loop_factory, event_loop_policy_guard):
    """The stdlib does not close the wrapper it makes for an awaitable
    (3.12+: a coroutine that then warns "never awaited"; 3.11's wrapper is
    a generator, which does not warn)."""
    out, states, ws = _closed_loop_call(
        impl, loop_factory, lambda closed: [Awaitable(1)])
    assert out == ("raised", "RuntimeError", ("Event loop is closed",))
    assert ws == ([(
        "RuntimeWarning",
        "coroutine 'ensure_future.<locals>._wrap_awaitable' was never awaited",
    )] if PY312 else [])


def test_closed_loop_only_futures(impl, loop_factory,
                                  event_loop_policy_guard):
    out, states, ws = _closed_loop_call(
        impl, loop_factory, lambda closed: [asyncio.Future(loop=closed)])
    assert out == ("returned", "_GatheringFuture", False)
    assert ws == []


def test_outside_running_loop_with_current_loop(impl, loop,
                                                event_loop_policy_guard):
    asyncio.set_event_loop(loop)

    def scenario_for(gather):
        log = []

        async def child(name, steps):
            log.append((name, "start", loop.fw_iteration))
            for _ in range(steps):
                await asyncio.sleep(0)
            log.append((name, "end", loop.fw_iteration))
            return name

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start = loop.fw_iteration
            g = gather(child("a", 2), child("b", 0))
            assert not g.done()
            result = loop.run_until_complete(g)
        return (result, [(n, e, i - start) for n, e, i in log],
                [str(w.message) for w in caught])

    got = scenario_for(impl.gather)
    want = scenario_for(asyncio.gather)
    assert got == want
    assert got[0] == ["a", "b"]
    assert got[2] == []


# ---------------------------------------------------------------------------
# Timers (virtual clock) and manual stepping
# ---------------------------------------------------------------------------

def test_children_on_timers_virtual_clock(impl, vloop):
    """Children that sleep on timers: results, completion order and the
    virtual time at which the outer completes match the stdlib."""

    def observe(gather):
        log = []

        async def child(name, delay):
            await asyncio.sleep(delay)
            log.append((name, vloop.time() - t0, vloop.fw_iteration - i0))
            return name

        async def main():
            g = gather(child("slow", 10), child("fast", 2.5),
                       asyncio.sleep(7, result="plain"))
            result = await g
            log.append(("outer", vloop.time() - t0, vloop.fw_iteration - i0))
            return result

        t0 = vloop.time()
        i0 = vloop.fw_iteration
        return run(vloop, main), log

    got = observe(impl.gather)
    want = observe(asyncio.gather)
    # Same results, order and virtual times.
    assert got[0] == want[0]
    assert [e[:2] for e in got[1]] == [e[:2] for e in want[1]]
    # Same iterations, except that native fastwait does not run the loop
    # iterations in which asyncio runs nothing but gather's own done-callback
    # while the loop is otherwise idle: "fast" (t=2.5) and "plain" (t=7) each
    # cost asyncio one such iteration before "slow" (see
    # test_differences.py::test_no_idle_iteration_for_gather_bookkeeping).
    # On 3.14 those iterations remove the children's call-graph edges, and
    # fastwait runs them too.
    skipped = ([0, 2, 2] if fastwait_wraps_children(impl, vloop)
               and not PY314 else [0, 0, 0])
    assert [w[2] - g[2] for g, w in zip(got[1], want[1])] == skipped
    result, log = got
    assert result == ["slow", "fast", "plain"]
    assert [(name, elapsed) for name, elapsed, _ in log] == [
        ("fast", 2.5), ("slow", 10.0), ("outer", 10.0)]
    assert vloop.clock.now >= 1010.0


def test_outer_cancel_while_children_sleep_virtual_clock(impl, vloop):
    def observe(gather):
        async def child(delay):
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError as e:
                return ("cancelled", vloop.time() - t0, e.args)
            return ("slept", vloop.time() - t0)

        async def main():
            g = gather(child(5), child(50), return_exceptions=True)
            loop = asyncio.get_running_loop()
            loop.call_later(20, g.cancel, "timeout")
            try:
                return await g
            except asyncio.CancelledError as e:
                return ("outer-cancelled", vloop.time() - t0, e.args)

        t0 = vloop.time()
        return run(vloop, main)

    got = observe(impl.gather)
    want = observe(asyncio.gather)
    assert got == want
    # cancel() cancelled the second child, so the outer raises even though
    # that child swallowed the cancellation and returned; the error comes
    # from that (last) child, which finished normally: no message.
    assert got == ("outer-cancelled", 20.0, ())


def test_stepping_the_loop_by_hand(impl, loop):
    """Drive the loop one iteration at a time; the outer's state after each
    step matches the stdlib's."""

    def observe(gather):
        async def child(n):
            for _ in range(n):
                await asyncio.sleep(0)
            return n

        g = None
        states = []

        async def start():
            nonlocal g
            g = gather(child(2), child(0), child(1))

        run(loop, start)
        for _ in range(6):
            states.append((g.done(), g.done() and g.result()))
            run_briefly(loop)
        return states

    got = observe(impl.gather)
    want = observe(asyncio.gather)
    assert got == want
    assert got[-1] == (True, [2, 0, 1])
    assert got[0] == (False, False)


# ---------------------------------------------------------------------------
# 3.14: call-graph edges (asyncio.capture_call_graph)
# ---------------------------------------------------------------------------

def _later(loop, n, fn, *args):
    """Call fn(*args) from a loop callback n iterations from now."""
    if n <= 0:
        loop.call_soon(fn, *args)
    else:
        loop.call_soon(_later, loop, n - 1, fn, *args)


def _gather_graph(gather, loop_factory, case, return_exceptions,
                  extra=lambda loop: []):
    loop = loop_factory()
    gw = GraphWatch(loop)

    child = stepping_child

    async def main():
        gw.track("main", asyncio.current_task())
        fut = gw.track("fut", loop.create_future())
        done = gw.track("done", loop.create_future())
        done.set_result("d")
        first = child(1, Boom("x") if case == "fail" else None)
        args = [first, child(3), fut, done, first] + extra(loop)
        g = gather(*args, return_exceptions=return_exceptions)
        for i, c in enumerate(g._children):
            if gw.label(c) == "?":
                gw.track(f"child{i}", c)
        gw.track("outer", g)
        gw.snap("after-gather")
        gw.each_iteration(9)
        _later(loop, 5, lambda: fut.done() or fut.set_result("f"))
        if case == "cancel-child":
            _later(loop, 0, g._children[1].cancel, "c")
        elif case == "outer-cancel":
            _later(loop, 0, g.cancel, "o")
        try:
            out = ("result", [(type(r).__name__, r.args)
                              if isinstance(r, BaseException) else r
                              for r in await g])
        except BaseException as e:  # noqa: B902 - recorded
            out = ("raised", type(e).__name__, e.args)
        gw.snap("after-await")
        for _ in range(8):
            await asyncio.sleep(0)
        gw.snap("end")
        gw.release()
        return out

    return run(loop, main), gw.log


@pytest.mark.parametrize("case", ["ok", "fail", "cancel-child",
                                  "outer-cancel"])
@pytest.mark.parametrize("return_exceptions", [False, True])
def test_call_graph_edges(impl, loop_factory, case, return_exceptions):
    """3.14: each child not done when gather() sees it is recorded as
    awaited by the calling task; a child's edge goes in its done-callback
    (the iteration after it finished, also for fastwait's wrapped children,
    which have no such callback), and every child's edge goes when a failure
    finishes the outer early (gh-157213).  The snapshots, once per
    iteration and at the marked points, are asyncio's."""
    got = _gather_graph(impl.gather, loop_factory, case, return_exceptions)
    want = _gather_graph(asyncio.gather, loop_factory, case,
                         return_exceptions)
    assert got == want
    if not PY314:
        return
    out, log = want
    edges = dict(log[0][1])
    assert edges["child0"] == edges["child1"] == ["main"]
    assert edges["fut"] == ["main"] and edges["done"] == []
    end = dict(log[-1][1])
    assert all(end[k] == [] for k in end if k != "outer")


def test_call_graph_edges_of_duplicates_and_awaitables(impl, loop_factory):
    """Tasks made for other awaitables take part like any child; a
    duplicate argument is one child with one edge."""

    class Awaitable:
        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            return "a"

    extra = (lambda loop: [Awaitable()])
    got = _gather_graph(impl.gather, loop_factory, "ok", False, extra)
    want = _gather_graph(asyncio.gather, loop_factory, "ok", False, extra)
    assert got == want


@pytest.mark.parametrize("where", ["callback", "outside"])
def test_call_graph_without_a_current_task(impl, loop_factory, where):
    """Called from a plain loop callback (a running loop, no task) or with
    no running loop, gather records no edge; the running loop still binds
    the children on 3.14."""

    def observe(gather):
        loop = loop_factory()
        gw = GraphWatch(loop)
        fut = gw.track("fut", loop.create_future())
        made = []

        def call():
            g = gather(fut)
            made.append(g)
            gw.snap("after-gather")

        if where == "callback":
            loop.call_soon(call)
            run_briefly(loop)
        else:
            call()
        fut.set_result(1)
        result = loop.run_until_complete(made[0])
        gw.snap("end")
        gw.release()
        return result, gw.log

    got = observe(impl.gather)
    want = observe(asyncio.gather)
    assert got == want
    if PY314:
        assert want[1][0] == ("after-gather", [("fut", [])])
