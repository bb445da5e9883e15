"""Differential test: random wait() scenarios, stdlib against fastwait.

Each generated scenario runs twice, with ``asyncio.wait`` and with
``fastwait.wait``, each on a fresh loop, and the complete traces must be
equal: every event with the loop iteration it happened in, the done/pending
membership of every child (by label: set order is hash-based in the stdlib),
exceptions with their identity, ``cancelled()`` states and ``cancelling()``
counts, whether each exception was retrieved, the done-callbacks left on
every child, exception-handler calls after gc, warnings and, on the virtual
clock, the time of every event.

A scenario: 0..6 arguments (with duplicates) built from up to 5 distinct
children.  A child is a task (created with the loop's task factory, so
eager on the eager axis), a pure-Python ``_PyTask``, a Future, a pure-Python
``_PyFuture`` or, rarely, a bare coroutine (which wait() refuses).  Tasks
suspend 0..3 times (``sleep(0)``, a gate future resolved by the driver at a
chosen step or, on the virtual clock, a timed sleep) and then return, raise
an Exception, raise a BaseException subclass, raise CancelledError
themselves, or get cancelled by the driver (optionally swallowing it).
Futures are resolved, failed or cancelled at a chosen step, before the call
(step -1) or never.  ``return_when`` is random; ``timeout`` is None, 0 or
negative, or, for timed scenarios (default loop on a virtual clock, one
driver step per virtual second), a multiple of 0.5 s so that deadlines fall
on or between completions.  The driver can cancel the waiting task at a
chosen step, with or without a message.

One stdlib order is arbitrary: with FIRST_EXCEPTION, when every child is
already done at the call, the children's callbacks run in set order and the
last one skips ``exception()``, so which exception stays unretrieved varies
from run to run (see test_wait.py::
test_all_done_first_exception_leaves_exactly_one_unretrieved).  Such a
scenario gets one extra pending future ("guard", resolved by the driver
at the last step) so that every callback sees the counter above zero.
"""

import asyncio
from dataclasses import dataclass
from typing import Optional, Tuple

from hypothesis import event, given, note
from hypothesis import strategies as st

import fastwait
from conftest import VirtualClock, settle_garbage, trace_scenario
from helpers import Boom, Child, note_first_difference, own_exception
from helpers import add_ext_cancel, add_gates, run_main
from helpers import child_outcomes, future_resolutions, record_graph_edges

MAX_STEP = 6
PyFuture = asyncio.futures._PyFuture
PyTask = asyncio.tasks._PyTask
MODES = (asyncio.ALL_COMPLETED, asyncio.FIRST_COMPLETED,
         asyncio.FIRST_EXCEPTION)


# ---------------------------------------------------------------------------
# Scenario description
# ---------------------------------------------------------------------------

# Child (helpers): task | pytask | future | pyfuture | coro; tasks suspend
# with ("sleep",) | ("gate", step) | ("sleep_t", seconds); futures may also
# be resolved ("never",).

@dataclass(frozen=True)
class Scenario:
    children: Tuple[Child, ...]
    args: Tuple[int, ...]
    return_when: str
    timeout: Optional[float]
    timed: bool  # virtual clock, driver steps of one second
    # ("main", step, msg) or None: cancel the task awaiting wait()
    cancel: Optional[Tuple] = None
    # loop iterations main waits between creating the children and calling
    # wait() (tasks may finish meanwhile)
    pre_steps: int = 0


messages = st.sampled_from([None, "m1", "m2"])
steps = st.integers(0, MAX_STEP)


def suspensions(timed):
    kinds = [st.just(("sleep",)), st.tuples(st.just("gate"), steps)]
    if timed:
        kinds.append(st.tuples(st.just("sleep_t"),
                               st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0])))
    return st.lists(st.one_of(*kinds), max_size=3).map(tuple)


outcomes = child_outcomes(steps, messages, raise_twice=True)
resolutions = future_resolutions(steps, messages, never=True)


@st.composite
def children(draw, timed):
    kind = draw(st.sampled_from(
        ["task", "task", "task", "pytask", "future", "future", "pyfuture"]))
    if kind in ("future", "pyfuture"):
        return Child(kind=kind, resolve=draw(resolutions))
    return Child(
        kind=kind,
        suspend=draw(suspensions(timed)),
        outcome=draw(outcomes),
        catch_cancel=draw(st.booleans()),
    )


@st.composite
def scenarios(draw):
    shape = draw(st.sampled_from(["timed-timeout", "timed", "plain",
                                  "plain-timeout"]))
    timed = shape.startswith("timed")
    # Rarely no child at all (ValueError) or a bare coroutine (TypeError).
    n = draw(st.sampled_from([0] + [1, 2, 3, 4, 5] * 4))
    kids = [draw(children(timed)) for _ in range(n)]
    if n and draw(st.sampled_from([False] * 19 + [True])):
        kids[draw(st.integers(0, n - 1))] = Child(kind="coro")
    if n:
        extra = draw(st.lists(st.integers(0, n - 1), max_size=6 - n))
        args = tuple(draw(st.permutations(list(range(n)) + extra)))
    else:
        args = ()
    if shape == "timed-timeout":
        timeout = draw(st.integers(-1, 2 * MAX_STEP + 2)) / 2
    elif shape == "plain-timeout":
        timeout = draw(st.sampled_from([0, -1]))
    else:
        timeout = None
    cancel = draw(st.one_of(
        st.none(), st.tuples(st.just("main"), steps, messages)))
    return Scenario(children=tuple(kids), args=args,
                    return_when=draw(st.sampled_from(MODES)),
                    timeout=timeout, timed=timed, cancel=cancel,
                    pre_steps=draw(st.integers(0, 2)))


# ---------------------------------------------------------------------------
# Running a scenario
# ---------------------------------------------------------------------------

def n_callbacks(fut):
    return len(fut._callbacks or ())


def build(spec):
    """The scenario function (see conftest.trace_scenario) for ``spec``;
    it calls ``sc.gather``, which trace_scenario sets to the wait() under
    test."""

    def scenario(sc):
        wait = sc.gather
        loop = sc.loop
        tasks = {}  # child index -> Task running it (once known)
        futures = {}  # child index -> future child
        record_graph_edges(sc, futures, tasks)
        gates = {}  # (child index, position) -> gate future
        actions = {}  # step -> [callable]
        state = {}

        def at(step, action):
            actions.setdefault(step, []).append(action)

        def now():
            return loop.time() if spec.timed else None

        async def body(i, child):
            tasks.setdefault(i, asyncio.current_task())
            sc(f"c{i}:start")
            exc = None
            try:
                for j, how in enumerate(child.suspend):
                    if how[0] == "sleep":
                        await asyncio.sleep(0)
                    elif how[0] == "sleep_t":
                        await asyncio.sleep(how[1])
                    else:
                        await gates[i, j]
                    sc(f"c{i}:resume", j, now())
                kind = child.outcome[0]
                exc = own_exception(sc, i, child.outcome)
                if exc is not None:
                    raise exc
                if kind == "ext_cancel":
                    # Keep running until the driver's cancellation lands.
                    for _ in range(MAX_STEP + 3):
                        await asyncio.sleep(1 if spec.timed else 0)
            except asyncio.CancelledError as e:
                if e is not exc:
                    sc.label(e, f"c{i}.cancel")
                    sc(f"c{i}:cancelled", e)
                    if child.catch_cancel:
                        sc(f"c{i}:return", "caught")
                        return "caught"
                raise
            sc(f"c{i}:return", f"r{i}")
            return f"r{i}"

        def make_child(i, child):
            if child.kind == "coro":
                c = body(i, child)
                sc.label(c, f"c{i}")
                return c
            if child.kind in ("future", "pyfuture"):
                cls = PyFuture if child.kind == "pyfuture" else asyncio.Future
                fut = cls(loop=loop)
                sc.label(fut, f"c{i}")
                futures[i] = fut
                how = child.resolve
                if how[0] == "never":
                    return fut

                def resolve():
                    if fut.done():
                        return
                    if how[0] == "result":
                        fut.set_result(f"f{i}")
                    elif how[0] == "exception":
                        exc = Boom(f"f{i}")
                        sc.label(exc, f"c{i}.exc")
                        fut.set_exception(exc)
                    else:
                        sc(f"c{i}:cancel", fut.cancel(how[2]))
                    sc(f"c{i}:resolved", how[0], now())

                if how[1] < 0:
                    resolve()
                else:
                    at(how[1], resolve)
                return fut
            add_gates(loop, at, gates, i, child, "gate")
            if child.outcome[0] == "ext_cancel":
                _, step, msg = child.outcome
                add_ext_cancel(sc, at, tasks, i, step, msg)
            if child.kind == "pytask":
                t = PyTask(body(i, child), loop=loop)
            else:
                t = loop.create_task(body(i, child))
            tasks[i] = t
            sc.label(t, f"c{i}")
            return t

        if spec.cancel is not None:
            _, step, msg = spec.cancel

            def cancel_main():
                main = state["main"]
                if main.done() or state.get("returned"):
                    sc("cancel-main", "skipped")
                else:
                    sc("cancel-main", main.cancel(msg), main.cancelling())

            at(step, cancel_main)

        async def driver():
            for step in range(MAX_STEP + 1):
                sc("driver:step", step, now())
                for action in actions.get(step, ()):
                    action()
                await asyncio.sleep(1 if spec.timed else 0)
            for fut in list(futures.values()) + list(gates.values()):
                if not fut.done():
                    fut.set_result("late")
            sc("driver:done", now())

        def kids():
            return [(i, tasks.get(i, futures.get(i)))
                    for i in range(len(spec.children))]

        async def main():
            me = state["main"] = asyncio.current_task()
            objs = [make_child(i, c) for i, c in enumerate(spec.children)]
            args = [objs[i] for i in spec.args]
            for _ in range(spec.pre_steps):
                await asyncio.sleep(0)
            drv = loop.create_task(driver())
            unique = list(dict.fromkeys(args))
            if (spec.return_when == asyncio.FIRST_EXCEPTION
                    and len(unique) >= 2
                    and all(asyncio.isfuture(a) and a.done() for a in unique)
                    and any(not a.cancelled() and a._exception is not None
                            for a in unique)):
                guard = loop.create_future()
                sc.label(guard, "guard")
                futures["guard"] = guard
                args.append(guard)
                sc("guard-added")
            sc("call", [(sc.label(a), asyncio.isfuture(a) and a.done())
                        for a in unique], now())
            try:
                result = await wait(args, timeout=spec.timeout,
                                    return_when=spec.return_when)
            except BaseException as e:
                state["returned"] = True
                sc("main:raised", e, now())
            else:
                state["returned"] = True
                done, pending = result
                assert type(done) is set and type(pending) is set
                assert done.isdisjoint(pending)
                assert done | pending == set(args)
                sc("main:returned", sorted(sc.label(f) for f in done),
                   sorted(sc.label(f) for f in pending), now())
                del done, pending, result
            sc("main:cancelling", me.cancelling())
            if spec.timed:
                sc("live-timers", sum(not h.cancelled()
                                      for h in loop._scheduled))
            sc("callbacks-after", [
                (sc.label(k), n_callbacks(k)) for _, k in kids()
                if k is not None and asyncio.isfuture(k)])
            del args, objs, unique
            for _ in range(MAX_STEP * 8 + 30):
                if drv.done() and all(
                        t.done() for t in asyncio.all_tasks() if t is not me):
                    break
                try:
                    # (0.3 s: off the grid of the deadlines and the
                    # driver's steps, so a stray timer costs an iteration.)
                    await asyncio.sleep(0.3 if spec.timed else 0)
                except asyncio.CancelledError as e:
                    sc("main:cancelled-late", e)
            else:
                raise AssertionError("scenario did not settle")
            for i, k in kids():
                if k is None:
                    sc(f"c{i}:final", "no-task")
                else:
                    sc(f"c{i}:final", sc.state(k), n_callbacks(k))
            sc("main:final-cancelling", me.cancelling(), now())

        run_main(sc, main())

    return scenario


def trace(wait, spec):
    return trace_scenario(wait, build(spec),
                          clock=VirtualClock() if spec.timed else None)


@given(spec=scenarios())
def test_wait_matches_stdlib(spec):
    note(repr(spec))
    settle_garbage()
    want = trace(asyncio.wait, spec)
    got = trace(fastwait.wait, spec)
    names = {e[1] for e in want}
    for e in want:  # (shown by --hypothesis-show-statistics)
        if e[1] == "main:returned":
            event(f"returned, {len(e[2])} done, {len(e[3])} pending")
        elif e[1] == "main:raised":
            event(f"raised {e[2][0]}")
        elif e[1] == "exception-handler":
            event("exception logged")
        elif e[1] == "guard-added":
            event("guard added")
    event(f"timed={spec.timed} timeout={spec.timeout is not None}")
    # The trace is never trivial: main got an outcome from wait().
    assert {"main:returned", "main:raised"} & names, want
    assert "main:state" in names
    # The harness itself never failed (deadlock, runaway, unsettled).
    assert not {"run:raised", "scenario-raised"} & names, want
    note_first_difference(got, want)
    assert got == want


def test_scenario_runner_is_deterministic():
    """Two stdlib runs of busy scenarios give the same trace (the property
    above would be meaningless otherwise), and they exercise what they
    should."""
    specs = [
        Scenario(
            children=(
                Child("task", suspend=(("sleep",), ("gate", 2)),
                      outcome=("raise",)),
                Child("pytask", suspend=(("sleep",),),
                      outcome=("ext_cancel", 1, "m1"), catch_cancel=True),
                Child("future", resolve=("cancel", 3, "m2")),
                Child("pyfuture", resolve=("exception", -1)),
                Child("task", outcome=("self_cancel", None)),
            ),
            args=(0, 1, 2, 1, 3, 4),
            return_when=asyncio.FIRST_EXCEPTION,
            timeout=None, timed=False,
            cancel=("main", 1, "m1"),
        ),
        Scenario(
            children=(
                Child("task", suspend=(("sleep_t", 1.5),), outcome=("raise",)),
                Child("future", resolve=("result", 2)),
                Child("task", suspend=(("sleep_t", 3.0),)),
                Child("future", resolve=("never",)),
            ),
            args=(0, 1, 2, 3, 0),
            return_when=asyncio.ALL_COMPLETED,
            timeout=2.5, timed=True,
        ),
        # Every child failed before the call: the guard is added.
        Scenario(
            children=(Child("future", resolve=("exception", -1)),
                      Child("pyfuture", resolve=("exception", -1))),
            args=(0, 1),
            return_when=asyncio.FIRST_EXCEPTION,
            timeout=None, timed=False,
        ),
    ]
    traces = []
    for spec in specs:
        first = trace(asyncio.wait, spec)
        second = trace(asyncio.wait, spec)
        assert first == second
        traces.append(first)
    names = [{e[1] for e in t} for t in traces]
    assert "main:raised" in names[0] and "c1:cancelled" in names[0]
    assert "guard-added" not in names[0]
    returned = [e for e in traces[1] if e[1] == "main:returned"]
    # The deadline (t=1002.5) fell between the completions.
    assert returned == [(returned[0][0], "main:returned", ["c0", "c1"],
                         ["c2", "c3"], 1002.5)]
    assert "guard-added" in names[2]
    returned = [e[2:] for e in traces[2] if e[1] == "main:returned"]
    assert returned == [(["c0", "c1"], ["guard"], None)]
