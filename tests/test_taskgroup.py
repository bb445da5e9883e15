"""Parity tests for ``TaskGroup``: every behaviour, on both implementations.

Scenario tests run through ``tg_parity``: the scenario is traced with
``impl.TaskGroup`` (and ``impl.timeout`` where it mixes in timeouts) and
with asyncio's, each on a fresh loop of
the active axes, and the two traces must be equal (results, exception
types/args/identity, exception-group structure, ``__cause__``/``__context__``
/``__suppress_context__``, ``cancelling()`` counts, ``repr(group)``,
exception-handler calls, warnings, and the loop iteration of every event).
Inside one loop iteration the traces are compared as multisets: the stdlib
cancels the children of an aborting group in ``set`` order (hash order),
so the order of the children's steps inside that iteration is arbitrary
(allowed difference #3).  Where the stdlib's order is defined (the order
of the errors in the group is the order in which the children failed),
the test asserts it on the implementation's own trace.

Then each test pins the facts explicitly, with the version-dependent
expectations written out (3.11/3.12 vs 3.13, lazy vs eager task factory).

Smaller "bad input" tests use ``both``: a function runs on a fresh loop with
``impl.TaskGroup`` and again with ``asyncio.TaskGroup`` and returns plain
data (warnings and exception-handler calls are added), and the two results
must be equal.
"""

import asyncio
import contextvars
import gc
import re
import warnings

import pytest

from conftest import (
    LOOP_KIND,
    PY,
    TASKS_KIND,
    close_loop,
    describe_context,
    new_loop,
    run_briefly,
    trace_scenario,
)
from helpers import TASKS_N, BaseBoom, Boom, JumpClock, canon, norm, per_jump
from helpers import (creation_site, install_factory, strip_created_at,
                     strip_origin)

EAGER = TASKS_KIND == "eager"
PY313 = PY >= (3, 13)
PY314 = PY >= (3, 14)
PY315 = PY >= (3, 15)
#: 3.12.8+/3.13.1+: __aexit__ clears _parent_task, _errors and _base_error
#: when it ends (gh-124958).
AEXIT_CLEARS = PY >= (3, 13, 1) or (3, 12, 8) <= PY < (3, 13)
#: 3.12.9+/3.13.2+: a child done inside create_task (eager start) is added
#: and called back like any other (gh-128550, gh-128588).
ALWAYS_ADD = PY >= (3, 13, 2) or (3, 12, 9) <= PY < (3, 13)
#: 3.12.1/3.13.0: such a child is processed inside create_task.
DONE_SHORTCUT = PY >= (3, 12) and not ALWAYS_ADD
#: Does the eager axis's own factory start children eagerly?  Yes, on
#: every loop: on uvloop with 3.14+, whose create_task hands the factory
#: eager_start=None (which 3.14's eager_task_factory takes as "no"),
#: conftest's eager axis installs a factory that starts eagerly all the same.
AXIS_EAGER = EAGER


def eager(factory):
    """Do children start eagerly with ``factory`` (FACTORIES: None is the
    axis's own; "task"/"pytask" are eager on the eager axis)?"""
    return AXIS_EAGER if factory is None else EAGER
MSG = "unhandled errors in a TaskGroup"


# BaseBoom (helpers): a BaseException that is neither KeyboardInterrupt
# nor SystemExit.


# ---------------------------------------------------------------------------
# Harness
# ---------------------------------------------------------------------------

def TG(sc):
    """The TaskGroup class under test in a traced scenario (trace_scenario
    hands the implementation module over as ``sc.gather``)."""
    return sc.gather.TaskGroup


def TO(sc):
    """The implementation's timeout() in a traced scenario."""
    return sc.gather.timeout


def xdesc(sc, exc, *, ordered=True, name=None):
    """An exception as comparable data, group structure included.

    Unlabelled exceptions get a label derived from where they are found
    (never from the order of appearance, which the per-iteration multiset
    comparison does not preserve).  With ``ordered=False`` the members of
    a group are sorted (for orders the stdlib leaves to hashing).
    """
    if exc is None:
        return None
    label = sc.label(exc, name)
    if isinstance(exc, BaseExceptionGroup):
        members = [
            xdesc(sc, m, ordered=ordered, name=f"{label}[{i}]")
            for i, m in enumerate(exc.exceptions)
        ]
        if not ordered:
            members.sort(key=repr)
        body = ("group", exc.message, tuple(members),
                exc.args[1] is not exc.exceptions)
    else:
        body = ("args", sc.tr.describe(exc.args))
    ctx = exc.__context__
    cause = exc.__cause__
    return (
        type(exc).__name__, label, body,
        None if ctx is None else sc.label(ctx, f"{label}.ctx"),
        None if cause is None else sc.label(cause, f"{label}.cause"),
        exc.__suppress_context__,
    )


def tg_trace(mod, scenario, *, clock=False):
    """Trace ``scenario`` with the TaskGroup and timeout() of ``mod``."""
    if not clock:
        return trace_scenario(mod, scenario)
    vclock = JumpClock()
    trace = trace_scenario(mod, scenario, clock=vclock)
    return per_jump(trace, vclock)


def exiting_count_lags(impl):
    """README difference #6: while the parent waits in __aexit__, the native
    group's count in repr()'s tasks=N may be lower than asyncio's for up to
    one loop iteration (3.11-3.13; never in an error message)."""
    import fastwait

    return (impl is fastwait and "TaskGroup" in fastwait.NATIVE_NAMES
            and not PY314)


def tg_parity(impl, scenario, *, clock=False, exiting_count=False):
    """Trace ``scenario`` with ``impl.TaskGroup`` and ``asyncio.TaskGroup``
    and assert the traces agree; return the implementation's trace.
    ``exiting_count``: the scenario reads the count while the group exits;
    compare without it where it may differ (difference #6)."""
    got = tg_trace(impl, scenario, clock=clock)
    want = tg_trace(asyncio, scenario, clock=clock)
    got_c, want_c = canon(got), canon(want)
    if exiting_count and exiting_count_lags(impl):
        got_c = [(i, TASKS_N.sub("", t)) for i, t in got_c]
        want_c = [(i, TASKS_N.sub("", t)) for i, t in want_c]
    if got_c != want_c:
        first = next((a, b) for a, b in zip(got_c + [None] * len(want_c),
                                            want_c + [None] * len(got_c))
                     if a != b)
        pytest.fail(
            f"traces differ; first difference (impl, stdlib): {first}\n"
            "impl:\n  " + "\n  ".join(map(repr, got))
            + "\nstdlib:\n  " + "\n  ".join(map(repr, want)),
            pytrace=False)
    return got


def ev(trace, name):
    """Details of every entry named ``name``."""
    return [e[2:] for e in trace if e[1] == name]


def one(trace, name):
    found = ev(trace, name)
    assert len(found) == 1, (name, trace)
    return found[0]


def at(trace, name):
    """Iteration of the single entry named ``name``."""
    found = [e[0] for e in trace if e[1] == name]
    assert len(found) == 1, (name, trace)
    return found[0]


def names(trace):
    return [e[1] for e in trace]


def current_task():
    """asyncio.current_task(), also inside a pure-Python Task on 3.14+
    (asyncio.current_task() reads the C registry there, which the
    pure-Python Task does not enter)."""
    task = asyncio.current_task()
    if task is None and PY314:
        task = asyncio.tasks._py_current_task()
    return task


def install_child_factory(loop, kind):
    """helpers.install_factory, and on 3.14+ a mark on the "pytask"
    factory: see parent_task()."""
    install_factory(loop, kind)
    if kind == "pytask" and PY314:
        loop.get_task_factory().fw_pytask = True


def parent_task(loop, coro):
    """loop.create_task(coro) for a task that enters a group.  On 3.14+ a
    factory of pure-Python Tasks is bypassed for it (asyncio.Task, started
    eagerly on the eager axis): TaskGroup finds its parent with
    tasks.current_task(), which reads the C registry that the pure-Python
    Task no longer enters -- asyncio's own TaskGroup cannot run in one."""
    if getattr(loop.get_task_factory(), "fw_pytask", False):
        return asyncio.Task(coro, loop=loop, eager_start=EAGER)
    return loop.create_task(coro)


def both(impl, fn, **loop_kw):
    """Run ``fn(TaskGroup, loop)`` with ``impl.TaskGroup`` and with
    ``asyncio.TaskGroup``, each on a fresh loop, warnings and exception
    handler calls recorded; assert equal outcomes and return them."""

    def once(TaskGroup):
        loop = new_loop(**loop_kw)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = fn(TaskGroup, loop)
                gc.collect()
            ws = [(w.category.__name__, norm(creation_site(str(w.message))))
                  for w in caught]
            recs = [describe_context(c) for c in loop.fw_exceptions.take()]
            recs = [tuple(norm(x) if isinstance(x, str) else x for x in r)
                    for r in recs]
        finally:
            close_loop(loop)
        return out, ws, recs

    got = once(impl.TaskGroup)
    want = once(asyncio.TaskGroup)
    assert got == want
    return got


def outcome(fn, *args, **kwargs):
    """Call ``fn``: ("ok", value) or ("raised", type name, args)."""
    try:
        return ("ok", fn(*args, **kwargs))
    except BaseException as e:
        return ("raised", type(e).__name__, tuple(
            norm(a) if isinstance(a, str) else a for a in e.args))


async def aoutcome(aw):
    try:
        return ("ok", await aw)
    except BaseException as e:
        return ("raised", type(e).__name__, tuple(
            norm(a) if isinstance(a, str) else repr(a) for a in e.args))


async def worker(sc, name, *, steps=0, result=None, exc=None, wait=(),
                 catch_cancel=False, on_cancel=None):
    """A child: suspends ``steps`` times (sleep(0)), awaits each of
    ``wait``, then returns ``result`` or raises ``exc`` (labelled
    ``<name>.exc``).  A CancelledError is recorded (labelled
    ``<name>.cancel``) and re-raised, or swallowed with ``catch_cancel``,
    or replaced by ``on_cancel`` (an exception raised from the handler)."""
    sc(f"{name}:start", current_task().cancelling())
    try:
        for i in range(steps):
            await asyncio.sleep(0)
            sc(f"{name}:step", i)
        for fut in wait:
            value = await fut
            sc(f"{name}:awaited", value)
    except asyncio.CancelledError as e:
        sc.label(e, f"{name}.cancel")
        sc(f"{name}:cancelled", xdesc(sc, e))
        if on_cancel is not None:
            sc.label(on_cancel, f"{name}.exc")
            sc(f"{name}:raise", xdesc(sc, on_cancel))
            raise on_cancel
        if not catch_cancel:
            raise
        sc(f"{name}:return", "caught")
        return "caught"
    if exc is not None:
        sc.label(exc, f"{name}.exc")
        sc(f"{name}:raise", xdesc(sc, exc))
        raise exc
    sc(f"{name}:return", result)
    return result


async def sleep_forever(sc, name):
    """A body/child that waits on a future nobody resolves."""
    fut = asyncio.get_running_loop().create_future()
    try:
        await fut
    except asyncio.CancelledError as e:
        sc.label(e, f"{name}.cancel")
        sc(f"{name}:cancelled", xdesc(sc, e),
           current_task().cancelling())
        raise


async def drain(limit=100, exclude=()):
    me = current_task()
    for _ in range(limit):
        if all(t.done() for t in asyncio.all_tasks()
               if t is not me and t not in exclude):
            return
        await asyncio.sleep(0)
    raise AssertionError("tasks still pending after drain()")


def group_scenario(body, *, final=None, ordered=True, make=None,
                   factory=None):
    """Scenario: main enters a group (``make(TaskGroup)`` or a plain
    instance), runs ``await body(sc, g, named)`` inside it and records the
    outcome, ``cancelling()`` and ``repr(g)`` at every edge; then drains
    the other tasks and records the final state of the named tasks."""

    def scenario(sc):
        named = {}

        async def main():
            me = asyncio.current_task()
            named["main"] = me
            sc.label(me, "main")
            cls = TG(sc)
            g = make(cls) if make else cls()
            sc.label(g, "g")
            sc("main:before", me.cancelling(), repr(g))
            try:
                async with g as entered:
                    sc("main:entered", entered is g, me.cancelling(),
                       repr(g))
                    try:
                        await body(sc, g, named)
                    except BaseException as e:
                        sc.label(e, "body.exc")
                        sc("body:raised", xdesc(sc, e), me.cancelling(),
                           repr(g))
                        raise
                    sc("body:done", me.cancelling(), repr(g))
            except BaseException as e:
                sc.label(e, "main.exc")
                sc("main:raised", xdesc(sc, e, ordered=ordered),
                   me.cancelling(), repr(g))
                if not isinstance(e, (Exception, asyncio.CancelledError)):
                    raise
            else:
                sc("main:exited", me.cancelling(), repr(g))
            sc("main:after", me.cancelling(), me.uncancel()
               if me.cancelling() else 0)
            try:
                # Does a cancellation request outlive the group?
                await asyncio.sleep(0)
            except asyncio.CancelledError as e:
                sc("main:probe-cancelled", xdesc(sc, e, name="probe.cancel"),
                   me.cancelling())
            try:
                await drain()
            except asyncio.CancelledError as e:
                sc("main:drain-cancelled", xdesc(sc, e, name="drain.cancel"))
            for key, t in named.items():
                if t is not me:
                    sc(f"{key}:final", sc.state(t))
            if final:
                final(sc, named)

        install_child_factory(sc.loop, factory)
        task = parent_task(sc.loop, main())
        sc.label(task, "main-task")
        for _ in range(5):
            try:
                sc.run(task)
            except BaseException as e:
                sc("run:raised", xdesc(sc, e))
            else:
                break
            if task.done():
                break
        sc("main:state", sc.state(task))

    return scenario


def spawn(sc, g, named, name, coro):
    t = g.create_task(coro)
    named[name] = t
    sc.label(t, name)
    sc(f"{name}:created", t.done(), repr(g))
    return t


# ---------------------------------------------------------------------------
# Construction, entry and exit as awaitables
# ---------------------------------------------------------------------------

def test_constructor_signature(impl):
    def fn(TaskGroup, loop):
        return [
            outcome(TaskGroup, 1),
            outcome(TaskGroup, x=1),
            repr(TaskGroup()),
            outcome(lambda: TaskGroup().create_task()),
        ]

    out = both(impl, fn)[0]
    assert out[2] == "<TaskGroup>"
    assert out[0][:2] == ("raised", "TypeError")


def test_aenter_returns_the_group_and_aexit_returns_none(impl):
    def fn(TaskGroup, loop):
        async def main():
            g = TaskGroup()
            enter = g.__aenter__()
            assert asyncio.iscoroutine(enter) or hasattr(enter, "__await__")
            r = await enter
            inside = repr(g)
            x = await g.__aexit__(None, None, None)
            return r is g, inside, x, repr(g)

        return loop.run_until_complete(main())

    out = both(impl, fn)[0]
    # 3.15's __aexit__ returns True ("suppress any remaining exception").
    assert out == (True, "<TaskGroup entered>", True if PY315 else None,
                   "<TaskGroup entered>")


@pytest.mark.parametrize("method", ["__aenter__", "__aexit__"])
def test_unawaited_enter_exit_warns(impl, method):
    def fn(TaskGroup, loop):
        g = TaskGroup()
        args = () if method == "__aenter__" else (None, None, None)
        c = getattr(g, method)(*args)
        del c
        gc.collect()
        return repr(g)

    out, ws, recs = both(impl, fn)
    assert ws == [("RuntimeWarning",
                   f"coroutine 'TaskGroup.{method}' was never awaited")]
    assert out == "<TaskGroup>"


def test_enter_awaitable_reused(impl):
    def fn(TaskGroup, loop):
        async def main():
            g = TaskGroup()
            enter = g.__aenter__()
            first = await enter
            again = await aoutcome(enter)
            await g.__aexit__(None, None, None)
            return first is g, again

        return loop.run_until_complete(main())

    out = both(impl, fn)[0]
    assert out[1][:2] == ("raised", "RuntimeError")


def test_exit_without_enter(impl):
    """__aexit__ on a group never entered: the stdlib's outcome, whatever
    it is (3.13 dereferences the missing parent task)."""

    def fn(TaskGroup, loop):
        async def main():
            res = []
            for exc in (None, Boom("x"), asyncio.CancelledError("c"),
                        KeyboardInterrupt("k")):
                g = TaskGroup()
                et = None if exc is None else type(exc)
                res.append((await aoutcome(g.__aexit__(et, exc, None)),
                            repr(g)))
                res.append(outcome(g.create_task, None))
            return res

        return loop.run_until_complete(main())

    out = both(impl, fn)[0]
    assert out[0] == (("ok", True if PY315 else None), "<TaskGroup>")
    if PY313:
        assert out[2][0][1] == "AttributeError"
    else:
        assert out[2][0][:2] == ("raised", "ExceptionGroup")
        assert out[4][0] == ("raised", "CancelledError", ("c",))
        assert out[6][0] == ("raised", "KeyboardInterrupt", ("k",))


FACTORIES = pytest.mark.parametrize("factory", [None, "task", "pytask"])


@FACTORIES
def test_async_with_basic_results(impl, factory):
    async def body(sc, g, named):
        spawn(sc, g, named, "a", worker(sc, "a", result="A"))
        spawn(sc, g, named, "b", worker(sc, "b", steps=2, result="B"))
        sc("body:repr", repr(g))

    def final(sc, named):
        sc("results", named["a"].result(), named["b"].result())

    trace = tg_parity(impl, group_scenario(body, final=final,
                                           factory=factory))
    assert one(trace, "results") == ("A", "B")
    assert one(trace, "main:exited") == (0, "<TaskGroup entered>")
    assert one(trace, "main:after") == (0, 0)
    enter = at(trace, "main:entered")
    if eager(factory):
        # Started and finished inside create_task.
        assert at(trace, "a:start") == enter
        assert one(trace, "a:created")[0] is True
    else:
        assert at(trace, "a:start") == enter + 1
        assert one(trace, "body:repr") == ("<TaskGroup tasks=2 entered>",)
    # The last child's done callback runs the iteration after it finished
    # and wakes the parent up in the next one.
    assert at(trace, "main:exited") == at(trace, "b:return") + 2


def test_empty_group(impl):
    async def body(sc, g, named):
        pass

    trace = tg_parity(impl, group_scenario(body))
    # No suspension at all: entering and leaving an empty group takes no
    # loop iteration.
    assert at(trace, "main:exited") == at(trace, "main:before")


def test_returned_task_and_loop(impl):
    def fn(TaskGroup, loop):
        async def child():
            return asyncio.current_task()

        async def main():
            async with TaskGroup() as g:
                t = g.create_task(child())
                info = (isinstance(t, asyncio.Task), t.get_loop() is loop,
                        t in asyncio.all_tasks() or t.done())
            return info + (t.result() is t,)

        return loop.run_until_complete(main())

    assert both(impl, fn)[0] == (True, True, True, True)


# ---------------------------------------------------------------------------
# create_task keywords
# ---------------------------------------------------------------------------

def test_create_task_names(impl):
    """``name=`` per version: 3.11/3.12 name the task after creating it
    (so an eagerly started child runs under its default name); 3.13 passes
    the name to ``loop.create_task``.  The Task-N counter must advance the
    same way too."""

    def fn(TaskGroup, loop):
        async def child():
            return asyncio.current_task().get_name()

        def counter():
            t = asyncio.Task(asyncio.sleep(0), loop=loop)
            n = int(t.get_name().split("-")[1])
            return n

        async def main():
            base = counter()
            rel = (lambda s: re.sub(
                r"Task-(\d+)", lambda m: f"Task+{int(m[1]) - base}", s))
            async with TaskGroup() as g:
                ts = [g.create_task(child(), name="x"),
                      g.create_task(child()),
                      g.create_task(child(), name=5),
                      g.create_task(child(), name=None)]
            after = counter() - base
            return ([(rel(t.result()), rel(t.get_name())) for t in ts],
                    after)

        return loop.run_until_complete(main())

    out = both(impl, fn)[0]
    names_, after = out
    assert names_[0][1] == "x" and names_[2][1] == "5"
    # An eagerly started child runs its first step before it is named
    # (3.11/3.12 name it afterwards; 3.13's loop.create_task does not pass
    # the name to a task factory either; 3.14's passes every keyword).
    # The name reaches an eager first step where the factory gets it: on
    # 3.14+, not on uvloop (which names the task after the factory returns).
    assert (names_[0][0] == "x") is (
        not AXIS_EAGER or (PY314 and LOOP_KIND != "uvloop"))
    # The Task-N counter: 3.13 passes the name to loop.create_task, and
    # asyncio's passes it to Task(), which then draws no number; 3.11/3.12,
    # uvloop (names the task afterwards) and task factories draw one per
    # task.
    if not AXIS_EAGER:
        no_draw = PY313 and LOOP_KIND == "asyncio"
        assert after == (3 if no_draw else 5)
        assert names_[1] == (("Task+1",) * 2 if no_draw else ("Task+2",) * 2)


def test_create_task_context(impl):
    var = contextvars.ContextVar("var", default="default")

    def fn(TaskGroup, loop):
        async def child():
            seen = var.get()
            var.set("child")
            return seen

        async def main():
            var.set("main")
            ctx = contextvars.copy_context()
            ctx.run(var.set, "ctx")
            async with TaskGroup() as g:
                a = g.create_task(child())
                b = g.create_task(child(), context=ctx)
                c = g.create_task(child(), context=None)
                d = g.create_task(child(), name="n", context=ctx)
            return (a.result(), b.result(), c.result(), d.result(),
                    var.get(), ctx[var])

        return loop.run_until_complete(main())

    assert both(impl, fn)[0] == ("main", "ctx", "main", "child", "main",
                                 "child")


def test_create_task_argument_errors(impl):
    def fn(TaskGroup, loop):
        async def child():
            return 1

        def attempt(g, args, kw):
            got = outcome(g.create_task, *args, **kw)
            if got[0] == "ok":
                # Debug mode: the child is created at asyncio/taskgroups.py
                # or (C) on the caller's line (README, "Consequences of
                # being C code").
                text, where = strip_created_at(repr(got[1]))
                assert (where is not None) == loop.get_debug()
                got = ("ok", norm(text))
            return got

        async def main():
            res = []
            async with TaskGroup() as g:
                for args, kw in [((), {}),
                                 ((child(), "x"), {}),
                                 ((child(),), {"bogus": 1}),
                                 ((child(),), {"eager_start": True}),
                                 ((child(),), {"name": "a", "loop": loop})]:
                    res.append(attempt(g, args, kw))
                    gc.collect()
                t = g.create_task(coro=child())
            res.append(t.result() if t.done() else "pending")
            return res

        return loop.run_until_complete(main())

    out, ws, recs = both(impl, fn)
    assert out[0] == ("raised", "TypeError", (
        "TaskGroup.create_task() missing 1 required positional argument: "
        "'coro'",))
    assert out[1] == ("raised", "TypeError", (
        "TaskGroup.create_task() takes 2 positional arguments but 3 were "
        "given",))
    if not PY314:
        assert out[2] == ("raised", "TypeError", (
            "TaskGroup.create_task() got an unexpected keyword argument "
            "'bogus'",))
        assert out[3][:2] == out[4][:2] == ("raised", "TypeError")
        # The coroutine is not closed on a binding error (every version).
        assert len(ws) == 4
    else:
        # 3.14: create_task(coro, **kwargs) hands every keyword to the
        # loop's create_task (and on to Task()): they are its errors.
        assert out[2][:2] == ("raised", "TypeError")
        assert "unexpected keyword argument 'bogus'" in out[2][2][0]
        assert not out[2][2][0].startswith("TaskGroup.")
        assert out[3][0] == "ok"  # eager_start=True is Task()'s
        assert out[4][:2] == ("raised", "TypeError")
        assert "'loop'" in out[4][2][0]
        assert len(ws) == 3
    assert all(w[0] == "RuntimeWarning" and strip_origin(w[1]).endswith(
        "fn.<locals>.child' was never awaited") for w in ws)


def test_create_task_non_coroutine(impl):
    """A non-coroutine: loop.create_task's TypeError, raised from
    create_task in the body, so it joins the group as the body's error."""

    class Awaitable:
        def __await__(self):
            yield from ()

    def fn(TaskGroup, loop):
        async def main():
            res = []
            fut = loop.create_future()
            for arg in (42, fut, Awaitable(), None):
                g = TaskGroup()
                try:
                    async with g:
                        try:
                            g.create_task(arg)
                        except BaseException as e:
                            res.append(("create_task", type(e).__name__,
                                        norm(str(e)), repr(g)))
                            raise
                except BaseException as e:
                    res.append(("group", type(e).__name__,
                                [(type(m).__name__, norm(str(m)))
                                 for m in getattr(e, "exceptions", ())],
                                repr(g)))
                res.append(len([t for t in asyncio.all_tasks()
                                if not t.done()]))
            fut.cancel()
            return res

        return loop.run_until_complete(main())

    out = both(impl, fn)[0]
    assert out[0] == ("create_task", "TypeError",
                      "a coroutine was expected, got 42",
                      "<TaskGroup entered>")
    assert out[1] == ("group", "ExceptionGroup",
                      [("TypeError", "a coroutine was expected, got 42")],
                      "<TaskGroup cancelling>")
    assert out[2] == 1


# ---------------------------------------------------------------------------
# RuntimeErrors
# ---------------------------------------------------------------------------

def test_create_task_not_entered_finished_closes_coro_on_313(impl):
    def fn(TaskGroup, loop):
        async def child():
            return 1

        async def main():
            res = []
            g = TaskGroup()
            c = child()
            res.append(outcome(g.create_task, c))
            res.append(c.cr_frame is None)
            del c
            gc.collect()
            res.append(outcome(g.create_task, 42))
            async with g:
                pass
            c = child()
            res.append(outcome(g.create_task, c))
            res.append(c.cr_frame is None)
            del c
            gc.collect()
            res.append(outcome(g.create_task, 42))
            res.append(await aoutcome(g.__aenter__()))
            return res

        return loop.run_until_complete(main())

    out, ws, recs = both(impl, fn)
    assert out[0] == ("raised", "RuntimeError",
                      ("TaskGroup <TaskGroup> has not been entered",))
    assert out[3] == ("raised", "RuntimeError",
                      ("TaskGroup <TaskGroup entered> is finished",))
    assert out[6] == ("raised", "RuntimeError",
                      ("TaskGroup <TaskGroup entered> has already been "
                       "entered",))
    if PY313:
        assert out[1] is True and out[4] is True
        assert out[2] == out[5] == (
            "raised", "AttributeError",
            ("'int' object has no attribute 'close'",))
        assert ws == []
    else:
        assert out[1] is False and out[4] is False
        assert out[2][0] == "raised" and out[2][1] == "RuntimeError"
        # Not closed: each warns "never awaited" when collected.
        assert len(ws) == 2 and all(
            w[0] == "RuntimeWarning"
            and strip_origin(w[1]).endswith(
                "fn.<locals>.child' was never awaited")
            for w in ws), ws


def test_enter_twice_nested(impl):
    def fn(TaskGroup, loop):
        async def main():
            g = TaskGroup()
            async with g:
                r = await aoutcome(g.__aenter__())
                inner = repr(g)
            return r, inner, repr(g)

        return loop.run_until_complete(main())

    out = both(impl, fn)[0]
    assert out[0] == ("raised", "RuntimeError", (
        "TaskGroup <TaskGroup entered> has already been entered",))


def test_enter_outside_task(impl):
    """No running loop: get_running_loop()'s error.  A running loop but no
    task (a callback driving the coroutine by hand): no parent task.  The
    failed group is then usable in a task of the same loop, but not on
    another loop (it keeps the loop of the first attempt)."""

    def fn(TaskGroup, loop):
        res = []
        g0 = TaskGroup()
        c = g0.__aenter__()
        res.append(outcome(c.send, None))
        res.append(repr(g0))
        groups = []

        def cb():
            g = TaskGroup()
            groups.append(g)
            c = g.__aenter__()
            res.append(outcome(c.send, None))
            res.append(outcome(c.send, None))
            res.append(repr(g))

        loop.call_soon(cb)
        loop.run_until_complete(asyncio.sleep(0))

        async def main(g):
            async with g:
                t = g.create_task(asyncio.sleep(0, "ok"))
            return t.result(), repr(g)

        res.append(outcome(loop.run_until_complete, main(groups[0])))
        # A group whose entry failed on ``loop``, used on another loop.
        other = new_loop()
        try:
            g2 = TaskGroup()

            def cb2():
                c = g2.__aenter__()
                res.append(outcome(c.send, None))

            loop.call_soon(cb2)
            loop.run_until_complete(asyncio.sleep(0))
            res.append(outcome(other.run_until_complete, main(g2)))
            gc.collect()
        finally:
            close_loop(other)
        # g0 failed before it knew a loop: usable anywhere.
        res.append(outcome(loop.run_until_complete, main(g0)))
        return res

    out, ws, recs = both(impl, fn)
    assert out[0] == ("raised", "RuntimeError", ("no running event loop",))
    assert out[2] == ("raised", "RuntimeError", (
        "TaskGroup <TaskGroup> cannot determine the parent task",))
    assert out[3][:2] == ("raised", "RuntimeError")  # exhausted coroutine
    assert out[5] == ("ok", ("ok", "<TaskGroup entered>"))
    assert out[7] == ("raised", "RuntimeError", (
        "TaskGroup <TaskGroup> cannot determine the parent task",))
    assert out[8] == ("ok", ("ok", "<TaskGroup entered>"))


def test_shutting_down(impl):
    async def body(sc, g, named):
        spawn(sc, g, named, "a", worker(sc, "a", exc=Boom("a"), steps=1))
        spawn(sc, g, named, "b", sleep_forever(sc, "b"))
        try:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            sc("body:cancelled", asyncio.current_task().cancelling(),
               repr(g))
        coro = worker(sc, "late")
        try:
            g.create_task(coro)
        except RuntimeError as e:
            sc("late:refused", str(e), coro.cr_frame is None)
            if coro.cr_frame is not None:
                coro.close()

    trace = tg_parity(impl, group_scenario(body))
    msg, closed = one(trace, "late:refused")
    assert msg == ("TaskGroup <TaskGroup tasks=1 errors=1 cancelling> "
                   "is shutting down")
    assert closed is PY313
    got = one(trace, "main:raised")[0]
    assert got[0] == "ExceptionGroup"
    assert got[2][1] == MSG and [m[1] for m in got[2][2]] == ["a.exc"]
    # The body swallowed its CancelledError: no __context__.
    assert got[3:] == (None, None, True)
    # The group stays "cancelling"; the parent's count: 3.11/3.12 gave it
    # back at __aexit__ entry, 3.13 after the wait.
    assert one(trace, "main:raised")[1:] == (0, "<TaskGroup cancelling>")


# ---------------------------------------------------------------------------
# Child outcomes
# ---------------------------------------------------------------------------

@FACTORIES
@pytest.mark.parametrize("steps", [0, 1, 3])
def test_first_failure_cancels_siblings_and_parent(impl, steps, factory):
    async def body(sc, g, named):
        spawn(sc, g, named, "a", worker(sc, "a", steps=steps,
                                        exc=Boom("a")))
        spawn(sc, g, named, "b", worker(sc, "b", steps=10, result="B"))
        spawn(sc, g, named, "c", sleep_forever(sc, "c"))
        await sleep_forever(sc, "body")

    trace = tg_parity(impl, group_scenario(body, factory=factory))
    got = one(trace, "main:raised")[0]
    assert got[0] == "ExceptionGroup" and got[2][1] == MSG
    if eager(factory) and DONE_SHORTCUT and steps == 0:
        # 3.12/3.13.0: the eagerly failed child aborted the group inside
        # create_task, so the next create_task raised in the body.
        assert [m[1] for m in got[2][2]] == ["a.exc", "body.exc"]
        assert got[2][2][1][0] == "RuntimeError"
        return
    assert [m[1] for m in got[2][2]] == ["a.exc"]
    # raise ... from None while handling the body's CancelledError.
    assert got[3:] == ("body.cancel", None, True)
    # Parent: its own wait was cancelled by the group ...
    assert one(trace, "body:cancelled")[1] == 1
    # ... and the count is given back (3.11/3.12 at __aexit__ entry, so
    # the CancelledError from the body does not propagate; 3.13 after).
    assert one(trace, "main:raised")[1] == 0
    assert one(trace, "main:after") == (0, 0)
    assert ev(trace, "b:cancelled") and ev(trace, "c:cancelled")
    fail = at(trace, "a:raise")
    if not (eager(factory) and steps == 0 and PY < (3, 12)):
        # The parent is cancelled by the done callback of the failed child.
        shortcut = eager(factory) and DONE_SHORTCUT and steps == 0
        assert at(trace, "body:cancelled") == fail + (1 if shortcut else 2)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("steps", [0, 1])
def test_child_keyboardinterrupt_systemexit_reraised_bare(impl, exc_type,
                                                          steps):
    async def body(sc, g, named):
        spawn(sc, g, named, "b", sleep_forever(sc, "b"))
        spawn(sc, g, named, "a", worker(sc, "a", steps=steps,
                                        exc=exc_type("k")))
        spawn(sc, g, named, "c", worker(sc, "c", exc=Boom("c"), steps=2))
        await sleep_forever(sc, "body")

    trace = tg_parity(impl, group_scenario(body))
    raised = [e for e in ev(trace, "main:raised")]
    if raised:
        got = raised[0]
        assert got[0][:2] == (exc_type.__name__, "a.exc")
        if AXIS_EAGER and steps == 0:
            # Raised out of create_task by the eager step: the body
            # raised it, the group never saw the child fail.
            assert got[2] == "<TaskGroup cancelling>"
        elif AEXIT_CLEARS:
            # __aexit__ drops the error list when it ends (gh-124958).
            assert got[2] == "<TaskGroup cancelling>"
        else:
            # KeyboardInterrupt/SystemExit win and keep the error list.
            assert got[2].startswith("<TaskGroup errors=")
    # The exception also went out of the loop from the child's step.
    assert ev(trace, "run:raised")[0][0][:2] == (exc_type.__name__, "a.exc")


def test_base_exception_makes_base_exception_group(impl):
    async def body(sc, g, named):
        spawn(sc, g, named, "a", worker(sc, "a", exc=Boom("a"), steps=1))
        spawn(sc, g, named, "b", worker(sc, "b", exc=BaseBoom("b"),
                                        steps=1))
        spawn(sc, g, named, "c", worker(sc, "c", steps=5,
                                        on_cancel=Boom("c")))
        await sleep_forever(sc, "body")

    trace = tg_parity(impl, group_scenario(body))
    got = one(trace, "run:raised")[0]
    assert got[0] == "BaseExceptionGroup"
    # Errors in the order the children failed.
    assert [m[1] for m in got[2][2]] == ["a.exc", "b.exc", "c.exc"]


def test_errors_in_failure_order(impl):
    async def body(sc, g, named):
        spawn(sc, g, named, "a", worker(sc, "a", exc=Boom("a"), steps=2))
        spawn(sc, g, named, "b", worker(sc, "b", exc=Boom("b"), steps=1))
        spawn(sc, g, named, "c", worker(sc, "c", exc=Boom("c"), steps=2))
        spawn(sc, g, named, "d", worker(sc, "d", steps=4,
                                        on_cancel=ValueError("d")))
        await asyncio.sleep(0)

    trace = tg_parity(impl, group_scenario(body))
    got = one(trace, "main:raised")[0]
    assert got[0] == "ExceptionGroup"
    # b fails first; its done callback runs after a's next step (a fails
    # too) and before c's (c is cancelled first); d fails in its handler.
    assert [m[1] for m in got[2][2]] == ["b.exc", "a.exc", "d.exc"]
    # The body finished before the first failure: __aexit__ was already
    # waiting, so nobody's CancelledError became the group's context.
    assert ev(trace, "body:done")


def test_errors_raised_during_abort_hash_order(impl):
    """Children that fail in their cancellation handlers fail in the order
    the group cancelled them: set order in the stdlib (arbitrary).
    Compared as a multiset; the order must be the failure order."""

    async def body(sc, g, named):
        for n in "bcde":
            spawn(sc, g, named, n, worker(
                sc, n, wait=[asyncio.get_running_loop().create_future()],
                on_cancel=Boom(n)))
        spawn(sc, g, named, "a", worker(sc, "a", exc=Boom("a"), steps=1))
        await sleep_forever(sc, "body")

    trace = tg_parity(impl, group_scenario(body, ordered=False))
    got = one(trace, "main:raised")[0]
    failed = [e[2][1] for e in trace if e[1].endswith(":raise")]
    assert sorted(failed) == ["a.exc", "b.exc", "c.exc", "d.exc", "e.exc"]
    assert sorted(m[1] for m in got[2][2]) == sorted(failed)


@pytest.mark.parametrize("how", ["external", "self"])
def test_cancelled_child_is_ignored(impl, how):
    async def body(sc, g, named):
        if how == "external":
            t = spawn(sc, g, named, "a", sleep_forever(sc, "a"))
            await asyncio.sleep(0)
            sc("cancel-a", t.cancel("bye"))
        else:
            spawn(sc, g, named, "a", worker(
                sc, "a", steps=1, exc=asyncio.CancelledError("self")))
        spawn(sc, g, named, "b", worker(sc, "b", steps=2, result="B"))

    trace = tg_parity(impl, group_scenario(body))
    assert one(trace, "main:exited") == (0, "<TaskGroup entered>")
    assert one(trace, "b:return") == ("B",)
    assert one(trace, "a:final")[0][0] == "cancelled"


# ---------------------------------------------------------------------------
# The body's exception, body cancellation, outer cancellation
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("child_fails", [False, True])
def test_body_exception_joins_group(impl, child_fails):
    async def body(sc, g, named):
        spawn(sc, g, named, "a", worker(sc, "a", steps=3,
                                        on_cancel=Boom("a")
                                        if child_fails else None))
        spawn(sc, g, named, "b", sleep_forever(sc, "b"))
        await asyncio.sleep(0)
        raise ValueError("body")

    trace = tg_parity(impl, group_scenario(body))
    got = one(trace, "main:raised")
    assert got[0][0] == "ExceptionGroup"
    members = [m[1] for m in got[0][2][2]]
    assert members == (["a.exc", "body.exc"] if child_fails
                       else ["body.exc"])
    # raise ... from None, while the body's exception is being handled.
    assert got[0][3:] == ("body.exc", None, True)
    assert got[1] == 0


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit,
                                      BaseBoom, GeneratorExit])
def test_body_base_exception(impl, exc_type):
    async def body(sc, g, named):
        spawn(sc, g, named, "a", worker(sc, "a", steps=3))
        spawn(sc, g, named, "b", worker(sc, "b", steps=3,
                                        on_cancel=Boom("b")))
        await asyncio.sleep(0)
        raise exc_type("body")

    trace = tg_parity(impl, group_scenario(body))
    got = one(trace, "main:raised")[0]
    if exc_type in (BaseBoom, GeneratorExit):
        # Only KeyboardInterrupt and SystemExit are re-raised bare.
        assert got[0] == "BaseExceptionGroup"
        assert [m[1] for m in got[2][2]] == ["b.exc", "body.exc"]
    else:
        assert got[:2] == (exc_type.__name__, "body.exc")


@pytest.mark.parametrize("with_child_error", [False, True])
def test_body_raises_cancelled_error_itself(impl, with_child_error):
    async def body(sc, g, named):
        spawn(sc, g, named, "a", worker(sc, "a", steps=2,
                                        on_cancel=Boom("a")
                                        if with_child_error else None))
        await asyncio.sleep(0)
        raise asyncio.CancelledError("body")

    trace = tg_parity(impl, group_scenario(body))
    got = one(trace, "main:raised")
    if with_child_error:
        assert got[0][0] == "ExceptionGroup"
        assert [m[1] for m in got[0][2][2]] == ["a.exc"]
    else:
        assert got[0][:2] == ("CancelledError", "body.exc")
    assert got[1] == 0


def test_cancelled_error_subclass_from_body(impl):
    """3.13 treats CancelledError subclasses like CancelledError."""

    class MyCancelled(asyncio.CancelledError):
        pass

    async def body(sc, g, named):
        spawn(sc, g, named, "a", worker(sc, "a", steps=2))
        raise MyCancelled("body")

    trace = tg_parity(impl, group_scenario(body))
    got = one(trace, "main:raised")[0]
    if PY313:
        assert got[:2] == ("MyCancelled", "body.exc")
    else:
        assert got[0] == "BaseExceptionGroup"


@FACTORIES
@pytest.mark.parametrize("where", ["body", "aexit"])
@pytest.mark.parametrize("child_error", [None, "before", "after"])
@pytest.mark.parametrize("times", [1, 2])
def test_outer_cancellation(impl, where, child_error, times, factory):
    """The parent is cancelled from outside (``times`` times) in the body
    or while __aexit__ waits; a child may fail before or after."""

    def scenario(sc):
        named = {}

        async def main():
            me = asyncio.current_task()
            g = TG(sc)()
            sc.label(g, "g")
            try:
                async with g:
                    t = g.create_task(worker(
                        sc, "a", steps=6,
                        on_cancel=Boom("a") if child_error == "after"
                        else None))
                    named["a"] = t
                    sc.label(t, "a")
                    if child_error == "before":
                        named["e"] = g.create_task(
                            worker(sc, "e", exc=Boom("e")))
                        sc.label(named["e"], "e")
                    if where == "body":
                        await sleep_forever(sc, "body")
            except BaseException as e:
                sc.label(e, "main.exc")
                sc("main:raised", xdesc(sc, e), me.cancelling(), repr(g))
            else:
                sc("main:exited", me.cancelling(), repr(g))
            sc("main:uncancel", me.uncancel() if me.cancelling() else None,
               me.cancelling())
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError as e:
                sc("main:recancelled", xdesc(sc, e, name="re.cancel"),
                   me.cancelling())
            await drain(exclude=outer_tasks)

        outer_tasks = []

        async def canceller(main_task):
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            for i in range(times):
                sc("cancel", i, main_task.cancel(f"ext{i}"),
                   main_task.cancelling())

        async def outer():
            outer_tasks.append(current_task())
            main_task = parent_task(asyncio.get_running_loop(), main())
            sc.label(main_task, "main")
            c = asyncio.get_running_loop().create_task(canceller(main_task))
            try:
                await main_task
            except BaseException as e:
                sc("outer:main-raised", xdesc(sc, e))
            await c
            sc("main:final", sc.state(main_task))

        install_child_factory(sc.loop, factory)
        sc.run(parent_task(sc.loop, outer()))

    trace = tg_parity(impl, scenario)
    got = one(trace, "main:raised")
    assert got[0][0] == ("CancelledError" if child_error is None
                         else "ExceptionGroup")
    # The outer cancellations stay counted.  On 3.11/3.12 a child that
    # fails while __aexit__ waits adds the group's own request, which
    # nobody takes back (the uncancel() ran at __aexit__ entry); with an
    # eager start it failed inside create_task, before __aexit__.
    extra = (where == "aexit" and child_error == "before" and not PY313
             and not eager(factory))
    assert got[1] == times + extra
    assert one(trace, "main:uncancel") == (times + extra - 1,) * 2
    # 3.13 un-cancels and re-cancels a parent cancelled from outside when
    # errors win: the next await of the parent raises CancelledError.
    recancelled = PY313 and times == 2 and child_error is not None
    assert bool(ev(trace, "main:recancelled")) == recancelled


def test_cancelling_after_except_star(impl):
    """SEMANTICS §1.5: after ``except*`` of a group error the parent's
    cancelling() is 1 on 3.11/3.12 when the child failed after the body
    finished, 0 on 3.13."""

    async def body(sc, g, named):
        spawn(sc, g, named, "a", worker(sc, "a", exc=Boom("a"), steps=2))

    trace = tg_parity(impl, group_scenario(body))
    got = one(trace, "main:raised")
    assert got[0][0] == "ExceptionGroup"
    assert got[1] == (0 if PY313 else 1)
    assert one(trace, "main:after") == ((0, 0) if PY313 else (1, 0))


# ---------------------------------------------------------------------------
# Spawning while exiting, nested groups, other tasks
# ---------------------------------------------------------------------------

def test_spawn_from_child_while_exiting(impl):
    def make_spawner(sc, g, named, depth):
        async def spawner():
            sc(f"s{depth}:start")
            await asyncio.sleep(0)
            if depth < 3:
                t = g.create_task(make_spawner(sc, g, named, depth + 1)())
                named[f"s{depth + 1}"] = t
                sc.label(t, f"s{depth + 1}")
                sc(f"s{depth}:spawned", repr(g))
            return depth
        return spawner

    async def body(sc, g, named):
        spawn(sc, g, named, "s0", make_spawner(sc, g, named, 0)())

    # The spawners read repr(g) while the group exits (difference #6).
    trace = tg_parity(impl, group_scenario(body), exiting_count=True)
    assert one(trace, "main:exited") == (0, "<TaskGroup entered>")
    assert one(trace, "s2:spawned")


def test_spawn_from_child_after_abort(impl):
    async def body(sc, g, named):
        async def late():
            try:
                await asyncio.sleep(0)
                await asyncio.sleep(0)
            finally:
                c = worker(sc, "late")
                try:
                    g.create_task(c)
                except RuntimeError as e:
                    sc("late:refused", str(e))
                    c.close()

        spawn(sc, g, named, "l", late())
        spawn(sc, g, named, "a", worker(sc, "a", exc=Boom("a")))

    trace = tg_parity(impl, group_scenario(body))
    assert "shutting down" in one(trace, "late:refused")[0]


def test_nested_groups(impl):
    async def body(sc, g, named):
        async def inner_parent():
            me = asyncio.current_task()
            h = TG(sc)()
            sc.label(h, "h")
            try:
                async with h:
                    t = h.create_task(worker(sc, "i1", steps=2,
                                             exc=Boom("i1")))
                    sc.label(t, "i1")
                    h.create_task(sleep_forever(sc, "i2"))
                    await sleep_forever(sc, "inner-body")
            except BaseException as e:
                sc.label(e, "inner.exc")
                sc("inner:raised", xdesc(sc, e), me.cancelling(), repr(h))
                raise
        spawn(sc, g, named, "ip", inner_parent())
        spawn(sc, g, named, "o", worker(sc, "o", steps=8))
        await sleep_forever(sc, "body")

    trace = tg_parity(impl, group_scenario(body))
    got = one(trace, "main:raised")[0]
    assert got[0] == "ExceptionGroup"
    (m,) = got[2][2]
    assert m[:2] == ("ExceptionGroup", "inner.exc")
    assert [x[1] for x in m[2][2]] == ["i1.exc"]


def test_nested_group_in_body_outer_child_fails(impl):
    async def body(sc, g, named):
        spawn(sc, g, named, "a", worker(sc, "a", steps=2, exc=Boom("a")))
        h = TG(sc)()
        sc.label(h, "h")
        try:
            async with h:
                t = h.create_task(sleep_forever(sc, "i1"))
                sc.label(t, "i1")
                await sleep_forever(sc, "inner-body")
        except BaseException as e:
            sc.label(e, "inner.exc")
            sc("inner:raised", xdesc(sc, e),
               asyncio.current_task().cancelling(), repr(h))
            raise

    trace = tg_parity(impl, group_scenario(body))
    assert one(trace, "inner:raised")[0][0] == "CancelledError"


def test_create_task_from_another_task(impl):
    """A child created from another task still belongs to the group: its
    failure cancels the group's parent, not the task that created it."""

    def scenario(sc):
        async def helper(g):
            t = g.create_task(worker(sc, "a", steps=1, exc=Boom("a")))
            sc.label(t, "a")
            sc("helper:created", repr(g))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            sc("helper:done", asyncio.current_task().cancelling())

        async def main():
            me = asyncio.current_task()
            g = TG(sc)()
            try:
                async with g:
                    h = asyncio.get_running_loop().create_task(helper(g))
                    await sleep_forever(sc, "body")
            except BaseException as e:
                sc.label(e, "main.exc")
                sc("main:raised", xdesc(sc, e), me.cancelling())
            await h

        sc.run(main)

    trace = tg_parity(impl, scenario)
    assert one(trace, "helper:done") == (0,)


def test_exit_in_another_task(impl):
    """__aenter__ in one task, __aexit__ awaited by another: the parent is
    still the first task (whatever the stdlib then does)."""

    def scenario(sc):
        async def main():
            me = asyncio.current_task()
            sc.label(me, "main")
            g = TG(sc)()
            await g.__aenter__()
            t = g.create_task(worker(sc, "a", steps=1, exc=Boom("a")))
            sc.label(t, "a")

            async def exiter():
                try:
                    r = await g.__aexit__(None, None, None)
                except BaseException as e:
                    sc.label(e, "exit.exc")
                    sc("exiter:raised", xdesc(sc, e),
                       asyncio.current_task().cancelling())
                else:
                    sc("exiter:returned", r)

            x = asyncio.get_running_loop().create_task(exiter())
            try:
                for _ in range(6):
                    await asyncio.sleep(0)
            except asyncio.CancelledError as e:
                sc("main:cancelled", xdesc(sc, e, name="main.cancel"),
                   me.cancelling())
            await x
            sc("main:end", me.cancelling())

        sc.run(main)

    trace = tg_parity(impl, scenario)
    # The failure cancels the group's parent (main), not the exiter ...
    assert one(trace, "main:cancelled")[1] == 1
    got = one(trace, "exiter:raised")
    assert got[0][0] == "ExceptionGroup" and got[1] == 0
    # ... and the uncancel() is the parent's: 3.11/3.12 did it at
    # __aexit__ entry (before the child failed), 3.13 after the wait.
    assert one(trace, "main:end") == (0 if PY313 else 1,)


def test_group_from_another_loop(impl):
    """Entered on loop A; create_task called while loop B runs: the task
    is created on A (the group's loop), like the stdlib does."""

    def fn(TaskGroup, loop):
        other = new_loop()
        res = []
        try:
            g = TaskGroup()
            gate = loop.create_future()

            async def main():
                async with g:
                    await gate
                return "main-done"

            async def child():
                return asyncio.get_running_loop() is loop

            m = loop.create_task(main())
            run_briefly(loop, 2)
            res.append(repr(g))

            async def foreign():
                t = g.create_task(child())
                return t.get_loop() is loop, t.done()

            res.append(outcome(other.run_until_complete, foreign()))
            res.append(repr(g))
            gate.set_result(None)
            res.append(loop.run_until_complete(m))
            res.append(repr(g))
        finally:
            close_loop(other)
        return res

    out = both(impl, fn)[0]
    assert out[1] == ("ok", (True, False))


# ---------------------------------------------------------------------------
# Timeouts (virtual clock)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("deadline", [0.5, 1.5, 3.5])
@pytest.mark.parametrize("child_fails_at", [None, 1.0, 3.0])
def test_group_inside_timeout(impl, deadline, child_fails_at):
    def scenario(sc):
        async def child(name, delay, exc=None):
            sc(f"{name}:start", sc.loop.time())
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError as e:
                sc.label(e, f"{name}.cancel")
                sc(f"{name}:cancelled", sc.loop.time(), xdesc(sc, e))
                raise
            if exc is not None:
                sc.label(exc, f"{name}.exc")
                sc(f"{name}:raise", sc.loop.time())
                raise exc
            sc(f"{name}:return", sc.loop.time())
            return name

        async def main():
            me = asyncio.current_task()
            g = TG(sc)()
            try:
                async with TO(sc)(deadline) as cm:
                    try:
                        async with g:
                            g.create_task(child("a", 2.0))
                            if child_fails_at is not None:
                                g.create_task(child("f", child_fails_at,
                                                    Boom("f")))
                            await child("body", 1.0)
                    except BaseException as e:
                        sc.label(e, "group.exc")
                        sc("group:raised", sc.loop.time(), xdesc(sc, e),
                           me.cancelling(), repr(g))
                        raise
            except BaseException as e:
                sc.label(e, "main.exc")
                sc("main:raised", sc.loop.time(), xdesc(sc, e),
                   me.cancelling(), cm.expired())
            else:
                sc("main:exited", sc.loop.time(), me.cancelling(),
                   cm.expired())

        sc.run(main)

    trace = tg_parity(impl, scenario, clock=True)
    fails = (child_fails_at if child_fails_at is not None
             and child_fails_at < deadline else None)
    if fails is not None:
        # The child's error wins; the timeout never fired.  3.11/3.12
        # leave the group's cancellation request on the parent (the child
        # failed after the body had finished), 3.13 takes it back.
        t, desc, cancelling, expired = one(trace, "main:raised")
        assert t == 1000.0 + fails
        assert desc[0] == "ExceptionGroup"
        assert [m[1] for m in desc[2][2]] == ["f.exc"]
        assert (cancelling, expired) == (0 if PY313 else 1, False)
    elif deadline < 2.0:
        # The deadline fired in the body (< 1 s) or while __aexit__ waited
        # for "a": the group let the CancelledError through, timeout()
        # turned it into TimeoutError.
        t, desc, cancelling, expired = one(trace, "main:raised")
        assert t == 1000.0 + deadline
        assert desc[0] == "TimeoutError"
        assert desc[3] == ("body.cancel" if deadline < 1.0 else "group.exc")
        assert (cancelling, expired) == (0, True)
        assert one(trace, "group:raised")[1][0] == "CancelledError"
    else:
        assert one(trace, "main:exited") == (1002.0, 0, False)


@pytest.mark.parametrize("deadline", [0.5, 2.5])
@pytest.mark.parametrize("sibling", ["sleeps", "fails"])
def test_timeout_inside_group(impl, deadline, sibling):
    def scenario(sc):
        async def timed_child():
            me = asyncio.current_task()
            try:
                async with TO(sc)(deadline):
                    await asyncio.sleep(2.0)
                    sc("tc:slept", sc.loop.time())
            except BaseException as e:
                sc.label(e, "tc.exc")
                sc("tc:raised", sc.loop.time(), xdesc(sc, e),
                   me.cancelling())
                raise

        async def other():
            await asyncio.sleep(1.0)
            if sibling == "fails":
                raise Boom("o")
            await asyncio.sleep(3.0)

        async def main():
            me = asyncio.current_task()
            g = TG(sc)()
            try:
                async with g:
                    g.create_task(timed_child())
                    g.create_task(other())
                    async with TO(sc)(deadline):
                        await asyncio.sleep(5)
            except BaseException as e:
                sc.label(e, "main.exc")
                sc("main:raised", sc.loop.time(), xdesc(sc, e),
                   me.cancelling(), repr(g))
            else:
                sc("main:exited", sc.loop.time(), me.cancelling())

        sc.run(main)

    trace = tg_parity(impl, scenario, clock=True)
    t, desc, cancelling, rep_ = one(trace, "main:raised")
    assert desc[0] == "ExceptionGroup"
    if sibling == "fails" and deadline > 1.0:
        assert t == 1001.0
        assert [m[0] for m in desc[2][2]] == ["Boom"]
    elif deadline < 1.0 and EAGER:
        # The eagerly started child armed its (equal) deadline first: its
        # TimeoutError, then the body's.
        assert t == 1000.0 + deadline
        assert [m[0] for m in desc[2][2]] == ["TimeoutError"] * 2
    else:
        # The body's own TimeoutError joins the group.
        assert t == 1000.0 + deadline
        assert [m[0] for m in desc[2][2]] == ["TimeoutError"]
    assert (cancelling, rep_) == (0, "<TaskGroup cancelling>")


# ---------------------------------------------------------------------------
# repr
# ---------------------------------------------------------------------------

@FACTORIES
def test_repr_in_every_state(impl, factory):
    async def body(sc, g, named):
        sc("repr:entered", repr(g))
        spawn(sc, g, named, "a", sleep_forever(sc, "a"))
        spawn(sc, g, named, "b", worker(sc, "b", steps=1))
        sc("repr:two", repr(g))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        sc("repr:one", repr(g))
        spawn(sc, g, named, "c", worker(sc, "c", exc=Boom("c"), steps=1))
        spawn(sc, g, named, "d", worker(sc, "d", steps=3,
                                        on_cancel=Boom("d")))
        try:
            await sleep_forever(sc, "body")
        finally:
            sc("repr:aborting", repr(g))

    def final(sc, named):
        pass

    trace = tg_parity(impl, group_scenario(body, final=final,
                                           factory=factory))
    assert one(trace, "main:before")[1] == "<TaskGroup>"
    assert one(trace, "repr:entered") == ("<TaskGroup entered>",)
    if not eager(factory):
        assert one(trace, "repr:two") == ("<TaskGroup tasks=2 entered>",)
        assert one(trace, "repr:one") == ("<TaskGroup tasks=1 entered>",)
    assert one(trace, "repr:aborting") == (
        "<TaskGroup tasks=2 errors=1 cancelling>",)
    assert one(trace, "main:raised")[2] == "<TaskGroup cancelling>"


def test_subclass_overriding_create_task(impl):
    def fn(TaskGroup, loop):
        class Collecting(TaskGroup):
            def __init__(self):
                super().__init__()
                self.results = []

            def create_task(self, coro, **kw):
                t = super().create_task(coro, **kw)
                self.results.append(t)
                return t

        async def child(i):
            await asyncio.sleep(0)
            return i * i

        async def main():
            async with Collecting() as g:
                for i in range(4):
                    g.create_task(child(i), name=f"c{i}")
            return ([t.result() for t in g.results],
                    [t.get_name() for t in g.results], repr(g),
                    isinstance(g, TaskGroup))

        return loop.run_until_complete(main())

    assert both(impl, fn)[0] == ([0, 1, 4, 9], ["c0", "c1", "c2", "c3"],
                                 "<TaskGroup entered>", True)


# ---------------------------------------------------------------------------
# Exception handler: a child fails after the parent is done
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2])
def test_child_fails_after_parent_done(impl, n):
    def scenario(sc):
        async def main():
            g = TG(sc)()
            await g.__aenter__()
            t = g.create_task(worker(sc, "a", steps=2, exc=Boom("a")))
            sc.label(t, "a")
            if n == 2:
                t = g.create_task(worker(sc, "b", steps=3, exc=Boom("b")))
                sc.label(t, "b")
            sc("main:return", repr(g))
            sc.label(g, "g")
            return g

        m = sc.loop.create_task(main())
        sc.label(m, "main")
        sc.run(m)
        for _ in range(4):
            run_briefly(sc.loop)
        sc("g:repr", repr(m.result()))
        sc("main:final", sc.state(m))

    trace = tg_parity(impl, scenario)
    recs = ev(trace, "exception-handler")
    # Every failure is reported, and nothing else.
    assert len(recs) == n
    msg = norm(recs[0][0])
    # (3.13.0 names a task made by a task factory 'None'.)
    assert re.match(r"Task <Task finished name='(Task-N|None)' coro=", msg)
    assert "has errored out but its parent task <Task finished" in msg


# ---------------------------------------------------------------------------
# Eager start (3.12+ shortcut) and loop iterations
# ---------------------------------------------------------------------------

@FACTORIES
def test_eager_done_child_shortcut(impl, factory):
    async def body(sc, g, named):
        me = asyncio.current_task()
        t = spawn(sc, g, named, "a", worker(sc, "a", result="A"))
        sc("after-a", t.done(), repr(g), me.cancelling())
        t = spawn(sc, g, named, "b", worker(sc, "b", exc=Boom("b")))
        sc("after-b", t.done(), repr(g), me.cancelling())
        c = worker(sc, "c")
        try:
            spawn(sc, g, named, "c", c)
        except RuntimeError as e:
            sc("c:refused", str(e))
            if c.cr_frame is not None:
                c.close()
        await asyncio.sleep(0)
        sc("body:end")

    trace = tg_parity(impl, group_scenario(body, factory=factory))
    if eager(factory) and ALWAYS_ADD:
        # gh-128550: a child done inside create_task is kept and called
        # back like any other; its failure cancels nothing before that.
        assert one(trace, "after-a") == (
            True, "<TaskGroup tasks=1 entered>", 0)
        assert one(trace, "after-b") == (
            True, "<TaskGroup tasks=2 entered>", 0)
        assert one(trace, "c:created") == (
            True, "<TaskGroup tasks=3 entered>")
    elif eager(factory):
        assert one(trace, "after-a") == (True, "<TaskGroup entered>", 0)
        # 3.12/3.13.0: an eagerly failed child is handled inside
        # create_task: the parent is cancelled right away.
        assert one(trace, "after-b") == (
            True, "<TaskGroup errors=1 cancelling>", 1)
        assert one(trace, "c:refused") == (
            "TaskGroup <TaskGroup errors=1 cancelling> is shutting down",)
    else:
        assert one(trace, "after-a") == (
            False, "<TaskGroup tasks=1 entered>", 0)
        assert one(trace, "after-b") == (
            False, "<TaskGroup tasks=2 entered>", 0)
    got = one(trace, "main:raised")
    assert [m[1] for m in got[0][2][2]] == ["b.exc"]


@FACTORIES
def test_iterations_of_each_event(impl, factory):
    """Children start, the parent is cancelled and __aexit__ returns in
    the same loop iteration as with the stdlib (the trace comparison);
    and the stdlib's own timeline, pinned."""

    async def body(sc, g, named):
        spawn(sc, g, named, "a", worker(sc, "a", steps=1, result="A"))
        spawn(sc, g, named, "b", worker(sc, "b", steps=3, exc=Boom("b")))
        spawn(sc, g, named, "c", sleep_forever(sc, "c"))
        await sleep_forever(sc, "body")

    trace = tg_parity(impl, group_scenario(body, factory=factory))
    t0 = at(trace, "main:entered")
    start = t0 if eager(factory) else t0 + 1
    assert at(trace, "a:start") == at(trace, "b:start") == start
    assert at(trace, "b:raise") == start + 3
    # Done callback of b (next iteration) cancels the parent and c; both
    # wake up one iteration later.
    assert at(trace, "body:cancelled") == start + 5
    assert at(trace, "c:cancelled") == start + 5
    # c's done callback, then the parent's wakeup.
    assert at(trace, "main:raised") == start + 7


def test_leaves_nothing_running(impl):
    def fn(TaskGroup, loop):
        async def child(i):
            await asyncio.sleep(0)
            if i == 2:
                raise Boom(i)
            await asyncio.sleep(1)

        async def main():
            try:
                async with TaskGroup() as g:
                    for i in range(5):
                        g.create_task(child(i))
            except* Boom as eg:
                caught = [str(e) for e in eg.exceptions]
            me = asyncio.current_task()
            return caught, [t for t in asyncio.all_tasks()
                            if t is not me and not t.done()], me.cancelling()

        return loop.run_until_complete(main())

    out = both(impl, fn)[0]
    assert out[0] == ["2"] and out[1] == []
    assert out[2] == (0 if PY313 else 1)


@FACTORIES
@pytest.mark.parametrize("exiting", [False, True])
def test_repr_counts_a_finished_child_until_its_done_callback(impl, exiting,
                                                              factory):
    """A child that returned is counted in ``tasks=N`` until the group's
    done-callback for it has run (the next loop iteration), in the body
    and while __aexit__ waits alike."""

    async def body(sc, g, named):
        async def peer():
            # Runs right after a, in the iteration in which a returns.
            if eager(factory):
                await asyncio.sleep(0)
            sc("peer:repr", repr(g))
            await asyncio.sleep(0)
            sc("peer:repr-later", repr(g))

        spawn(sc, g, named, "a", worker(sc, "a", steps=1 if eager(factory) else 0))
        spawn(sc, g, named, "p", peer())
        if not exiting:
            for i in range(3):
                await asyncio.sleep(0)
                sc("body:repr", i, repr(g))

    trace = tg_parity(impl, group_scenario(body, factory=factory),
                      exiting_count=exiting)
    assert at(trace, "peer:repr") == at(trace, "a:return")
    lags = exiting and exiting_count_lags(impl) and factory is None
    assert one(trace, "peer:repr") in (
        [("<TaskGroup tasks=1 entered>",), ("<TaskGroup tasks=2 entered>",)]
        if lags else [("<TaskGroup tasks=2 entered>",)])
    assert one(trace, "peer:repr-later") == ("<TaskGroup tasks=1 entered>",)


def test_subclass_extending_enter_and_exit(impl):
    def fn(TaskGroup, loop):
        log = []

        class Logged(TaskGroup):
            async def __aenter__(self):
                log.append(("enter", repr(self)))
                r = await super().__aenter__()
                log.append(("entered", r is self, repr(self)))
                return r

            async def __aexit__(self, et, exc, tb):
                log.append(("exit", et and et.__name__, repr(self)))
                try:
                    return await super().__aexit__(et, exc, tb)
                except BaseException as e:
                    log.append(("exit-raised", type(e).__name__))
                    raise

        async def child(i):
            await asyncio.sleep(0)
            if i == 1:
                raise Boom(i)
            return i

        async def main():
            try:
                async with Logged() as g:
                    for i in range(3):
                        g.create_task(child(i))
                    await asyncio.sleep(1)
            except* Boom as eg:
                log.append(("caught", [str(e) for e in eg.exceptions]))
            return log

        return loop.run_until_complete(main())

    out = both(impl, fn)[0]
    assert out[-1] == ("caught", ["1"])
    assert ("exit", "CancelledError", "<TaskGroup tasks=1 errors=1 "
            "cancelling>") in out or ("exit", "CancelledError",
                                      "<TaskGroup errors=1 cancelling>") in out


@pytest.mark.parametrize("first", ["ok", "error", "cancelled"])
def test_exit_called_again(impl, first):
    """__aexit__ awaited a second time after the group finished: whatever
    the stdlib does (its error list is gone after a group error)."""

    def fn(TaskGroup, loop):
        async def child():
            await asyncio.sleep(0)
            if first == "error":
                raise Boom("c")

        async def main():
            g = TaskGroup()
            res = []
            try:
                async with g:
                    g.create_task(child())
                    if first == "cancelled":
                        raise asyncio.CancelledError("body")
            except BaseException as e:
                res.append(("first", type(e).__name__))
            for exc in (None, Boom("again"), asyncio.CancelledError("c2")):
                et = None if exc is None else type(exc)
                res.append((await aoutcome(g.__aexit__(et, exc, None)),
                            repr(g)))
            res.append(outcome(g.create_task, None))
            return res

        return loop.run_until_complete(main())

    both(impl, fn)


class _BadYield:
    def __await__(self):
        yield 42


@pytest.mark.parametrize("kind", [
    "return-exception-object", "stop-iteration", "stop-async-iteration",
    "generator-exit", "bad-yield", "return-in-finally-after-cancel",
])
@pytest.mark.parametrize("steps", [0, 1])
def test_child_unusual_outcomes(impl, kind, steps):
    """What the Task machinery makes of unusual child outcomes reaches the
    group unchanged (StopIteration becomes RuntimeError, a bad yield is
    thrown back into the child, ...)."""

    async def child(sc):
        sc("x:start")
        for _ in range(steps):
            await asyncio.sleep(0)
        if kind == "return-exception-object":
            return Boom("returned")
        if kind == "stop-iteration":
            raise StopIteration("si")
        if kind == "stop-async-iteration":
            raise StopAsyncIteration("sai")
        if kind == "generator-exit":
            raise GeneratorExit("ge")
        if kind == "bad-yield":
            try:
                await _BadYield()
            except RuntimeError as e:
                sc("x:bad-yield", norm(str(e)))
                raise
        if kind == "return-in-finally-after-cancel":
            # A cancellation swallowed on the way out (what `return` in a
            # `finally` did; PEP 765 makes that a SyntaxWarning on 3.14).
            try:
                await asyncio.get_running_loop().create_future()
            except BaseException:
                pass
            return "finally"

    async def body(sc, g, named):
        spawn(sc, g, named, "x", child(sc))
        spawn(sc, g, named, "y", worker(sc, "y", steps=3))
        if kind == "return-in-finally-after-cancel":
            await asyncio.sleep(0)
            named["x"].cancel()

    def final(sc, named):
        x = named["x"]
        if not x.cancelled() and x.exception() is None:
            sc("x:result", xdesc(sc, x.result(), name="x.result")
               if isinstance(x.result(), BaseException) else x.result())

    with warnings.catch_warnings():
        # StopIteration/StopAsyncIteration raised in a coroutine.
        warnings.simplefilter("ignore", DeprecationWarning)
        trace = tg_parity(impl, group_scenario(body, final=final))
    if kind in ("return-exception-object", "return-in-finally-after-cancel"):
        assert one(trace, "main:exited")
    else:
        got = one(trace, "main:raised")[0]
        assert got[0] in ("ExceptionGroup", "BaseExceptionGroup")


@FACTORIES
@pytest.mark.parametrize("sibling", [False, True])
def test_eager_failure_then_no_await(impl, factory, sibling):
    """A child that fails inside create_task (eager start) cancels the
    parent at once (3.12.1/3.13.0 shortcut).  If the body then leaves the
    group without awaiting, the parent's pending cancellation outlives the
    group on 3.12 (its uncancel() keeps the task's must-cancel flag) and
    not on 3.13 (an uncancel() down to zero clears it); with a sibling to
    wait for, __aexit__ consumes it.  Without the shortcut (3.12.9+,
    3.13.2+: gh-128550) the failure is taken note of by the child's
    done-callback, while __aexit__ waits for it."""

    async def body(sc, g, named):
        if sibling:
            spawn(sc, g, named, "s", sleep_forever(sc, "s"))
        spawn(sc, g, named, "a", worker(sc, "a", exc=Boom("a")))
        sc("body:after-create", asyncio.current_task().cancelling(),
           repr(g))

    def final(sc, named):
        pass

    trace = tg_parity(impl, group_scenario(body, final=final,
                                           factory=factory))
    got = one(trace, "main:raised")[0]
    assert [m[1] for m in got[2][2]] == ["a.exc"]
    drained = ev(trace, "main:probe-cancelled")
    if eager(factory) and DONE_SHORTCUT and not sibling:
        assert one(trace, "body:after-create") == (
            1, "<TaskGroup errors=1 cancelling>")
        assert bool(drained) == (not PY313)
    elif eager(factory) and not sibling:
        # Done, kept in the group, not yet taken note of.
        assert one(trace, "body:after-create") == (
            0, "<TaskGroup tasks=1 entered>")
        assert drained == []
    else:
        assert drained == []


@pytest.mark.parametrize("outcome", ["return", "raise", "cancelled"])
@pytest.mark.parametrize("steps", [0, 2])
def test_body_awaits_its_child(impl, outcome, steps):
    """The body awaits a child task directly (result, failure, the child
    cancelled by the body)."""

    async def body(sc, g, named):
        exc = Boom("a") if outcome == "raise" else None
        t = spawn(sc, g, named, "a", worker(sc, "a", steps=steps, exc=exc,
                                            result="A"))
        spawn(sc, g, named, "b", worker(sc, "b", steps=4))
        if outcome == "cancelled":
            await asyncio.sleep(0)
            t.cancel("stop")
        r = await t
        sc("body:awaited", r)

    trace = tg_parity(impl, group_scenario(body))
    if outcome == "return" or (outcome == "cancelled" and steps == 0):
        # (A child without steps has returned before the body cancels it.)
        assert one(trace, "body:awaited") == ("A",)
        assert one(trace, "main:exited")
    elif outcome == "cancelled":
        # The body's CancelledError from ``await t``; no group error.
        assert one(trace, "main:raised")[0][:2] == ("CancelledError",
                                                     "a.cancel")
    elif AXIS_EAGER and DONE_SHORTCUT and steps == 0:
        # Failed inside create_task: the next create_task is refused.
        got = one(trace, "main:raised")[0]
        assert [m[1] for m in got[2][2]] == ["a.exc", "body.exc"]
        assert got[2][2][1][0] == "RuntimeError"
    elif AXIS_EAGER and steps == 0:
        # Failed inside create_task, taken note of by its done-callback
        # (gh-128550); ``await t`` of the failed task raises the same
        # exception in the body at once: the group holds it twice.
        got = one(trace, "main:raised")[0]
        assert [m[1] for m in got[2][2]] == ["a.exc", "a.exc"]
    else:
        got = one(trace, "main:raised")[0]
        assert got[0] == "ExceptionGroup"
        # The group's done-callback runs before the body's wakeup and
        # cancels the parent: the body gets CancelledError, not the error.
        assert [m[1] for m in got[2][2]] == ["a.exc"]
        assert one(trace, "body:raised")[0][0] == "CancelledError"


def test_timeout_expiring_around_a_failing_group(impl):
    """The deadline fires while __aexit__ waits; a child's cancellation
    handler raises, so the group raises an ExceptionGroup, not
    CancelledError.  3.13's timeout() splices a TimeoutError into the
    members' __context__ chains (gh-96037); 3.11/3.12 let it through."""

    def scenario(sc):
        async def child():
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError as e:
                sc.label(e, "c.cancel")
                raise Boom("handler")

        async def main():
            me = asyncio.current_task()
            try:
                async with TO(sc)(1.0) as cm:
                    async with TG(sc)() as g:
                        g.create_task(child())
            except BaseException as e:
                sc.label(e, "main.exc")
                sc("main:raised", sc.loop.time(), xdesc(sc, e),
                   me.cancelling(), cm.expired())
                for m in getattr(e, "exceptions", ()):
                    chain = []
                    c = m.__context__
                    while c is not None and len(chain) < 4:
                        chain.append((type(c).__name__, sc.label(c)))
                        c = c.__context__
                    sc("member:context-chain", tuple(chain))

        sc.run(main)

    trace = tg_parity(impl, scenario, clock=True)
    t, desc, cancelling, expired = one(trace, "main:raised")
    assert (t, desc[0], cancelling, expired) == (
        1001.0, "ExceptionGroup", 0, True)
    chain = one(trace, "member:context-chain")[0]
    if PY313:
        assert chain[0][0] == "TimeoutError" and chain[1] == (
            "CancelledError", "c.cancel")
    else:
        assert chain[0] == ("CancelledError", "c.cancel")


def test_create_task_from_a_loop_callback(impl):
    """create_task needs no current task (only __aenter__ does): a plain
    loop callback may add children; they belong to the group."""

    def scenario(sc):
        async def main():
            me = asyncio.current_task()
            g = TG(sc)()

            def cb():
                t = g.create_task(worker(sc, "a", steps=1, exc=Boom("a")))
                sc.label(t, "a")
                sc("cb:created", repr(g),
                   asyncio.current_task() is None)

            try:
                async with g:
                    sc.loop.call_soon(cb)
                    await sleep_forever(sc, "body")
            except BaseException as e:
                sc.label(e, "main.exc")
                sc("main:raised", xdesc(sc, e), me.cancelling(), repr(g))

        sc.run(main)

    trace = tg_parity(impl, scenario)
    assert one(trace, "cb:created")[1] is True
    got = one(trace, "main:raised")
    assert [m[1] for m in got[0][2][2]] == ["a.exc"]
    assert got[1:] == (0, "<TaskGroup cancelling>")


def test_abandoned_group_child_destroyed_pending(impl):
    """A group never exited (its parent returned from the body by hand)
    whose child is garbage-collected while pending: the loop reports the
    destroyed pending task like the stdlib does."""

    def scenario(sc):
        async def main():
            g = TG(sc)()
            await g.__aenter__()
            g.create_task(sleep_forever(sc, "a"))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            sc("main:return", repr(g))

        sc.run(main)
        gc.collect()
        sc("collected")

    trace = tg_parity(impl, scenario)
    recs = ev(trace, "exception-handler")
    assert [r[0] for r in recs] == ["Task was destroyed but it is pending!"]
