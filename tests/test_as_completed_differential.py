"""Differential test: random as_completed scenarios, stdlib against fastwait.

Each generated scenario runs with ``asyncio.as_completed`` and with
``fastwait.as_completed``, each on a fresh loop (of the active axes, or the
default loop with a virtual clock when the scenario uses timers), and the
traces must be equal: every event with the loop iteration it happened in,
results and exceptions by label (type, args, identity, ``__context__``),
final states of the children (``cancelled()``, ``cancelling()``,
retrieved or not), exception-handler calls and warnings after gc.

The stdlib keeps its inputs in sets, so the order in which it creates the
tasks for coroutines and reports futures that were already done depends on
hashing (README, difference #3).  Traces are therefore compared with the
entries of each loop iteration as a multiset and anonymous labels masked
(``test_as_completed.canonical``), and the order the items come in is
checked separately, in every run, against the stdlib's contract: first the
children that were done when the work started (any order), then the others
in the order they finished, up to a timeout (after which every item raises
TimeoutError).

A scenario: up to 6 distinct children, passed in a random order with
duplicates.  A child is a coroutine or a non-coroutine awaitable (the
stdlib makes the task), a task created beforehand, a plain Future or a
pure-Python ``_PyFuture``.  Coroutine-like children suspend on futures the
driver resolves at chosen steps (and, on a virtual clock, on timed sleeps);
tasks created beforehand also ``sleep(0)``.  Their outcomes: return, raise,
raise a BaseException subclass, raise CancelledError themselves, or be
cancelled by the driver (optionally swallowing it).  Futures are resolved,
failed or cancelled at a chosen step, or before the call.  Optional timeout
on the virtual clock.  The consumer iterates plainly (3.13, or fastwait's
native version: also with ``async for``) and may be cancelled by the driver
at step j, after which it stops, breaks out or raises from the loop body.

Coroutine-like children never ``sleep(0)``: the stdlib's own timing would
then depend on hashing (see test_as_completed's module docstring), and the
reference would not be deterministic.
"""

import asyncio
import re
from dataclasses import dataclass, field, replace
from typing import Optional, Tuple

from hypothesis import given, note
from hypothesis import strategies as st

import fastwait
from conftest import PY, entry, settle_garbage
from helpers import PY314, AwaitableChild, Boom, Child, note_first_difference
from helpers import add_ext_cancel, add_gates, numbered_message, run_main
from helpers import child_outcomes, future_resolutions, own_exception
from helpers import record_final_states, record_graph_edges
from test_as_completed import project, trace_ac

MAX_STEP = 6
PY313 = PY >= (3, 13)


def modes():
    """Ways the consumer may iterate: ``async for`` where the stdlib has it
    (3.13), or fastwait's native version has it (every version)."""
    if PY313 or "as_completed" in fastwait.NATIVE_NAMES:
        return ["plain", "async"]
    return ["plain"]


# ---------------------------------------------------------------------------
# Scenario description
# ---------------------------------------------------------------------------

# Child (helpers): coro | awaitable | task | future | pyfuture; coroutine-
# like children suspend with ("future", step) | ("sleep",) (tasks only) |
# ("timed", delay) (virtual clock only).

@dataclass(frozen=True)
class Scenario:
    children: Tuple[Child, ...]
    args: Tuple[int, ...]
    clock: bool = False
    timeout: Optional[float] = None
    mode: str = "plain"
    # (driver step, msg, then) or None: the driver cancels the consuming
    # task, which then lets the CancelledError end the iteration ("stop"),
    # or uncancels itself and breaks out ("break"), or raises an exception
    # out of the loop body ("raise").  (Breaking out after n items, or
    # going on after the cancellation, which leaves one item fewer, would
    # make which children get reported depend on the stdlib's hash order:
    # test_as_completed covers those with deterministic children.)
    cancel_consumer: Optional[Tuple] = None
    # loop iterations between creating the children and the call
    pre_steps: int = 0
    notes: Tuple = field(default=(), compare=False)


steps = st.integers(0, MAX_STEP)
messages = st.sampled_from([None, "m"])

outcomes = child_outcomes(steps, messages)
resolutions = future_resolutions(steps, messages)


@st.composite
def children(draw, clock):
    kind = draw(st.sampled_from(
        ["coro", "coro", "awaitable", "task", "task", "future", "pyfuture"]))
    if kind in ("future", "pyfuture"):
        return Child(kind=kind, resolve=draw(resolutions))
    options = [st.tuples(st.just("future"), steps)]
    if kind == "task":
        options.append(st.just(("sleep",)))
    if clock:
        options.append(st.tuples(st.just("timed"),
                                 st.sampled_from([0.5, 1.0, 2.0, 3.0])))
    return Child(
        kind=kind,
        suspend=tuple(draw(st.lists(st.one_of(*options), max_size=3))),
        outcome=draw(outcomes),
        catch_cancel=draw(st.booleans()),
    )


@st.composite
def scenarios(draw):
    clock = draw(st.booleans())
    n = draw(st.integers(0, 6))
    kids = tuple(draw(children(clock)) for _ in range(n))
    if n:
        extra = draw(st.lists(st.integers(0, n - 1), max_size=8 - n))
        args = tuple(draw(st.permutations(list(range(n)) + extra)))
    else:
        args = ()
    timeout = None
    if clock:
        timeout = draw(st.one_of(
            st.none(), st.sampled_from([0.0, 0.5, 1.5, 2.0, 2.5, 4.0])))
    cancel_consumer = draw(st.one_of(st.none(), st.tuples(
        steps, messages,
        st.sampled_from(["stop", "break", "raise"]))))
    return Scenario(
        children=kids, args=args, clock=clock, timeout=timeout,
        mode=draw(st.sampled_from(modes())),
        cancel_consumer=cancel_consumer, pre_steps=draw(st.integers(0, 2)))


# ---------------------------------------------------------------------------
# Running a scenario
# ---------------------------------------------------------------------------

def timed_delay(i, j, delay):
    """The delay of child i's j-th suspension: ``delay`` plus a binary
    fraction of its own, so that no two timers of a scenario ever fall due
    at the same time (their order would follow the order they were
    scheduled in, which the stdlib leaves to hashing) and none falls due
    with the timeout (a multiple of 0.5)."""
    return delay + 2.0 ** -(4 + 3 * i + j)


def build(spec):
    """The scenario function (see conftest.trace_scenario) for ``spec``."""

    def scenario(sc):
        loop = sc.loop
        tasks = {}  # child index -> the Task running it (once known)
        futures = {}  # child index -> plain future child
        record_graph_edges(sc, futures, tasks)
        waits = {}  # (child index, position) -> future the child awaits
        actions = {}  # driver step -> [callable]
        state = {}

        def at(step, action):
            actions.setdefault(step, []).append(action)

        def in_consumer():
            # True while the consuming coroutine runs (an eager task's first
            # step inside as_completed() or the first next()).
            return bool(state["main_coro"].cr_running)

        async def body(i, child):
            tasks.setdefault(i, asyncio.current_task())
            sc.label(asyncio.current_task(), f"c{i}")
            sc(f"c{i}:start")
            exc = None
            try:
                try:
                    for j, how in enumerate(child.suspend):
                        if how[0] == "sleep":
                            await asyncio.sleep(0)
                        elif how[0] == "timed":
                            await asyncio.sleep(timed_delay(i, j, how[1]))
                        else:
                            await waits[i, j]
                        sc(f"c{i}:resume", j)
                    kind = child.outcome[0]
                    exc = own_exception(sc, i, child.outcome, numbered=True)
                    if exc is not None:
                        raise exc
                    if kind == "ext_cancel":
                        # Hold until the driver's cancellation lands (or the
                        # driver's end releases the hold).
                        await waits[i, "hold"]
                except asyncio.CancelledError as e:
                    if e is not exc:
                        sc.label(e, f"c{i}.cancel")
                        sc(f"c{i}:cancelled", e)
                        if child.catch_cancel:
                            sc(f"c{i}:return", f"caught{i}")
                            return f"caught{i}"
                    raise
                sc(f"c{i}:return", f"r{i}")
                return f"r{i}"
            finally:
                sc(f"c{i}:finished", in_consumer())

        def make_child(i, child):
            if child.kind in ("future", "pyfuture"):
                cls = (asyncio.futures._PyFuture if child.kind == "pyfuture"
                       else asyncio.Future)
                fut = cls(loop=loop)
                sc.label(fut, f"c{i}")
                futures[i] = fut
                how = child.resolve

                def resolve():
                    if how[0] == "result":
                        fut.set_result(f"f{i}")
                    elif how[0] == "exception":
                        exc = Boom(f"f{i}")
                        sc.label(exc, f"c{i}.exc")
                        fut.set_exception(exc)
                    else:
                        fut.cancel(numbered_message(i, how[2]))
                    sc(f"c{i}:finished", in_consumer())

                if how[1] < 0:
                    resolve()
                else:
                    at(how[1], resolve)
                return fut
            add_gates(loop, at, waits, i, child, "future")
            if child.outcome[0] == "ext_cancel":
                _, step, msg = child.outcome
                waits[i, "hold"] = loop.create_future()
                add_ext_cancel(sc, at, tasks, i, step,
                               numbered_message(i, msg))
            if child.kind == "coro":
                return body(i, child)
            if child.kind == "awaitable":
                return AwaitableChild(lambda: body(i, child))
            t = loop.create_task(body(i, child))
            tasks[i] = t
            return t

        if spec.cancel_consumer is not None:
            step, msg, _ = spec.cancel_consumer

            def cancel_consumer():
                main = state["main"]
                if state.get("consuming"):
                    sc("cancel-consumer", main.cancel(msg),
                       main.cancelling())
                else:
                    sc("cancel-consumer", "skipped")

            at(step, cancel_consumer)

        async def driver():
            for step in range(MAX_STEP + 1):
                sc("driver:step", step)
                for action in actions.get(step, ()):
                    action()
                await asyncio.sleep(0)
            for fut in list(waits.values()):
                if not fut.done():
                    fut.set_result("late")
            sc("driver:done")

        def on_own_cancel(e):
            """The consuming task got its own cancellation: True to go on
            iterating; False to end the iteration; or raises."""
            sc("consumer:cancelled", e)
            then = spec.cancel_consumer[2]
            if then == "raise":
                raise Boom("body")
            if then == "stop":
                return False
            sc("consumer:uncancel", asyncio.current_task().uncancel())
            return then == "continue"  # only in the fixed scenario BUSY

        async def consume_plain(it):
            n = 0
            for c in it:
                try:
                    r = await c
                except BaseException as e:  # noqa: B902 - recorded
                    if asyncio.current_task().cancelling():
                        if on_own_cancel(e):
                            continue
                        sc("consumer:break")
                        return
                    sc("item", "raised", e)
                else:
                    sc("item", "result", r)
                n += 1
            sc("consumer:exhausted", n)

        async def consume_async(it):
            n = 0
            while True:
                try:
                    async for f in it:
                        sc("item:future", f, f.done())
                        try:
                            r = f.result()
                        except BaseException as e:  # noqa: B902 - recorded
                            sc("item", "raised", e)
                        else:
                            sc("item", "result", r)
                        n += 1
                except Boom:  # from on_own_cancel()
                    raise
                except BaseException as e:  # noqa: B902 - recorded
                    if asyncio.current_task().cancelling():
                        if on_own_cancel(e):
                            continue
                        sc("consumer:break")
                        return
                    sc("item", "raised", e)
                    if not isinstance(e, TimeoutError):
                        sc("consumer:abandoned", type(e).__name__)
                        return
                    n += 1
                else:
                    sc("consumer:exhausted", n)
                    return

        async def main():
            me = asyncio.current_task()
            state["main"] = me
            objs = [make_child(i, c) for i, c in enumerate(spec.children)]
            args = [objs[i] for i in spec.args]
            del objs
            drv = loop.create_task(driver())
            for _ in range(spec.pre_steps):
                await asyncio.sleep(0)
            sc("calling")
            state["consuming"] = True
            try:
                it = sc.as_completed(args, timeout=spec.timeout)
                del args
                if spec.mode == "async":
                    await consume_async(it)
                else:
                    await consume_plain(it)
            except BaseException as e:  # noqa: B902 - recorded
                sc("consumer:raised", e)
            state["consuming"] = False
            it = None
            sc("main:cancelling", me.cancelling())
            for _ in range(MAX_STEP * 4 + 20):
                pending = {t for t in asyncio.all_tasks() if t is not me}
                if drv.done() and not pending:
                    break
                try:
                    if pending:
                        await asyncio.wait(pending)
                    else:
                        await asyncio.sleep(0)
                except asyncio.CancelledError as e:
                    sc("main:cancelled-late", e)
            else:
                raise AssertionError("scenario did not settle")
            record_final_states(sc, len(spec.children), futures, tasks)
            sc("order-check", check_order(spec, sc.tr.events))

        coro = main()
        state["main_coro"] = coro
        run_main(sc, coro)

    return scenario


_RESULT = re.compile(r"(?:r|f|caught)(\d+)")
_LABEL = re.compile(r"c(\d+)(?:\.exc|\.cancel)?")
_MESSAGE = re.compile(r"m(\d+)")


def _item_child(kind, value):
    """The child an item's outcome comes from: its index, "T" (timeout) or
    "?" (a CancelledError without message, made by a cancelled future)."""
    if kind == "result":
        return int(_RESULT.fullmatch(value).group(1))
    if value[0] == "TimeoutError":
        return "T"
    label = value[2]
    if isinstance(label, str) and _LABEL.fullmatch(label):
        return int(_LABEL.fullmatch(label).group(1))
    if value[0] == "CancelledError" and value[1]:
        return int(_MESSAGE.fullmatch(value[1][0]).group(1))
    return "?"


def check_order(spec, events):
    """Do the items of this run (raw trace) come in the order the stdlib
    defines?  "ok", or a description of the violation.

    The children done when the work started (before the call, or finished
    by an eager start inside it) come first, in any order (hash-dependent);
    then the others in the order they finished; after a timeout only
    TimeoutErrors."""
    calling = next(k for k, e in enumerate(events) if e[1] == "calling")
    finished = {}  # child index -> (trace position, inside the consumer)
    for k, e in enumerate(events):
        m = re.fullmatch(r"c(\d+):finished", e[1])
        if m:
            finished.setdefault(int(m.group(1)), (k, e[2]))
    early = {i for i, (k, inside) in finished.items()
             if k < calling or inside}
    expected_rest = [i for _, i in sorted(
        (k, i) for i, (k, _) in finished.items() if i not in early)]
    anonymous = {
        i for i, c in enumerate(spec.children)
        if c.kind in ("future", "pyfuture") and c.resolve[0] == "cancel"
        and c.resolve[2] is None}

    observed = []
    yielded = None  # async for: the future yielded for the next "item"
    for e in events:
        if e[1] == "item:future":
            yielded = int(_LABEL.fullmatch(e[2]).group(1))
        elif e[1] == "item":
            if yielded is not None:
                observed.append(yielded)
                yielded = None
            else:
                observed.append(_item_child(e[2], e[3]))
    if "T" in observed:
        first = observed.index("T")
        if any(o != "T" for o in observed[first:]):
            return ("item-after-timeout", observed)
        observed = observed[:first]

    def matches(o, i):
        return o == i or (o == "?" and i in anonymous)

    head, rest = observed[:len(early)], observed[len(early):]
    pool = set(early)
    for o in head:
        hit = next((i for i in sorted(pool) if matches(o, i)), None)
        if hit is None:
            return ("not-early", observed, sorted(early), expected_rest)
        pool.discard(hit)
    if len(rest) > len(expected_rest) or not all(
            matches(o, i) for o, i in zip(rest, expected_rest)):
        return ("out-of-order", observed, sorted(early), expected_rest)
    return "ok"


def run_both(spec):
    """(fastwait trace, stdlib trace) for ``spec``, comparable."""
    kwargs = dict(clock=spec.clock)
    if spec.mode == "async" and not PY313:
        # fastwait's native async for on 3.11/3.12: the stdlib has none, so
        # it must read like the stdlib's plain iteration (without the
        # yielded futures).
        got = project(trace_ac(fastwait.as_completed, build(spec), **kwargs))
        want = trace_ac(asyncio.as_completed,
                        build(replace(spec, mode="plain")), **kwargs)
        return got, want
    want = trace_ac(asyncio.as_completed, build(spec), **kwargs)
    got = trace_ac(fastwait.as_completed, build(spec), **kwargs)
    if spec.mode == "async":
        # The basis of the comparison above, checked where the stdlib has
        # both: async for reads like plain iteration.
        plain = trace_ac(asyncio.as_completed,
                         build(replace(spec, mode="plain")), **kwargs)
        assert project(want) == plain
    return got, want


def check_trace(trace):
    names = {e[1] for e in trace}
    assert "calling" in names and "main:state" in names, trace
    # The harness itself never failed (deadlock, runaway, unsettled), and
    # async for never failed but by a timeout.
    assert not {"run:raised", "scenario-raised", "consumer:abandoned"} & (
        names), trace
    assert [e[2:] for e in trace if e[1] == "order-check"] == [("ok",)], trace


@given(spec=scenarios())
def test_as_completed_matches_stdlib(spec):
    note(repr(spec))
    settle_garbage()
    got, want = run_both(spec)
    check_trace(want)
    note_first_difference(got, want)
    assert got == want


BUSY = Scenario(
    children=(
        Child("coro", suspend=(("future", 2),), outcome=("raise",)),
        Child("task", suspend=(("sleep",), ("future", 1)),
              outcome=("ext_cancel", 1, "m"), catch_cancel=True),
        Child("future", resolve=("cancel", 3, "m")),
        Child("awaitable", outcome=("self_cancel", None)),
        Child("pyfuture", resolve=("exception", 0)),
        Child("future", resolve=("result", -1)),
        Child("coro", suspend=(("future", 4),), outcome=("raise_base",)),
    ),
    args=(0, 1, 2, 1, 3, 4, 5, 6, 0),
    cancel_consumer=(3, "m", "continue"),
)

BUSY_CLOCK = Scenario(
    children=(
        Child("coro", suspend=(("timed", 1.0),), outcome=("return",)),
        Child("coro", suspend=(("timed", 2.0), ("future", 1)),
              outcome=("raise",)),
        Child("task", suspend=(("timed", 3.0),), outcome=("raise",)),
        Child("future", resolve=("result", 2)),
        Child("awaitable", suspend=(("timed", 0.5),),
              outcome=("ext_cancel", 5, None)),
    ),
    args=(3, 0, 1, 2, 4, 1),
    clock=True,
    timeout=2.5,
)


def test_scenario_runner_is_deterministic():
    """Two stdlib runs of busy scenarios give the same canonical trace (the
    property above would be meaningless otherwise), and the traces hold
    what the scenarios are about."""
    traces = []
    for spec in (BUSY, BUSY_CLOCK):
        first = trace_ac(asyncio.as_completed, build(spec), clock=spec.clock)
        second = trace_ac(asyncio.as_completed, build(spec),
                          clock=spec.clock)
        assert first == second
        check_trace(first)
        traces.append(first)
    busy, clock = traces

    def logs(trace):
        return [(e[2], e[3][:3]) for e in trace
                if e[1] == "exception-handler"]

    # BUSY: the consumer, cancelled while waiting, went on iterating: up to
    # 3.13 the cancelled wait used up one item, so the last child's failure
    # was never delivered, nor retrieved; 3.14's _wait_for_one puts the
    # item back, and every failure is delivered.
    assert entry(busy, "consumer:uncancel") == (0,)
    if PY314:
        assert entry(busy, "consumer:exhausted") == (7,)
        assert logs(busy) == []
    else:
        assert entry(busy, "consumer:exhausted") == (6,)
        assert logs(busy) == [("Task exception was never retrieved",
                               ("BaseBoom", ("c6",), "c6.exc"))]
    # BUSY_CLOCK: four items, then the timeout; c2, still sleeping, finishes
    # later on its own and nobody retrieves its exception.
    items = [e[2:] for e in clock if e[1] == "item"]
    assert [i[:2] if i[0] == "result" else (i[0], i[1][:3]) for i in items] \
        == [("result", "f3"),
            ("raised", ("CancelledError", (), "c4.cancel")),
            ("result", "r0"),
            ("raised", ("Boom", ("c1",), "c1.exc")),
            ("raised", ("TimeoutError", (), "#"))]
    assert logs(clock) == [("Task exception was never retrieved",
                            ("Boom", ("c2",), "c2.exc"))]
