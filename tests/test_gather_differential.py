"""Differential test: random gather scenarios, stdlib against fastwait.

Each generated scenario is run twice, with ``asyncio.gather`` and with
``fastwait.gather``, each on a fresh loop of the active axes (loop kind and
task factory), and the complete traces must be equal: every event with the
loop iteration it happened in, results, exception types, args and identity
(is the raised object the child's own?), ``cancelled()`` states,
``cancelling()`` counts, ``cancel()`` return values, exception-handler calls
and warnings.

A scenario: 0..8 arguments (with duplicates: the same task, future,
coroutine object or awaitable passed again) built from up to 6 distinct
children.  A child is a coroutine, a task created beforehand, a plain
Future, a pure-Python ``_PyFuture`` or an awaitable object.  Coroutine-like
children suspend 0..3 times (``sleep(0)`` or a future resolved by the
driver at a chosen step) and then return, raise an Exception, raise a
BaseException subclass, raise CancelledError themselves, or get cancelled
by the driver (optionally swallowing the cancellation).  Futures are
resolved, failed or cancelled by the driver at a chosen step.  The driver
can also cancel the outer future or the task awaiting it, with or without
a message.  ``return_exceptions`` both ways.
"""

import asyncio
from dataclasses import dataclass, field
from typing import Optional, Tuple

from hypothesis import example, given, note
from hypothesis import strategies as st

import fastwait
from conftest import settle_garbage, trace_scenario
from helpers import AwaitableChild, Boom, Child, note_first_difference
from helpers import add_ext_cancel, add_gates, own_exception, run_main
from helpers import child_outcomes, future_resolutions, record_final_states
from helpers import record_graph_edges

MAX_STEP = 6


# ---------------------------------------------------------------------------
# Scenario description
# ---------------------------------------------------------------------------

# Child (helpers): coro | task | awaitable | future | pyfuture; coroutine-
# like children suspend with ("sleep",) | ("future", step).

@dataclass(frozen=True)
class Scenario:
    children: Tuple[Child, ...]
    args: Tuple[int, ...]
    return_exceptions: bool
    # ("outer" | "outer-late" | "parent", step, msg) or None; "outer-late"
    # cancels the outer at the first step >= step at which every child is
    # done but the outer is not yet.
    cancel: Optional[Tuple] = None
    # loop iterations main waits between creating the children and calling
    # gather() (pre-created tasks may finish meanwhile)
    pre_steps: int = 0
    notes: Tuple = field(default=(), compare=False)


messages = st.sampled_from([None, "m1", "m2"])
steps = st.integers(0, MAX_STEP)

suspensions = st.lists(
    st.one_of(st.just(("sleep",)), st.tuples(st.just("future"), steps)),
    max_size=3,
).map(tuple)

outcomes = child_outcomes(steps, messages)

# Half of the futures are already done when gather() is called (3.12+
# handles those synchronously).
resolutions = future_resolutions(steps, messages)


@st.composite
def children(draw):
    kind = draw(st.sampled_from(
        ["coro", "coro", "task", "task", "awaitable", "future", "pyfuture"]))
    if kind in ("future", "pyfuture"):
        return Child(kind=kind, resolve=draw(resolutions))
    return Child(
        kind=kind,
        suspend=draw(suspensions),
        outcome=draw(outcomes),
        catch_cancel=draw(st.booleans()),
    )


@st.composite
def scenarios(draw):
    n = draw(st.integers(0, 6))
    kids = tuple(draw(children()) for _ in range(n))
    if n:
        extra = draw(st.lists(st.integers(0, n - 1), max_size=8 - n))
        args = tuple(draw(st.permutations(list(range(n)) + extra)))
    else:
        args = ()
    cancel = draw(st.one_of(
        st.none(),
        st.tuples(st.sampled_from(["outer", "outer-late", "parent"]), steps,
                  messages),
    ))
    return Scenario(children=kids, args=args,
                    return_exceptions=draw(st.booleans()), cancel=cancel,
                    pre_steps=draw(st.integers(0, 2)))


# ---------------------------------------------------------------------------
# Running a scenario
# ---------------------------------------------------------------------------

def build(spec):
    """The scenario function (see conftest.trace_scenario) for ``spec``."""

    def scenario(sc):
        loop = sc.loop
        tasks = {}  # child index -> Task running it (once known)
        futures = {}  # child index -> plain future child
        record_graph_edges(sc, futures, tasks)
        waits = {}  # (child index, position) -> future to await
        actions = {}  # step -> [callable]
        state = {}

        def at(step, action):
            actions.setdefault(step, []).append(action)

        async def body(i, child):
            tasks.setdefault(i, asyncio.current_task())
            sc(f"c{i}:start")
            exc = None
            try:
                for j, how in enumerate(child.suspend):
                    if how[0] == "sleep":
                        await asyncio.sleep(0)
                    else:
                        await waits[i, j]
                    sc(f"c{i}:resume", j)
                kind = child.outcome[0]
                exc = own_exception(sc, i, child.outcome)
                if exc is not None:
                    raise exc
                if kind == "ext_cancel":
                    # Keep running until the driver's cancellation lands.
                    for _ in range(MAX_STEP + 3):
                        await asyncio.sleep(0)
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
            if child.kind in ("future", "pyfuture"):
                cls = (asyncio.futures._PyFuture if child.kind == "pyfuture"
                       else asyncio.Future)
                fut = cls(loop=loop)
                sc.label(fut, f"c{i}")
                futures[i] = fut
                how = child.resolve

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

                if how[1] < 0:
                    resolve()
                else:
                    at(how[1], resolve)
                return fut
            add_gates(loop, at, waits, i, child, "future")
            if child.outcome[0] == "ext_cancel":
                _, step, msg = child.outcome
                add_ext_cancel(sc, at, tasks, i, step, msg)
            if child.kind == "coro":
                return body(i, child)
            if child.kind == "awaitable":
                return AwaitableChild(lambda: body(i, child))
            t = loop.create_task(body(i, child))
            tasks[i] = t
            sc.label(t, f"c{i}")
            return t

        if spec.cancel is not None:
            target, step, msg = spec.cancel

            def cancel_outer():
                g = state.get("g")
                if target == "outer-late":
                    if g is None or g.done() or state.get("late-done"):
                        return
                    kids = list(futures.values()) + [
                        tasks.get(i) for i, c in enumerate(spec.children)
                        if i not in futures]
                    if all(k is not None and k.done() for k in kids):
                        state["late-done"] = True
                        sc("cancel-outer-late", g.cancel(msg), g.done())
                    else:
                        at(s[0] + 1, cancel_outer)
                elif target == "outer":
                    if g is None:
                        sc("cancel-outer", "no-outer")
                    else:
                        sc("cancel-outer", g.cancel(msg), g.done())
                else:
                    main = state["main"]
                    if main.done() or g is None or g.done():
                        sc("cancel-parent", "skipped")
                    else:
                        sc("cancel-parent", main.cancel(msg),
                           main.cancelling())

            at(step, cancel_outer)

        s = [0]

        async def driver():
            for step in range(MAX_STEP + 1):
                s[0] = step
                sc("driver:step", step)
                for action in actions.get(step, ()):
                    action()
                await asyncio.sleep(0)
            for fut in list(futures.values()) + list(waits.values()):
                if not fut.done():
                    fut.set_result("late")
            sc("driver:done")

        async def main():
            state["main"] = asyncio.current_task()
            objs = [make_child(i, c) for i, c in enumerate(spec.children)]
            args = [objs[i] for i in spec.args]
            for _ in range(spec.pre_steps):
                await asyncio.sleep(0)
            before = asyncio.all_tasks()
            try:
                g = sc.gather(*args, return_exceptions=spec.return_exceptions)
            except BaseException as e:
                sc("gather:raised", e)
                g = None
            else:
                sc.watch(g, "g")
                state["g"] = g
                sc("gathered", type(g).__name__, g.done(),
                   len(asyncio.all_tasks() - before))
            del args, objs
            drv = loop.create_task(driver())
            if g is not None:
                try:
                    result = await g
                except BaseException as e:
                    sc("main:raised", e)
                else:
                    sc("main:result", result)
                sc("main:cancelling", asyncio.current_task().cancelling())
            me = asyncio.current_task()
            for _ in range(MAX_STEP * 4 + 20):
                if drv.done() and all(
                        t.done() for t in asyncio.all_tasks() if t is not me):
                    break
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError as e:
                    sc("main:cancelled-late", e)
            else:
                raise AssertionError("scenario did not settle")
            if g is not None:
                sc("g:final", sc.state(g), g.cancelled())
            record_final_states(sc, len(spec.children), futures, tasks)
            sc("main:final-cancelling", me.cancelling())

        run_main(sc, main())

    return scenario


@given(spec=scenarios())
# 3.11: children done at creation (a finished task, a failed future) on both
# sides of a coroutine whose task gather creates: their callbacks must keep
# their places around that task's first step (found by the dev profile).
@example(spec=Scenario(
    children=(Child(kind="coro"), Child(kind="task"),
              Child(kind="coro", suspend=(("sleep",),)),
              Child(kind="future", resolve=("exception", -1))),
    args=(0, 1, 2, 3), return_exceptions=False, cancel=None, pre_steps=1))
def test_gather_matches_stdlib(spec):
    note(repr(spec))
    settle_garbage()
    scenario = build(spec)
    want = trace_scenario(asyncio.gather, scenario)
    got = trace_scenario(fastwait.gather, scenario)
    # The trace is never trivial: main either got an outcome from the outer
    # or saw gather() itself raise.
    names = {e[1] for e in want}
    assert {"main:result", "main:raised", "gather:raised"} & names, want
    assert "main:state" in names
    # The harness itself never failed (deadlock, runaway, unsettled).
    assert not {"run:raised", "scenario-raised"} & names, want
    note_first_difference(got, want)
    assert got == want


def test_scenario_runner_is_deterministic():
    """Two stdlib runs of a busy scenario give the same trace (the property
    above would be meaningless otherwise)."""
    spec = Scenario(
        children=(
            Child("coro", suspend=(("sleep",), ("future", 2)),
                  outcome=("raise",)),
            Child("task", suspend=(("sleep",),),
                  outcome=("ext_cancel", 1, "m1"), catch_cancel=True),
            Child("future", resolve=("cancel", 3, "m2")),
            Child("awaitable", outcome=("self_cancel", None)),
            Child("pyfuture", resolve=("exception", 0)),
        ),
        args=(0, 1, 2, 1, 3, 4, 0),
        return_exceptions=True,
        cancel=("parent", 2, "m1"),
    )
    first = trace_scenario(asyncio.gather, build(spec))
    second = trace_scenario(asyncio.gather, build(spec))
    assert first == second
    names = [e[1] for e in first]
    assert "main:raised" in names or "main:result" in names
    assert "c1:cancelled" in names
