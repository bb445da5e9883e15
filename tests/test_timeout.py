"""Parity tests for ``Timeout``, ``timeout()`` and ``timeout_at()``.

Scenarios are traced with the implementation under test (``impl.timeout``,
``impl.timeout_at``, ``impl.Timeout``, ``impl.TaskGroup``) and with asyncio's
own, each on a fresh loop (``tparity``); the traces must be equal: the loop
iteration of every event, exceptions with their identity and their
``__context__``/``__cause__`` relations, ``cancelling()`` counts, reprs,
``loop.time()`` where recorded, exception-handler calls after gc, warnings.
Then each test pins the facts that hold on every supported version; where
the versions differ, the expectation is computed from the running version.

Timing.  Deadlines are tested on the default loop with a virtual clock.
Tests that need the exact iteration of an expiry drive the loop by hand
(``run_briefly``: one iteration at a time, the clock moved between
iterations) or use a *stepping* clock (``step=``: the clock moves by a fixed
amount after every iteration and the loop never sleeps), so that the number
of iterations does not depend on how many timers the implementation keeps:
a native Timeout may share one loop timer between scopes and let an idle
loop wake up at a deadline that was already removed (an iteration in which
nothing observable happens).  Tests that run an *idle* virtual-clock loop
with autojump (``run_until_complete`` across a removed deadline) compare
only iterations in which something is recorded, so such a wake-up could
shift their numbers: they are marked ``IDLE_SENSITIVE`` in their docstring
(none of them crosses a removed deadline while idle).

On uvloop (its own millisecond timer wheel, which ignores a replaced
``loop.time()``) the tests use deadlines that are far away or already past.
"""

import asyncio
import gc
import re
import warnings

import pytest

from conftest import (
    LOOP_KIND,
    PY,
    TASKS_KIND,
    VirtualClock,
    entry,
    print_traces,
    run,
    run_briefly,
    trace_scenario,
    when,
)
from helpers import Boom, MyCancelled, creation_site, strip_origin

EAGER = TASKS_KIND == "eager"
NAN = float("nan")
INF = float("inf")


# ---------------------------------------------------------------------------
# Harness
# ---------------------------------------------------------------------------

def tparity(impl, scenario, *, virtual=True, step=None, start=1000.0,
            per_iteration_multiset=False):
    """Trace ``scenario(sc)`` with ``sc.impl = impl`` and with
    ``sc.impl = asyncio`` and assert the traces are equal; return the trace.

    ``virtual``: the default loop on a VirtualClock at ``start`` (else a loop
    of the active axes); ``step``: the clock does not jump to the next timer
    but moves by ``step`` after every iteration, and the loop never sleeps.
    ``per_iteration_multiset``: the events of one iteration are compared
    as a multiset (for tasks woken together by deadlines due in the same
    iteration: the order of those callbacks is free, README difference 3).
    """

    def trace(mod):
        def wrapped(sc):
            sc.impl = mod
            if step is not None:
                clock = sc.loop.clock
                clock.autojump = False
                sc.loop.fw_probes.insert(0, lambda: clock.advance(step))
            scenario(sc)

        return trace_scenario(mod, wrapped,
                              clock=VirtualClock(start) if virtual else None)

    got = trace(impl)
    want = trace(asyncio)
    if per_iteration_multiset:
        got = sorted(got, key=lambda e: (e[0], repr(e)))
        want = sorted(want, key=lambda e: (e[0], repr(e)))
    print_traces(got, want, impl.__name__, "asyncio")
    assert got == want
    return got


def manual(sc):
    """Stop the clock of ``sc.loop``: time moves only through advance()."""
    sc.loop.clock.autojump = False
    return sc.loop.clock


def step(sc, dt=0.0, n=1):
    """Move the clock by ``dt``, then run ``n`` iterations."""
    if dt:
        sc.loop.clock.advance(dt)
    sc.run_briefly(n)


async def hang(sc, name, *, catch=False, fut=None):
    """Wait on a future nobody resolves; record the cancellation (labelled
    ``<name>.cancel``) and the task's cancelling() count; re-raise it
    unless ``catch``."""
    try:
        await (sc.loop.create_future() if fut is None else fut)
    except asyncio.CancelledError as e:
        sc.label(e, f"{name}.cancel")
        sc(f"{name}:cancelled", e, asyncio.current_task().cancelling(),
           now(sc))
        if not catch:
            raise
        sc(f"{name}:suppressed")
    return "hang-result"


def me():
    return asyncio.current_task()


def now(sc):
    """loop.time() on a virtual clock, None on a real one."""
    return sc.loop.time() if sc.loop.clock is not None else None


_WHEN = re.compile(r"when=-?[0-9][0-9.e+-]*")


def nan_safe(x):
    """NaN compares unequal to itself: trace it as a string."""
    return "nan" if isinstance(x, float) and x != x else x


def rep(sc, cm):
    """repr(cm), with a real clock's deadline blanked out."""
    r = repr(cm)
    return r if sc.loop.clock is not None else _WHEN.sub("when=?", r)


def exc_info(desc):
    """(type name, args) of a traced exception description."""
    return desc[0], desc[1]


def ctx_of(trace_entry_exc):
    return trace_entry_exc[3]


def cause_of(trace_entry_exc):
    return trace_entry_exc[4]


async def scoped(sc, cm, name, body, *args, **kw):
    """``async with cm: await body(...)``; record entry, exit and what came
    out of the scope, with the task's cancelling() count."""
    sc.label(cm, name)
    sc(f"{name}:enter", rep(sc, cm))
    try:
        async with cm as got:
            assert got is cm
            sc(f"{name}:entered", rep(sc, cm),
               nan_safe(cm.when()) if sc.loop.clock is not None else None,
               me().cancelling())
            result = await body(*args, **kw)
    except BaseException as e:
        sc(f"{name}:raised", e, rep(sc, cm), cm.expired(), me().cancelling())
        raise
    sc(f"{name}:exited", result, rep(sc, cm), cm.expired(),
       me().cancelling())
    return result


# ---------------------------------------------------------------------------
# The object: repr, when(), expired(), construction
# ---------------------------------------------------------------------------

def test_repr_in_every_state(impl, vloop):
    async def main():
        out = []
        t = impl.timeout(10.12345)
        out.append(repr(t))
        async with t:
            out.append(repr(t))
            t.reschedule(1234.56789)
            out.append(repr(t))
            t.reschedule(None)
            out.append(repr(t))
            t.reschedule(INF)
            out.append(repr(t))
            t.reschedule(1005)
            out.append(repr(t))
        out.append(repr(t))
        t = impl.timeout(1)
        try:
            async with t:
                try:
                    await asyncio.sleep(5)
                except asyncio.CancelledError:
                    out.append(repr(t))
                    raise
        except TimeoutError:
            out.append(repr(t))
        return out

    got = run(vloop, main)
    assert got == [
        "<Timeout [created]>",
        "<Timeout [active] when=1010.123>",
        "<Timeout [active] when=1234.568>",
        "<Timeout [active] when=None>",
        "<Timeout [active] when=inf>",
        "<Timeout [active] when=1005>",
        "<Timeout [finished]>",
        "<Timeout [expiring]>",
        "<Timeout [expired]>",
    ]


def test_when_and_expired(impl, vloop):
    async def main():
        out = []
        t = impl.timeout_at(1002)
        out.append((t.when(), t.expired()))
        async with t:
            out.append((t.when(), t.expired()))
            t.reschedule(1001.5)
            out.append((t.when(), t.expired()))
            await asyncio.sleep(1)
        out.append((t.when(), t.expired()))
        t = impl.timeout(0.5)
        out.append((t.when(), t.expired()))
        try:
            async with t:
                await asyncio.sleep(1)
        except TimeoutError:
            out.append((t.when(), t.expired(), vloop.time()))
        t = impl.timeout(None)
        out.append((t.when(), t.expired()))
        return out

    assert run(vloop, main) == [
        (1002, False), (1002, False), (1001.5, False), (1001.5, False),
        (1001.5, False), (1001.5, True, 1001.5), (None, False)]


def test_when_returns_the_object_given(impl, vloop):
    """when() hands back the very object passed (no float conversion)."""

    class W(float):
        pass

    async def main():
        w = W(1001.0)
        t = impl.timeout_at(w)
        assert t.when() is w
        async with t:
            assert t.when() is w
            w2 = 1005
            t.reschedule(w2)
            assert t.when() is w2 and type(t.when()) is int
        return repr(t)

    assert run(vloop, main) == "<Timeout [finished]>"


def test_timeout_outside_a_running_loop(impl, event_loop_policy_guard):
    def observe(mod):
        out = []
        try:
            mod.timeout(1)
        except BaseException as e:
            out.append((type(e).__name__, e.args))
        try:
            mod.timeout(None)
        except BaseException as e:
            out.append((type(e).__name__, e.args))
        t = mod.timeout_at(5)
        out.append((repr(t), t.when(), t.expired(), type(t) is mod.Timeout))
        t = mod.Timeout(None)
        out.append((repr(t), t.when(), t.expired()))
        return out

    got = observe(impl)
    assert got == observe(asyncio)
    assert got == [
        ("RuntimeError", ("no running event loop",)),
        ("RuntimeError", ("no running event loop",)),
        ("<Timeout [created]>", 5, False, True),
        ("<Timeout [created]>", None, False),
    ]


def test_timeout_reads_the_loop_time_at_call(impl, vloop):
    """timeout(d) is timeout_at(loop.time() + d), computed at the call,
    not at entry."""

    async def main():
        t = impl.timeout(3)
        await asyncio.sleep(1)
        out = [t.when()]
        try:
            async with t:
                await asyncio.sleep(10)
        except TimeoutError:
            out.append(vloop.time())
        return out

    assert run(vloop, main) == [1003.0, 1003.0]


def test_the_class(impl, vloop):
    """Up to 3.13 Timeout is @typing.final, which marks (``__final__``)
    but does not prevent subclassing; 3.14 dropped the decorator (no
    ``__final__``).  Instances come from timeout() and timeout_at(), and
    Timeout(when) works directly."""

    def observe(mod):
        out = [getattr(mod.Timeout, "__final__", None),
               isinstance(mod.timeout_at(None), mod.Timeout)]
        try:
            class Sub(mod.Timeout):
                pass
        except TypeError as e:
            out.append(("TypeError", e.args))
        else:
            out.append(issubclass(Sub, mod.Timeout))

        async def main():
            res = []
            t0 = vloop.time()
            t = mod.Timeout(t0 + 2)
            try:
                async with t as got:
                    res.append((got is t, repr(t).split(" when=")[0]))
                    await asyncio.sleep(5)
            except TimeoutError:
                res.append((repr(t), vloop.time() - t0))
            return res

        out.append(run(vloop, main))
        return out

    got = observe(impl)
    assert got == observe(asyncio)
    assert got[:3] == [True if PY < (3, 14) else None, True, True]
    assert ("__final__" in vars(impl.Timeout)) == (PY < (3, 14))


def test_instances_take_attributes(impl):
    """Like the stdlib's (a Python class), a scope takes attributes of its
    own and weak references; the stdlib's private ones (``_state``,
    ``_when``, ...) are not provided (README difference 2)."""
    import weakref

    def observe(mod):
        t = mod.timeout_at(5)
        t.tag = "mine"
        ref = weakref.ref(t)
        return (t.tag, vars(t).get("tag"), ref() is t,
                "tag" in dir(t))

    assert observe(impl) == observe(asyncio) == ("mine", "mine", True, True)


def test_subclass_overrides_are_called(impl):
    """A subclass (possible on every version; 3.14 dropped @final): the
    scope calls ``self.reschedule(when)`` on entry and its timer calls
    ``self._on_timeout()``, overrides included, as the stdlib's
    ``__aenter__`` and ``reschedule()`` do; a deadline already passed goes
    through the override too (``call_soon(self._on_timeout)``)."""

    def scenario(sc):
        class Sub(sc.impl.Timeout):
            def __init__(self, when, tag):
                sc("sub:init", tag)
                self.tag = tag
                super().__init__(when)

            def reschedule(self, when):
                sc("sub:reschedule", self.tag, when, repr(self))
                r = super().reschedule(when)
                sc("sub:rescheduled", self.tag, r, repr(self))
                return r

            def _on_timeout(self):
                sc("sub:on_timeout", self.tag, sc.loop.time(), repr(self))
                r = super()._on_timeout()
                sc("sub:timed-out", self.tag, r, repr(self), self.expired())
                return r

        async def main():
            t0 = sc.loop.time()
            for tag, when_, later in [("future", t0 + 1, t0 + 2),
                                      ("past", t0 - 1, None),
                                      ("none", None, t0 + 5)]:
                t = Sub(when_, tag)
                sc.label(t, tag)
                try:
                    async with t as got:
                        sc("entered", tag, got is t, repr(t), t.when())
                        if later is not None:
                            t.reschedule(later)
                        await hang(sc, tag)
                except TimeoutError as e:
                    sc("timeout", tag, e, repr(t), sc.loop.time(),
                       me().cancelling())
            t = Sub(t0 + 100, "refused")
            try:
                t.reschedule(t0 + 1)
            except RuntimeError as e:
                sc("refused", e.args)

        sc.run(main)

    trace = tparity(impl, scenario)
    names = [e[1:3] for e in trace]
    for tag in ("future", "past", "none"):
        assert ("sub:reschedule", tag) in names
        assert ("timeout", tag) in names
    assert ("sub:on_timeout", "past") in names
    assert ("sub:on_timeout", "future") in names
    assert entry(trace, "refused") == (("Timeout has not been entered",),)


def test_constructor_signature(impl):
    def observe(mod):
        out = []
        for args, kw in [((), {}), ((1, 2), {}), ((), {"when": 3}),
                         ((), {"x": 1})]:
            try:
                t = mod.Timeout(*args, **kw)
                out.append(("ok", t.when()))
            except TypeError as e:
                out.append(("TypeError", e.args))
        return out

    got = observe(impl)
    assert got == observe(asyncio)
    assert got[2] == ("ok", 3)


def _drop_aenter(t):
    c = t.__aenter__()
    del c


def _drop_aexit(t):
    c = t.__aexit__(None, None, None)
    del c


def test_never_awaited_warnings(impl, loop):
    """__aenter__/__aexit__ are awaitables made on call; dropping one
    unawaited warns like an un-awaited coroutine and changes nothing."""

    def observe(mod):
        async def main():
            t = mod.timeout(1000)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                _drop_aenter(t)
                gc.collect()
                state1 = repr(t)
                _drop_aexit(t)
                gc.collect()
            out = [(w.category, creation_site(str(w.message)))
                   for w in caught]
            async with t:
                out.append(repr(t).split(" when=")[0])
            out += [state1, repr(t)]
            return out

        return run(loop, main)

    got = observe(impl)
    assert got == observe(asyncio)
    got[:2] = [(c, strip_origin(m)) for c, m in got[:2]]
    assert got == [
        (RuntimeWarning, "coroutine 'Timeout.__aenter__' was never awaited"),
        (RuntimeWarning, "coroutine 'Timeout.__aexit__' was never awaited"),
        "<Timeout [active]",
        "<Timeout [created]>",
        "<Timeout [finished]>",
    ]


def test_aenter_and_aexit_are_awaitables_not_coroutine_functions(impl, loop):
    """What matters to callers: the calls return awaitables that
    asyncio.iscoroutine() accepts and that need a task to run."""

    async def main(mod):
        t = mod.timeout(100)
        a = t.__aenter__()
        ok = [asyncio.iscoroutine(a), hasattr(a, "send"), hasattr(a, "close")]
        assert await a is t
        x = t.__aexit__(None, None, None)
        ok.append(asyncio.iscoroutine(x))
        ok.append(await x)
        return ok, repr(t)

    got = run(loop, main(impl))
    assert got == run(loop, main(asyncio))
    assert got == ([True, True, True, True, None], "<Timeout [finished]>")


# ---------------------------------------------------------------------------
# State errors
# ---------------------------------------------------------------------------

def test_entered_twice(impl, loop):
    async def main(mod):
        out = []
        t = mod.timeout(100)
        async with t:
            try:
                async with t:
                    out.append("nested entered")
            except RuntimeError as e:
                out.append(("nested", e.args, me().cancelling()))
            try:
                await t.__aenter__()
            except RuntimeError as e:
                out.append(("direct", e.args, repr(t).split(" ")[1]))
        try:
            async with t:
                out.append("re-entered")
        except RuntimeError as e:
            out.append(("after exit", e.args, repr(t)))
        return out

    got = run(loop, main(impl))
    assert got == run(loop, main(asyncio))
    msg = ("Timeout has already been entered",)
    assert got == [("nested", msg, 0), ("direct", msg, "[active]"),
                   ("after exit", msg, "<Timeout [finished]>")]


def test_entered_twice_after_expiry(impl, loop):
    async def main(mod):
        t = mod.timeout(0)
        try:
            async with t:
                await asyncio.sleep(1)
        except TimeoutError:
            pass
        try:
            async with t:
                return "re-entered"
        except RuntimeError as e:
            return e.args, repr(t), me().cancelling()

    got = run(loop, main(impl))
    assert got == run(loop, main(asyncio))
    assert got == (("Timeout has already been entered",),
                   "<Timeout [expired]>", 0)


def test_outside_a_task(impl, loop):
    """__aenter__ driven by hand from a plain loop callback: no current
    task."""

    def observe(mod):
        done = loop.create_future()
        out = []

        def cb():
            t = mod.timeout(10)
            c = t.__aenter__()
            try:
                c.send(None)
            except BaseException as e:
                out.append((type(e).__name__, e.args, repr(t)))
            try:
                c.send(None)
            except BaseException as e:
                out.append((type(e).__name__, e.args))
            # Still usable from a task afterwards.
            out.append(t)
            done.set_result(None)

        loop.call_soon(cb)

        async def main():
            await done
            t = out.pop()
            async with t:
                out.append(repr(t).split(" ")[1])
            out.append(repr(t))
            return out

        return run(loop, main)

    got = observe(impl)
    assert got == observe(asyncio)
    assert got == [
        ("RuntimeError", ("Timeout should be used inside a task",),
         "<Timeout [created]>"),
        ("RuntimeError", ("cannot reuse already awaited coroutine",)),
        "[active]",
        "<Timeout [finished]>",
    ]


def test_outside_a_task_with_no_running_loop(impl, event_loop_policy_guard):
    """timeout_at() needs no loop; entering by hand outside any loop
    fails in current_task()."""

    def observe(mod):
        t = mod.timeout_at(5)
        c = t.__aenter__()
        try:
            c.send(None)
        except BaseException as e:
            return type(e).__name__, e.args, repr(t)
        return "entered"

    got = observe(impl)
    assert got == observe(asyncio)
    # current_task() itself needs a running loop.
    assert got == ("RuntimeError", ("no running event loop",),
                   "<Timeout [created]>")


def test_aexit_without_aenter(impl, loop):
    """A bare AssertionError (the stdlib asserts the state), in any state
    but active and expiring; the object is unchanged."""

    async def main(mod):
        out = []

        async def aexit(t, *exc):
            try:
                r = await t.__aexit__(*(exc or (None, None, None)))
                out.append(("returned", r, repr(t)))
            except BaseException as e:
                out.append((type(e).__name__, e.args, repr(t),
                            me().cancelling()))

        t = mod.timeout(100)
        await aexit(t)
        e = Boom()
        await aexit(t, Boom, e, None)
        async with t:
            pass
        await aexit(t)
        t = mod.timeout(0)
        try:
            async with t:
                await asyncio.sleep(1)
        except TimeoutError:
            pass
        await aexit(t, asyncio.CancelledError,
                    asyncio.CancelledError(), None)
        return out

    got = run(loop, main(impl))
    assert got == run(loop, main(asyncio))
    assert got == [
        ("AssertionError", (), "<Timeout [created]>", 0),
        ("AssertionError", (), "<Timeout [created]>", 0),
        ("AssertionError", (), "<Timeout [finished]>", 0),
        ("AssertionError", (), "<Timeout [expired]>", 0),
    ]


def test_reschedule_in_every_wrong_state(impl, loop):
    async def main(mod):
        out = []

        def attempt(t, when):
            try:
                t.reschedule(when)
                out.append(("ok", repr(t)))
            except RuntimeError as e:
                w = t.when()
                out.append((e.args, repr(t),
                            w if w is None else "real-clock-deadline"))

        t = mod.timeout_at(None)
        attempt(t, 5)
        attempt(t, None)
        async with t:
            pass
        attempt(t, 5)
        attempt(t, None)
        t = mod.timeout(0)
        try:
            async with t:
                try:
                    await asyncio.sleep(1)
                except asyncio.CancelledError:
                    attempt(t, 5)
                    attempt(t, None)
                    raise
        except TimeoutError:
            pass
        attempt(t, 5)
        attempt(t, None)
        return out

    got = run(loop, main(impl))
    assert got == run(loop, main(asyncio))
    assert [g[0] for g in got] == [
        ("Timeout has not been entered",),
        ("Timeout has not been entered",),
        ("Cannot change state of finished Timeout",),
        ("Cannot change state of finished Timeout",),
        ("Cannot change state of expiring Timeout",),
        ("Cannot change state of expiring Timeout",),
        ("Cannot change state of expired Timeout",),
        ("Cannot change state of expired Timeout",),
    ]
    # The deadline is untouched by a refused reschedule.
    assert [g[2] for g in got[:4]] == [None] * 4


def test_reschedule_outside_a_running_loop(impl, event_loop_policy_guard):
    """reschedule() of a not-entered timeout fails on its state, loop or
    not."""

    def observe(mod):
        t = mod.timeout_at(3)
        try:
            t.reschedule(4)
        except RuntimeError as e:
            return e.args, t.when()

    got = observe(impl)
    assert got == observe(asyncio)
    assert got == (("Timeout has not been entered",), 3)


# ---------------------------------------------------------------------------
# Expiry: the exception, the iteration, the time
# ---------------------------------------------------------------------------

def test_timeout_error_raised_from_the_cancelled_error(impl):
    def scenario(sc):
        async def main():
            try:
                await scoped(sc, sc.impl.timeout(5), "t", hang, sc, "body")
            except TimeoutError as e:
                sc("main:caught", e, e.__suppress_context__,
                   e.__cause__ is e.__context__, sc.loop.time())

        sc.run(main)

    trace = tparity(impl, scenario)
    caught = entry(trace, "main:caught")
    te = caught[0]
    assert te[:2] == ("TimeoutError", ())
    assert cause_of(te) == ctx_of(te) == "body.cancel"
    assert caught[1:] == (True, True, 1005.0)
    body = entry(trace, "body:cancelled")
    assert body[0][:2] == ("CancelledError", ())
    # The body sees cancelling() == 1; after the scope it is 0 again.
    assert body[1] == 1
    assert entry(trace, "t:raised")[1:] == ("<Timeout [expired]>", True, 0)
    assert when(trace, "t:raised") == when(trace, "body:cancelled")


def test_timeout_error_type_and_traceback(impl, vloop):
    """The TimeoutError is the builtin one (asyncio.TimeoutError is it)
    and a fresh instance per expiry."""

    async def main(mod):
        errs = []
        for _ in range(2):
            try:
                async with mod.timeout(0):
                    await asyncio.sleep(1)
            except TimeoutError as e:
                errs.append(e)
        return (type(errs[0]) is TimeoutError, errs[0] is not errs[1],
                errs[0].__cause__ is not errs[1].__cause__,
                errs[0].__traceback__ is not None)

    got = run(vloop, main(impl))
    assert got == run(vloop, main(asyncio)) == (True, True, True, True)


@pytest.mark.parametrize("offset", ["before", "within-resolution", "at",
                                    "after", "two-resolutions-before"])
def test_deadline_boundary_iteration(impl, offset):
    """The clock is moved by hand to just before, within the clock
    resolution of, exactly at or after the deadline: the timer runs in the
    first iteration where ``deadline < time() + resolution`` (the stdlib
    runs every timer due by then), the body is cancelled in the next."""

    def scenario(sc):
        manual(sc)
        res = sc.loop._clock_resolution
        sc("resolution", res)
        dt = {
            "before": 10.0 - 0.5,
            "two-resolutions-before": 10.0 - 2 * res,
            "within-resolution": 10.0 - res / 2,
            "at": 10.0,
            "after": 10.5,
        }[offset]

        async def main():
            try:
                await scoped(sc, sc.impl.timeout(10), "t", hang, sc, "body")
            except TimeoutError as e:
                sc("main:timeout", e, sc.loop.time())

        task = sc.loop.create_task(main())
        step(sc)                   # enter, suspend
        step(sc, dt)               # move the clock
        sc("moved", sc.loop.time() - 1000.0)
        step(sc, 0, 3)
        if not task.done():
            sc("not-yet")
            step(sc, 10.0)
            step(sc, 0, 3)
        sc("done", task.done())

    trace = tparity(impl, scenario)
    moved = when(trace, "moved")
    if offset in ("within-resolution", "at", "after"):
        # The timer ran in the iteration the clock was moved before.
        assert when(trace, "body:cancelled") == moved + 1
        assert when(trace, "main:timeout") == moved + 1
        assert "not-yet" not in [e[1] for e in trace]
    else:
        assert "not-yet" in [e[1] for e in trace]
        assert when(trace, "body:cancelled") == when(trace, "not-yet") + 2
    assert entry(trace, "done") == (True,)


@pytest.mark.parametrize("offset", ["at", "one-ulp-before", "one-ulp-after"])
def test_deadline_boundary_on_a_coarse_clock_reading(impl, offset):
    """A clock reading so large that one ulp (2**-12 s at 2**40) exceeds
    the clock resolution: up to 3.14 ``time() + resolution`` rounds back
    to ``time()``, so a deadline exactly at the clock's reading is not
    due yet; 3.15 adds at least one ulp (``math.ulp(now)``) and runs it."""
    start = 2.0 ** 40
    ulp = 2.0 ** -12

    def scenario(sc):
        manual(sc)
        dt = {"at": 10.0, "one-ulp-before": 10.0 - ulp,
              "one-ulp-after": 10.0 + ulp}[offset]

        async def main():
            try:
                await scoped(sc, sc.impl.timeout(10), "t", hang, sc, "body")
            except TimeoutError as e:
                sc("main:timeout", e, sc.loop.time() - start)

        task = sc.loop.create_task(main())
        step(sc)
        step(sc, dt)
        moves = 0
        while True:
            step(sc, 0, 3)
            if task.done() or moves == 3:
                break
            step(sc, ulp)  # one ulp later
            moves += 1
        sc("done", task.done(), moves, sc.loop.time() - start - 10.0)

    trace = tparity(impl, scenario, start=start)
    # The clock reading at which the deadline (10.0) is due.
    due = 0.0 if PY >= (3, 15) else ulp
    moves = {"one-ulp-before": 1, "at": 0, "one-ulp-after": 0}[offset]
    moves += 1 if offset != "one-ulp-after" and due else 0
    assert entry(trace, "done") == (True, moves, max(due, {
        "one-ulp-before": -ulp, "at": 0.0, "one-ulp-after": ulp}[offset]))


def shares_timers(impl):
    import fastwait

    return impl is fastwait and "timeout" in fastwait.NATIVE_NAMES


def test_deadline_expires_at_the_shared_timers_place(impl):
    """README difference 5: the deadlines due in one iteration expire when
    the one shared loop timer runs, at its place among that iteration's
    timers.  Here it is still armed for a removed deadline (1 s); the
    clock then moves past three timers at once: the removed deadline,
    a timer that completes the future the body awaits (1 s + eps), the
    scope's deadline (1 s + 2 eps).  asyncio runs them in that order: the
    result is set, then the cancellation reaches the body through the
    task.  fastwait expires the deadline first: the future is cancelled
    and the timer's set_result() fails.  Either way the scope raises
    TimeoutError in the same iteration, and cancelling() is 0 after."""

    def observe(mod):
        from conftest import new_loop

        loop = new_loop(clock=VirtualClock(1000.0, autojump=False))
        eps = loop._clock_resolution / 4
        log = []

        async def main():
            t0 = loop.time()
            async with mod.timeout(1):
                pass  # fastwait: the loop timer stays armed for +1
            fut = loop.create_future()
            try:
                async with mod.timeout(1 + 2 * eps):
                    loop.call_at(t0 + 1 + eps, fut.set_result, "set")
                    await fut
            except TimeoutError:
                log.append(("timeout", loop.time() - t0,
                            loop.fw_iteration - i0,
                            asyncio.current_task().cancelling()))
            log.append(("future", fut.cancelled() or fut.result()))

        task = loop.create_task(main())
        run_briefly(loop, 2)
        i0 = loop.fw_iteration
        loop.clock.advance(1.0)
        run_briefly(loop, 4)
        assert task.done()
        task.result()
        reports = [type(r.get("exception")).__name__
                   for r in loop.fw_exceptions.take()]
        loop.close()
        return log, reports

    want = observe(asyncio)
    got = observe(impl)
    assert want == ([("timeout", 1.0, 2, 0), ("future", "set")], [])
    if shares_timers(impl):
        assert got == ([("timeout", 1.0, 2, 0), ("future", True)],
                       ["InvalidStateError"])
    else:
        assert got == want


def test_stale_deadline_splits_timers_on_a_jumping_clock(impl):
    """README difference 5: on a virtual clock that jumps to the next timer
    when the loop is idle, the wake-up at a removed deadline (1 s) runs
    the timers due within one clock resolution after it.  Two timers of
    the program at 1 s + res/2 and 1 s + 1.2 res: asyncio wakes at the
    first and runs both in that iteration; fastwait wakes at the removed
    deadline, runs the first, and the second one iteration later."""

    def observe(mod):
        from conftest import new_loop

        loop = new_loop(clock=VirtualClock(1000.0))
        res = loop._clock_resolution
        seen = []

        async def main():
            t0 = loop.time()
            async with mod.timeout(1):
                pass
            done = loop.create_future()
            for name, dt in (("a", 1 + res / 2), ("b", 1 + 1.2 * res)):
                loop.call_at(t0 + dt, lambda n=name: seen.append(
                    (n, loop.fw_iteration)))
            loop.call_at(t0 + 2, done.set_result, None)
            await done

        run(loop, main)
        loop.close()
        return seen[1][1] - seen[0][1]

    assert observe(asyncio) == 0
    assert observe(impl) == (1 if shares_timers(impl) else 0)


def test_two_deadlines_within_one_resolution_fire_together(impl):
    """Nested scopes whose deadlines differ by less than the clock
    resolution expire in the same iteration: the inner scope sees two
    cancel requests and lets the CancelledError through, the outer one
    converts it."""

    def scenario(sc):
        manual(sc)
        res = sc.loop._clock_resolution

        async def inner():
            return await scoped(sc, sc.impl.timeout(5 + res / 4), "inner",
                                hang, sc, "body")

        async def main():
            try:
                await scoped(sc, sc.impl.timeout(5), "outer", inner)
            except TimeoutError as e:
                sc("main:timeout", e, me().cancelling())

        task = sc.loop.create_task(main())
        step(sc)
        step(sc, 5.0)
        step(sc, 0, 2)
        sc("done", task.done())

    trace = tparity(impl, scenario)
    assert entry(trace, "body:cancelled")[1] == 2
    inner = entry(trace, "inner:raised")
    assert inner[0][0] == "CancelledError"
    assert inner[1:] == ("<Timeout [expired]>", True, 1)
    assert entry(trace, "outer:raised")[1:] == ("<Timeout [expired]>",
                                                True, 0)
    assert when(trace, "main:timeout") == when(trace, "body:cancelled")


def test_coarse_clock_resolution(impl):
    """A loop whose clock is coarse (``_clock_resolution`` 1/64 s, as on
    Windows) runs a timer up to one resolution early: so must the
    deadline."""

    def scenario(sc):
        manual(sc)
        sc.loop._clock_resolution = 0.015625

        async def main():
            try:
                await scoped(sc, sc.impl.timeout(1), "t", hang, sc, "body")
            except TimeoutError as e:
                sc("main:timeout", e, sc.loop.time())

        task = sc.loop.create_task(main())
        step(sc)
        step(sc, 0.98)
        sc("at-0.98")
        step(sc, 0.01)
        sc("at-0.99")
        step(sc, 0, 2)
        sc("done", task.done())

    trace = tparity(impl, scenario)
    assert when(trace, "body:cancelled") == when(trace, "at-0.99") + 1
    assert entry(trace, "main:timeout")[1] == pytest.approx(1000.99)


def test_replaced_loop_time(impl, monkeypatch):
    """A test that replaces ``loop.time`` on the loop object (no virtual
    clock) still sees the deadline fire in the stdlib's iteration.  Always
    the default loop: uvloop's timers ignore a replaced time()."""

    def scenario(sc):
        now = [500.0]
        monkeypatch.setattr(sc.loop, "time", lambda: now[0])

        async def main():
            t = sc.impl.timeout(2)
            sc("deadline", t.when())
            try:
                await scoped(sc, t, "t", hang, sc, "body")
            except TimeoutError as e:
                sc("main:timeout", e, sc.loop.time())

        task = sc.loop.create_task(main())
        sc.run_briefly()
        now[0] = 501.9
        sc.run_briefly()
        sc("moved-1.9")
        now[0] = 502.0
        sc.run_briefly()
        sc("moved-2.0")
        sc.run_briefly(2)
        sc("done", task.done())
        monkeypatch.undo()

    def trace(mod):
        def wrapped(sc):
            sc.impl = mod
            scenario(sc)

        # The default loop (not the active axis): its time() is what the
        # test replaces.
        from conftest import new_loop, Scenario, close_loop
        loop = new_loop(kind="asyncio")
        sc = Scenario(mod, loop)
        try:
            wrapped(sc)
            sc.tr.record_exceptions()
            return sc.tr.events
        finally:
            close_loop(loop, collect=False)

    got = trace(impl)
    assert got == trace(asyncio)
    assert when(got, "body:cancelled") == when(got, "moved-2.0") + 1
    assert entry(got, "main:timeout")[1] == 502.0
    assert entry(got, "deadline") == (502.0,)


@pytest.mark.parametrize("delay", [0, -1, -1e9, "past-at"])
def test_zero_negative_and_past_deadlines(impl, delay):
    """A deadline not after loop.time() at entry is scheduled with
    call_soon: the timer runs in the next iteration (the body, suspended
    since entry, is cancelled in the one after)."""

    def scenario(sc):
        async def main():
            cm = (sc.impl.timeout_at(sc.loop.time()) if delay == "past-at"
                  else sc.impl.timeout(delay))
            try:
                await scoped(sc, cm, "t", hang, sc, "body")
            except TimeoutError as e:
                sc("main:timeout", e, sc.loop.time())

        sc.run(main)

    trace = tparity(impl, scenario)
    assert when(trace, "body:cancelled") == when(trace, "t:entered") + 2
    assert entry(trace, "main:timeout")[1] == 1000.0


@pytest.mark.parametrize("delay", [0, -5])
def test_past_deadline_on_the_active_loop(impl, delay):
    """The same on the active loop (uvloop too): call_soon, no timer."""

    def scenario(sc):
        async def main():
            try:
                await scoped(sc, sc.impl.timeout(delay), "t", hang, sc,
                             "body")
            except TimeoutError as e:
                sc("main:timeout", e)

        sc.run(main)

    trace = tparity(impl, scenario, virtual=False)
    assert when(trace, "body:cancelled") == when(trace, "t:entered") + 2
    assert entry(trace, "t:raised")[1:] == ("<Timeout [expired]>", True, 0)


def test_past_deadline_cancels_a_sleep0_body_in_the_next_step(impl):
    """timeout(0) around ``await sleep(0)``: in the next iteration the
    expiry callback runs before the task's step (it was scheduled first),
    so the step itself raises CancelledError."""

    def scenario(sc):
        async def body():
            sc("body:start")
            try:
                await asyncio.sleep(0)
                sc("body:after-sleep0")
                await asyncio.sleep(0)
                sc("body:after-second-sleep0")
            except asyncio.CancelledError as e:
                sc.label(e, "body.cancel")
                sc("body:cancelled", e)
                raise

        async def main():
            try:
                await scoped(sc, sc.impl.timeout(0), "t", body)
            except TimeoutError as e:
                sc("main:timeout", e)

        sc.run(main)

    trace = tparity(impl, scenario, virtual=False)
    assert when(trace, "body:cancelled") == when(trace, "body:start") + 1
    assert "body:after-sleep0" not in [e[1] for e in trace]


def test_scope_without_suspension_never_expires(impl, loop):
    async def main(mod):
        out = []
        for d in (0, -1):
            t = mod.timeout(d)
            async with t:
                out.append(t.expired())
            out.append((repr(t), me().cancelling()))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return out

    got = run(loop, main(impl))
    assert got == run(loop, main(asyncio))
    assert got == [False, ("<Timeout [finished]>", 0)] * 2


def test_exited_scope_does_not_fire_later(impl):
    """A scope left before its deadline leaves nothing behind: the task
    is not cancelled at the old deadline."""

    def scenario(sc):
        async def main():
            t = sc.impl.timeout(2)
            async with t:
                await asyncio.sleep(1)
            sc("exited", repr(t), sc.loop.time())
            try:
                await asyncio.sleep(5)
                sc("slept", sc.loop.time(), me().cancelling())
            except asyncio.CancelledError as e:
                sc("cancelled!", e)

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    assert entry(trace, "slept") == (1007.0, 0)


def test_deadline_iteration_with_a_stepping_clock(impl):
    """Every iteration moves the clock by 0.25 s: deadlines on and
    between the steps, reschedules earlier and later."""

    def scenario(sc):
        async def main():
            for d in (1.0, 1.1, 0.25, 0.3):
                try:
                    await scoped(sc, sc.impl.timeout(d), f"t{d}", hang, sc,
                                 f"body{d}")
                except TimeoutError as e:
                    sc(f"timeout{d}", e, sc.loop.time())

        sc.run(main)

    trace = tparity(impl, scenario, step=0.25)
    times = [e[3] for e in trace if e[1].startswith("timeout")]
    assert times == [1001.25, 1002.75, 1003.25, 1004.0]


# ---------------------------------------------------------------------------
# reschedule()
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("new", ["earlier", "later", "none", "past", "now",
                                 "same", "inf"])
def test_reschedule(impl, new):
    def scenario(sc):
        async def body(t):
            await asyncio.sleep(1)
            sc("body:slept", sc.loop.time())
            target = {
                "earlier": 1003.0, "later": 1008.0, "none": None,
                "past": 999.0, "now": sc.loop.time(), "same": 1005.0,
                "inf": INF,
            }[new]
            t.reschedule(target)
            sc("rescheduled", repr(t), t.when(), t.expired())
            try:
                await asyncio.sleep(20)
                sc("body:slept-20", sc.loop.time())
            except asyncio.CancelledError as e:
                sc.label(e, "body.cancel")
                sc("body:cancelled", e, sc.loop.time(), me().cancelling())
                raise

        async def main():
            t = sc.impl.timeout(5)
            try:
                await scoped(sc, t, "t", body, t)
            except TimeoutError as e:
                sc("main:timeout", e, sc.loop.time(), me().cancelling())

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    if new in ("none", "inf"):
        assert entry(trace, "body:slept-20") == (1022.0,)
        assert "main:timeout" not in [e[1] for e in trace]
    else:
        # (The body resumes one 0.5 s iteration after its timer ran.)
        expected = {"earlier": 1003.5, "later": 1008.5, "past": 1002.5,
                    "now": 1002.5, "same": 1005.5}[new]
        assert entry(trace, "main:timeout")[1:] == (expected, 0)
    if new in ("past", "now"):
        # call_soon: the timer runs in the next iteration, the body is
        # cancelled in the one after.
        assert when(trace, "body:cancelled") == when(trace, "rescheduled") + 2


def test_reschedule_twice_in_one_step_and_back(impl):
    """Moving the deadline back and forth leaves exactly one live
    deadline: the last one."""

    def scenario(sc):
        async def body(t):
            for w in (1001.0, None, 1002.0, 999.0, 1003.0):
                t.reschedule(w)
            sc("rescheduled", repr(t))
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError as e:
                sc("body:cancelled", e, sc.loop.time())
                raise

        async def main():
            t = sc.impl.timeout(5)
            try:
                await scoped(sc, t, "t", body, t)
            except TimeoutError as e:
                sc("main:timeout", e, sc.loop.time())

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    assert entry(trace, "main:timeout")[1] == 1003.5


def test_reschedule_after_the_timer_fired_but_before_the_body_ran(impl):
    """Expiring: the timer ran (the task is being cancelled) but the body
    has not resumed yet; a reschedule from another task is refused."""

    def scenario(sc):
        manual(sc)
        holder = {}

        async def main():
            t = holder["t"] = sc.impl.timeout(1)
            try:
                await scoped(sc, t, "t", hang, sc, "body")
            except TimeoutError as e:
                sc("main:timeout", e)

        def poke():
            t = holder["t"]
            sc("poke", repr(t), t.expired(), task.cancelling())
            try:
                t.reschedule(None)
            except RuntimeError as e:
                sc("poke:refused", e)

        task = sc.loop.create_task(main())
        step(sc)
        sc.loop.call_at(1001.0, poke)  # after the scope's timer (FIFO)
        step(sc, 1.0)
        step(sc, 0, 2)

    trace = tparity(impl, scenario)
    assert entry(trace, "poke") == ("<Timeout [expiring]>", True, 1)
    assert exc_info(entry(trace, "poke:refused")[0]) == (
        "RuntimeError", ("Cannot change state of expiring Timeout",))
    assert when(trace, "main:timeout") == when(trace, "poke") + 1


def test_reschedule_from_another_task(impl):
    """reschedule() is not tied to the owning task: another task may move
    the deadline (the timer is the owner's loop's)."""

    def scenario(sc):
        holder = {}

        async def main():
            t = holder["t"] = sc.impl.timeout(100)
            try:
                await scoped(sc, t, "t", hang, sc, "body")
            except TimeoutError as e:
                sc("main:timeout", e, sc.loop.time())

        async def other():
            await asyncio.sleep(1)
            holder["t"].reschedule(sc.loop.time() + 2)
            sc("other:rescheduled", repr(holder["t"]))

        async def both():
            a = sc.loop.create_task(main())
            b = sc.loop.create_task(other())
            await a
            await b

        sc.run(both)

    trace = tparity(impl, scenario, step=0.5)
    # other resumes at 1002.0 (eager: started at once, 1001.5) and moves
    # the deadline two seconds on.
    assert entry(trace, "main:timeout")[1] == (1004.0 if EAGER else 1004.5)


# ---------------------------------------------------------------------------
# cancelling() bookkeeping
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("inner_d,outer_d", [(1, 3), (3, 1), (2, 2),
                                             (None, 1), (1, None)])
def test_nested_timeouts(impl, inner_d, outer_d):
    def scenario(sc):
        async def inner():
            try:
                return await scoped(sc, sc.impl.timeout(inner_d), "inner",
                                    hang, sc, "body")
            except TimeoutError as e:
                sc("inner-caught", e, me().cancelling())
                await asyncio.sleep(5)
                sc("after-inner", sc.loop.time(), me().cancelling())
                return "inner-timed-out"

        async def main():
            try:
                r = await scoped(sc, sc.impl.timeout(outer_d), "outer", inner)
                sc("main:result", r)
            except TimeoutError as e:
                sc("main:timeout", e, sc.loop.time(), me().cancelling())

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    names = [e[1] for e in trace]
    first = min(d for d in (inner_d, outer_d) if d is not None)
    assert entry(trace, "body:cancelled")[2] == 1000.5 + first
    if inner_d is not None and (outer_d is None or inner_d < outer_d):
        assert "inner-caught" in names
        assert entry(trace, "inner:raised")[3] == 0
    else:
        assert "inner-caught" not in names
        assert entry(trace, "main:timeout")[1:] == (1000.5 + first, 0)


def test_outer_fires_while_inner_expiring(impl):
    """The inner scope expired, its body suppresses the cancellation and
    keeps waiting; the outer deadline then fires: the inner scope's exit
    sees one more cancel request than it made, the outer converts."""

    def scenario(sc):
        async def body():
            await hang(sc, "body", catch=True)
            await hang(sc, "body2")

        async def inner():
            return await scoped(sc, sc.impl.timeout(1), "inner", body)

        async def main():
            try:
                await scoped(sc, sc.impl.timeout(3), "outer", inner)
            except TimeoutError as e:
                sc("main:timeout", e, me().cancelling())

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    assert entry(trace, "body:cancelled")[1:3] == (1, 1001.5)
    assert entry(trace, "body2:cancelled")[1:3] == (2, 1003.5)
    assert entry(trace, "inner:raised")[1:] == ("<Timeout [expired]>",
                                                True, 1)
    assert entry(trace, "outer:raised")[1:] == ("<Timeout [expired]>",
                                                True, 0)


@pytest.mark.parametrize("when_cancel", ["before", "same-before", "same-after",
                                         "after-timer", "after-exit"])
def test_outer_cancel_racing_the_deadline(impl, when_cancel):
    """task.cancel() from outside against the scope's deadline (t=1002):
    a second cancel request leaves the CancelledError alone."""

    def scenario(sc):
        manual(sc)

        async def main():
            try:
                await scoped(sc, sc.impl.timeout(2), "t", hang, sc, "body")
            except TimeoutError as e:
                sc("main:timeout", e, me().cancelling())
            except asyncio.CancelledError as e:
                sc("main:cancelled", e, me().cancelling())

        def cancel():
            sc("cancel", task.cancel("outer"), task.cancelling())

        task = sc.loop.create_task(main())
        step(sc)
        if when_cancel == "before":
            sc.loop.call_at(1001.0, cancel)
        # In the deadline's iteration, a hair before or after it (timers
        # due at exactly the same time run in heap order, which a native
        # deadline heap behind one loop timer changes: README, difference
        # 5; the last cancel request's message is the one the body sees).
        elif when_cancel == "same-before":
            sc.loop.call_at(1002.0 - sc.loop._clock_resolution / 4, cancel)
        elif when_cancel == "same-after":
            sc.loop.call_at(1002.0 + sc.loop._clock_resolution / 4, cancel)
        step(sc, 1.0)
        step(sc, 1.0)
        if when_cancel == "after-timer":
            cancel()
        step(sc)
        if when_cancel == "after-exit":
            cancel()
        step(sc, 0, 2)
        sc("done", task.done())

    trace = tparity(impl, scenario)
    names = [e[1] for e in trace]
    if when_cancel == "after-exit":
        assert "main:timeout" in names
        assert entry(trace, "cancel") == (False, 0)
    else:
        got = entry(trace, "main:cancelled")
        # The first request to cancel the awaited future gives the
        # message: the outer one when it came first.
        first = when_cancel in ("before", "same-before")
        assert got[0][1] == (("outer",) if first else ())
        assert got[1] == 1
        assert "main:timeout" not in names


def test_body_suppresses_the_cancellation(impl):
    def scenario(sc):
        async def body():
            r = await hang(sc, "body", catch=True)
            sc("body:after", me().cancelling(), sc.loop.time())
            await asyncio.sleep(1)
            sc("body:slept", me().cancelling(), sc.loop.time())
            return r

        async def main():
            t = sc.impl.timeout(1)
            r = await scoped(sc, t, "t", body)
            sc("main:result", r, t.expired(), me().cancelling())
            await asyncio.sleep(1)
            sc("main:slept", me().cancelling())

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    assert entry(trace, "body:after")[0] == 1
    assert entry(trace, "t:exited")[1:] == ("<Timeout [expired]>", True, 0)
    assert entry(trace, "main:result") == ("hang-result", True, 0)


def test_body_uncancels_itself(impl):
    """A body that suppresses the cancellation *and* calls uncancel():
    the scope's own uncancel() then drops the count below its entry
    value... and the stdlib still converts only a CancelledError."""

    def scenario(sc):
        async def body():
            await hang(sc, "body", catch=True)
            sc("uncancel", me().uncancel())
            await hang(sc, "body2")

        async def main():
            try:
                await scoped(sc, sc.impl.timeout(1), "t", body)
            except BaseException as e:
                sc("main:raised", e, me().cancelling())

        task = sc.loop.create_task(main())

        def cancel():
            sc("cancel", task.cancel(), task.cancelling())

        sc.loop.call_at(1003.0, cancel)
        sc.run(task)

    trace = tparity(impl, scenario, step=0.5)
    assert entry(trace, "uncancel") == (0,)


def test_cancelling_before_entry_is_the_baseline(impl):
    """A scope entered while the task already has a cancel request
    pending records that count.  The pending request cancels the body's
    first wait at once; the expiry (call_soon) then finds that future
    already cancelled and only sets the task's must-cancel flag, the body
    sees a single CancelledError and the scope's uncancel() returns to
    its baseline: the stdlib converts it to TimeoutError and leaves
    cancelling() at 1."""

    def scenario(sc):
        async def main():
            task = me()
            task.cancel()
            sc("cancelled-self", task.cancelling())
            try:
                await scoped(sc, sc.impl.timeout(0), "t", hang, sc, "body")
            except BaseException as e:
                sc("main:raised", e, task.cancelling())
            try:
                task.uncancel()
                await scoped(sc, sc.impl.timeout(1), "t2", hang, sc, "body2")
            except BaseException as e:
                sc("main:raised2", e, task.cancelling())

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    assert exc_info(entry(trace, "main:raised")[0])[0] == "TimeoutError"
    assert entry(trace, "main:raised")[1] == 1
    assert entry(trace, "body:cancelled")[1] == 2
    assert entry(trace, "main:raised2")[0][0] == "TimeoutError"
    assert entry(trace, "main:raised2")[1] == 0


@pytest.mark.parametrize("catch", [False, True])
def test_taskgroup_inside_a_timeout(impl, catch):
    """(One child: a group cancels its children in set order.)"""

    def scenario(sc):
        async def child(name):
            await hang(sc, name, catch=catch)
            return name

        async def body():
            async with sc.impl.TaskGroup() as tg:
                a = tg.create_task(child("a"))
                sc.label(a, "a")
                sc("tg:started")
                await hang(sc, "body")

        async def main():
            try:
                await scoped(sc, sc.impl.timeout(2), "t", body)
            except TimeoutError as e:
                sc("main:timeout", e, me().cancelling(), sc.loop.time())

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    assert entry(trace, "main:timeout")[1:] == (0, 1004.0)
    assert exc_info(entry(trace, "t:raised")[0])[0] == "TimeoutError"


def test_taskgroup_child_fails_inside_a_timeout(impl):
    """A child fails before the deadline: the group cancels the body; the
    scope did not expire and lets the ExceptionGroup through."""

    def scenario(sc):
        async def failing():
            await asyncio.sleep(1)
            raise Boom("child")

        async def body():
            async with sc.impl.TaskGroup() as tg:
                tg.create_task(failing())
                await hang(sc, "body")

        async def main():
            try:
                await scoped(sc, sc.impl.timeout(5), "t", body)
            except BaseException as e:
                sc("main:raised", e, type(e).__name__, me().cancelling())

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    got = entry(trace, "main:raised")
    assert got[1:] == ("ExceptionGroup", 0)


def test_timeout_inside_a_taskgroup(impl):
    """A scope inside the parent's body when a child fails: the group's
    cancellation goes through the (not expired) scope untouched.  And a
    scope inside a child converts its own expiry only."""

    def scenario(sc):
        async def failing():
            await asyncio.sleep(2)
            raise Boom("child")

        async def timed_child():
            try:
                await scoped(sc, sc.impl.timeout(1), "ct", hang, sc, "cbody")
            except TimeoutError as e:
                sc("child:timeout", e, me().cancelling())
            await hang(sc, "child-after")

        async def main():
            try:
                async with sc.impl.TaskGroup() as tg:
                    tg.create_task(failing())
                    tg.create_task(timed_child())
                    await scoped(sc, sc.impl.timeout(10), "pt", hang, sc,
                                 "pbody")
            except BaseException as e:
                sc("main:raised", type(e).__name__, me().cancelling(),
                   sc.loop.time())

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    assert entry(trace, "child:timeout")[1] == 0
    assert entry(trace, "pt:raised")[1:] == ("<Timeout [finished]>", False, 1)
    assert entry(trace, "main:raised")[0] == "ExceptionGroup"


def test_timeout_expiring_in_a_taskgroup_body(impl):
    """The parent's scope expires while the group's children run: the
    scope converts, and the group sees a TimeoutError from its body."""

    def scenario(sc):
        async def main():
            try:
                async with sc.impl.TaskGroup() as tg:
                    tg.create_task(hang(sc, "child"))
                    await scoped(sc, sc.impl.timeout(1), "pt", hang, sc,
                                 "pbody")
            except BaseException as e:
                sc("main:raised", e, me().cancelling())

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    assert exc_info(entry(trace, "pt:raised")[0])[0] == "TimeoutError"
    assert entry(trace, "main:raised")[0][0] == "ExceptionGroup"


# ---------------------------------------------------------------------------
# What the body raises after expiry
# ---------------------------------------------------------------------------

def test_body_raises_another_exception_after_expiry(impl):
    """3.13 splices a TimeoutError (cause and context: the CancelledError)
    into the __context__ chain just above the CancelledError; 3.11/3.12
    leave the chain alone."""

    def scenario(sc):
        async def body():
            try:
                await hang(sc, "body")
            finally:
                raise KeyError("k")

        async def main():
            try:
                await scoped(sc, sc.impl.timeout(1), "t", body)
            except KeyError as e:
                ctx = e.__context__
                sc("main:keyerror", e, ctx,
                   ctx is not None and ctx.__context__,
                   ctx is not None and ctx.__suppress_context__,
                   me().cancelling())

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    got = entry(trace, "main:keyerror")
    if PY >= (3, 13):
        assert got[1][0] == "TimeoutError"
        assert ctx_of(got[1]) == cause_of(got[1]) == "body.cancel"
        # (Setting __cause__ sets __suppress_context__.)
        assert got[3] is True
    else:
        assert got[1][2] == "body.cancel"
    assert got[4] == 0


def test_splice_deeper_in_the_chain(impl):
    def scenario(sc):
        async def body():
            try:
                await hang(sc, "body")
            except asyncio.CancelledError:
                try:
                    raise ValueError("v")
                except ValueError:
                    raise KeyError("k")

        async def main():
            try:
                await scoped(sc, sc.impl.timeout(1), "t", body)
            except KeyError as e:
                chain = []
                x = e
                while x is not None:
                    chain.append(x)
                    x = x.__context__
                sc("chain", chain)

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    chain = entry(trace, "chain")[0]
    kinds = [c[0] for c in chain]
    if PY >= (3, 13):
        assert kinds == ["KeyError", "ValueError", "TimeoutError",
                         "CancelledError"]
    else:
        assert kinds == ["KeyError", "ValueError", "CancelledError"]


def test_splice_into_exception_group_members(impl):
    def scenario(sc):
        async def body():
            try:
                await hang(sc, "body")
            except asyncio.CancelledError:
                try:
                    raise KeyError("k")
                except KeyError as k:
                    ke = k
                plain = ValueError("no-context")
                raise ExceptionGroup("eg", [ke, plain])

        async def main():
            try:
                await scoped(sc, sc.impl.timeout(1), "t", body)
            except ExceptionGroup as eg:
                sc("eg", eg, eg.__context__, list(eg.exceptions),
                   [m.__context__ for m in eg.exceptions])

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    eg, eg_ctx, members, member_ctx = entry(trace, "eg")
    if PY >= (3, 13):
        assert eg_ctx[0] == "TimeoutError"
        assert member_ctx[0][0] == "TimeoutError"
        # Two distinct TimeoutErrors, both over the same CancelledError.
        assert member_ctx[0][2] != eg_ctx[2]
        assert cause_of(member_ctx[0]) == cause_of(eg_ctx) == "body.cancel"
    else:
        assert eg_ctx[2] == "body.cancel"
        assert member_ctx[0][2] == "body.cancel"
    assert member_ctx[1] is None


def test_taskgroup_errors_after_expiry_get_the_splice(impl):
    """A TaskGroup in the body whose child fails while being cancelled by
    the expiry: the ExceptionGroup leaves the scope (3.13: with
    TimeoutErrors spliced where a CancelledError is in a chain)."""

    def scenario(sc):
        async def child():
            try:
                await hang(sc, "child")
            finally:
                raise Boom("in-cancel")

        async def body():
            async with sc.impl.TaskGroup() as tg:
                tg.create_task(child())
                await hang(sc, "body")

        async def main():
            try:
                await scoped(sc, sc.impl.timeout(1), "t", body)
            except BaseException as e:
                members = list(getattr(e, "exceptions", ()))
                sc("main:raised", e, members,
                   [m.__context__ for m in members], me().cancelling())

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    raised = entry(trace, "main:raised")
    assert raised[0][0] == "ExceptionGroup"
    assert raised[3] == 0


def test_body_raises_a_cancelled_error_subclass_after_expiry(impl):
    """3.13 converts any CancelledError subclass; 3.11/3.12 compare the
    type with ``is`` and let a subclass through."""

    def scenario(sc):
        async def body():
            try:
                await hang(sc, "body")
            except asyncio.CancelledError:
                raise MyCancelled("sub")

        async def main():
            try:
                await scoped(sc, sc.impl.timeout(1), "t", body)
            except BaseException as e:
                sc("main:raised", e, e.__cause__, me().cancelling())

        task = sc.loop.create_task(main())
        try:
            sc.run(task)
        except BaseException as e:
            sc("run:raised", e)

    trace = tparity(impl, scenario, step=0.5)
    got = entry(trace, "main:raised")
    if PY >= (3, 13):
        assert got[0][0] == "TimeoutError"
        assert got[1][:2] == ("MyCancelled", ("sub",))
    else:
        assert got[0][:2] == ("MyCancelled", ("sub",))
    assert got[2] == 0


def test_body_raises_its_own_cancelled_error_after_expiry(impl):
    """Any CancelledError leaving an expired scope is converted, even one
    the body made itself (with a message)."""

    def scenario(sc):
        async def body():
            try:
                await hang(sc, "body")
            except asyncio.CancelledError:
                e = asyncio.CancelledError("mine")
                sc.label(e, "mine")
                raise e

        async def main():
            try:
                await scoped(sc, sc.impl.timeout(1), "t", body)
            except TimeoutError as e:
                sc("main:timeout", e, me().cancelling())

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    assert cause_of(entry(trace, "main:timeout")[0]) == "mine"


def test_body_returns_normally_after_expiry_without_suspending(impl):
    """The timer ran (expiring) but the body finishes in the same step
    that would have received the CancelledError?  It cannot: the
    cancellation lands at its next suspension.  A body that returns
    before suspending again leaves the scope expired with the cancel
    request still pending: cancelling() counts it until uncancel."""

    def scenario(sc):
        manual(sc)

        async def main():
            t = sc.impl.timeout(1)
            async with t:
                sc("entered")
                # Busy without suspending on a future: the timer runs in
                # the iteration in which this task also runs.
                await asyncio.sleep(0)
                sc("after-0", repr(t), me().cancelling())
                await asyncio.sleep(0)
                sc("after-1", repr(t), me().cancelling())
            sc("exited", repr(t), me().cancelling())

        task = sc.loop.create_task(main())
        step(sc)
        step(sc, 1.0)
        step(sc, 0, 3)
        sc("done", task.done(), task.cancelled())

    trace = tparity(impl, scenario)
    assert entry(trace, "done") == (True, False)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("delay", ["1", [1], b"x", object()])
def test_non_numeric_delay(impl, loop, delay):
    """timeout(delay) computes ``loop.time() + delay`` at the call: the
    TypeError of that addition."""

    async def main(mod):
        try:
            mod.timeout(delay)
        except TypeError as e:
            return normalize(e.args), me().cancelling()

    def normalize(args):
        return tuple(a.split(" at 0x")[0] if isinstance(a, str) else a
                     for a in args)

    got = run(loop, main(impl))
    assert got == run(loop, main(asyncio))
    assert got[0][0].startswith("unsupported operand type(s) for +: 'float'")


def test_non_numeric_deadline_at_entry(impl, loop):
    """timeout_at("x") is accepted; entering compares it with loop.time()
    after the state changed: the TypeError leaves the scope 'active' with
    no timer, repr() itself fails, re-entering is refused."""

    async def main(mod):
        out = []
        t = mod.timeout_at("x")
        try:
            async with t:
                out.append("entered")
        except TypeError as e:
            out.append(e.args)
        out.append(t.when())
        out.append(t.expired())
        try:
            out.append(repr(t))
        except TypeError as e:
            out.append(("repr", e.args))
        try:
            t.reschedule(None)
            out.append(("rescheduled", repr(t)))
        except RuntimeError as e:
            out.append(e.args)
        try:
            await t.__aenter__()
        except RuntimeError as e:
            out.append(e.args)
        out.append(await t.__aexit__(None, None, None))
        out.append(repr(t))
        await asyncio.sleep(0)
        out.append(me().cancelling())
        return out

    got = run(loop, main(impl))
    assert got == run(loop, main(asyncio))
    assert got == [
        ("'<=' not supported between instances of 'str' and 'float'",),
        "x", False,
        ("repr", ("type str doesn't define __round__ method",)),
        ("rescheduled", "<Timeout [active] when=None>"),
        ("Timeout has already been entered",),
        None, "<Timeout [finished]>", 0]


def test_reschedule_non_numeric(impl):
    """reschedule("x") stores the deadline and drops the old timer before
    the comparison fails: the old deadline no longer fires."""

    def scenario(sc):
        async def body(t):
            try:
                t.reschedule("x")
            except TypeError as e:
                sc("reschedule-failed", e, t.when())
            try:
                sc("repr", repr(t))
            except TypeError as e:
                sc("repr-failed", e)
            await asyncio.sleep(5)
            sc("slept", sc.loop.time(), t.expired())
            return "done"

        async def main():
            t = sc.impl.timeout(2)
            await scoped(sc, t, "t", body, t)

        sc.run(main)

    # (scoped() records repr() at entry only, before the bad reschedule.)
    trace = tparity(impl, scenario, step=0.5)
    assert exc_info(entry(trace, "reschedule-failed")[0]) == (
        "TypeError",
        ("'<=' not supported between instances of 'str' and 'float'",))
    assert entry(trace, "slept") == (1005.5, False)


def test_infinite_delay_never_fires(impl, loop):
    async def main(mod):
        out = []
        t = mod.timeout(INF)
        async with t:
            out.append(repr(t))
            for _ in range(3):
                await asyncio.sleep(0)
        out.append((repr(t), t.expired(), me().cancelling()))
        t = mod.timeout_at(INF)
        async with t:
            await asyncio.sleep(0)
            t.reschedule(INF)
            await asyncio.sleep(0)
        out.append(repr(t))
        t = mod.timeout(-INF)
        try:
            async with t:
                await asyncio.sleep(1)
        except TimeoutError:
            out.append(repr(t))
        return out

    got = run(loop, main(impl))
    assert got == run(loop, main(asyncio))
    assert got == ["<Timeout [active] when=inf>",
                   ("<Timeout [finished]>", False, 0),
                   "<Timeout [finished]>", "<Timeout [expired]>"]


def test_infinite_delay_on_a_virtual_clock(impl, vloop):
    """An idle loop with an infinite deadline: the stdlib's timer is
    never due, time jumps to the body's own timer."""

    async def main(mod):
        t = mod.timeout(INF)
        async with t:
            await asyncio.sleep(1e6)
        return repr(t), vloop.time()

    got = run(vloop, main(impl))
    assert got == run(vloop, main(asyncio)) or got[0] == "<Timeout [finished]>"
    assert got[0] == "<Timeout [finished]>"


def _nan_scenario(sc, *, reschedule=False):
    async def main():
        t = sc.impl.timeout(None if reschedule else NAN)
        sc.label(t, "t")
        try:
            async with t:
                if reschedule:
                    t.reschedule(NAN)
                sc("entered", repr(t))
                await hang(sc, "body")
        except BaseException as e:
            sc("main:raised", e, repr(t), me().cancelling())
            raise

    task = sc.loop.create_task(main())
    try:
        sc.run(task)
    except ValueError as e:
        sc("loop-failed", e, task.done())
        # The loop can run again: the NaN timer is still at the head of
        # its queue; drop it and cancel the task (bounded, never a hang).
        for h in getattr(sc.loop, "_scheduled", ()):
            if h.when() != h.when():
                h.cancel()
        task.cancel()
        try:
            sc.run(task)
        except BaseException as e:
            sc("second-run:raised", e)
    except BaseException as e:
        sc("run:raised", e)


@pytest.mark.parametrize("reschedule", [False, True],
                         ids=["timeout-nan", "reschedule-nan"])
def test_nan_delay_on_the_active_loop(impl, reschedule):
    """NaN is accepted (``when <= time()`` is false, so call_at(nan)).
    Then: 3.11/3.12's default loop runs the NaN timer in the next
    iteration (max(0, nan) is 0); 3.13.0's computes a NaN select timeout
    and the loop fails with ValueError; uvloop's call_at raises ValueError
    at once (in __aenter__ or reschedule)."""

    def scenario(sc):
        _nan_scenario(sc, reschedule=reschedule)

    trace = tparity(impl, scenario, virtual=False)
    nan_error = ("ValueError", ("cannot convert float NaN to integer",))
    if LOOP_KIND == "uvloop":
        got = entry(trace, "main:raised")
        assert exc_info(got[0]) == nan_error
        assert got[2] == 0
    elif PY >= (3, 13):
        assert exc_info(entry(trace, "loop-failed")[0]) == nan_error
    else:
        assert exc_info(entry(trace, "main:raised")[0])[0] == "TimeoutError"
        assert when(trace, "body:cancelled") == when(trace, "entered") + 2


def test_nan_deadline_behind_an_earlier_timer(impl):
    """A NaN deadline entered while another timer is pending: it sits
    behind that timer in the loop's heap (NaN compares false) and runs in
    the same iteration as that timer, on every version."""

    def scenario(sc):
        async def sleeper():
            await asyncio.sleep(3)
            sc("sleeper:woke", sc.loop.time())

        async def main():
            s = sc.loop.create_task(sleeper())
            await asyncio.sleep(0)
            try:
                await scoped(sc, sc.impl.timeout(NAN), "t", hang, sc, "body")
            except BaseException as e:
                sc("main:raised", e, sc.loop.time())
            await s

        sc.run(main)

    trace = tparity(impl, scenario)
    assert exc_info(entry(trace, "main:raised")[0])[0] == "TimeoutError"
    assert entry(trace, "main:raised")[1] == 1003.0
    # Both timers ran in one iteration; both tasks resume in the next.
    assert when(trace, "body:cancelled") == when(trace, "sleeper:woke")


def test_reschedule_nan_repr(impl, loop):
    async def main(mod):
        t = mod.timeout(None)
        async with t:
            t.reschedule(NAN) if LOOP_KIND != "uvloop" else None
            r = repr(t)
            t.reschedule(None)
        return r

    got = run(loop, main(impl))
    assert got == run(loop, main(asyncio))
    if LOOP_KIND != "uvloop":
        assert got == "<Timeout [active] when=nan>"


# ---------------------------------------------------------------------------
# Driving the awaitables by hand, signatures, reprs of odd deadlines
# ---------------------------------------------------------------------------

def test_entered_by_hand_and_never_exited(impl):
    """__aenter__ awaited, __aexit__ never: the deadline still cancels the
    task (no conversion ever happens); after the task is done the timer
    only moves the state to expiring (cancel() of a done task is
    refused)."""

    def scenario(sc):
        holder = {}

        async def leaky():
            t = holder["t"] = sc.impl.timeout(1)
            await t.__aenter__()
            sc("entered", repr(t))
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError as e:
                sc("leaky:cancelled", e, me().cancelling(), repr(t))
            return "leaky-done"

        async def quick():
            t = holder["q"] = sc.impl.timeout(2)
            await t.__aenter__()
            return "quick-done"

        async def main():
            a = sc.loop.create_task(leaky())
            b = sc.loop.create_task(quick())
            sc("results", await a, await b, a.cancelling(), b.cancelling())
            await asyncio.sleep(3)
            sc("later", repr(holder["t"]), repr(holder["q"]),
               holder["q"].expired(), b.cancelling())

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    assert entry(trace, "leaky:cancelled")[1:] == (1, "<Timeout [expiring]>")
    assert entry(trace, "later") == ("<Timeout [expiring]>",
                                     "<Timeout [expiring]>", True, 0)


def test_aexit_by_hand_with_odd_arguments(impl):
    """__aexit__ of an expiring scope called by hand: (CancelledError,
    None, None) raises TimeoutError from None; 3.13 also looks at other
    exception types (a non-class fails in issubclass), 3.11/3.12 compare
    with ``is``."""

    def scenario(sc):
        async def one(args):
            t = sc.impl.timeout(0)
            await t.__aenter__()
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                pass
            try:
                r = await t.__aexit__(*args)
                sc("aexit:returned", r, repr(t), me().cancelling())
            except BaseException as e:
                sc("aexit:raised", e, e.__suppress_context__, repr(t),
                   me().cancelling())

        async def main():
            for args in [(asyncio.CancelledError, None, None),
                         (KeyError, None, None),
                         (MyCancelled, None, None),
                         ("not-a-class", None, None),
                         (None, None, None),
                         (KeyError, KeyError("x"), None)]:
                await one(args)

        sc.run(main)

    trace = tparity(impl, scenario)
    outs = [e[1:] for e in trace if e[1].startswith("aexit:")]
    assert outs[0][0] == "aexit:raised"
    assert outs[0][1][:2] == ("TimeoutError", ())
    assert cause_of(outs[0][1]) is None and outs[0][2] is True


def test_signatures(impl, loop):
    def observe(mod):
        out = []

        def attempt(fn, *args, **kw):
            try:
                r = fn(*args, **kw)
            except TypeError as e:
                out.append(("TypeError", e.args))
            else:
                if asyncio.iscoroutine(r):
                    r.close()
                out.append("ok")

        async def main():
            attempt(mod.timeout)
            attempt(mod.timeout, 1, 2)
            attempt(mod.timeout, delay=1)
            attempt(mod.timeout, when=1)
            attempt(mod.timeout_at)
            attempt(mod.timeout_at, when=1)
            attempt(mod.timeout_at, delay=1)
            t = mod.timeout(100)
            attempt(t.when, 1)
            attempt(t.expired, 1)
            attempt(t.reschedule)
            attempt(t.__aenter__, 1)
            attempt(t.__aexit__)
            attempt(t.__aexit__, None, None)
            attempt(t.__aexit__, None, None, None, None)
            async with t:
                attempt(t.reschedule)
                attempt(t.reschedule, 1, 2)
                attempt(t.reschedule, when=None)
            return out

        return run(loop, main)

    got = observe(impl)
    assert got == observe(asyncio)
    assert got[2] == "ok" and got[5] == "ok"


@pytest.mark.parametrize("when_", [1e20, -0.0, 1005, True, 1004.9995,
                                   1004.0004999, 2 ** 70, -1e-9],
                         ids=str)
def test_repr_of_odd_deadlines(impl, when_):
    """``round(when, 3)`` formatted by str(): ints stay ints, big floats
    use exponents, -0.0 keeps its sign."""

    def scenario(sc):
        async def main():
            t = sc.impl.timeout(None)
            async with t:
                t.reschedule(when_)
                sc("repr", repr(t), type(t.when()).__name__)
                t.reschedule(None)

        sc.run(main)

    trace = tparity(impl, scenario)
    r = entry(trace, "repr")[0]
    assert r == f"<Timeout [active] when={round(when_, 3)}>"


def test_float_subclass_deadline(impl):
    class MyFloat(float):
        def __repr__(self):
            return "MyFloat!"

    def scenario(sc):
        async def main():
            t = sc.impl.timeout_at(MyFloat(1001.5))
            try:
                async with t:
                    sc("repr", repr(t))
                    await asyncio.sleep(5)
            except TimeoutError:
                sc("expired", sc.loop.time())

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    assert entry(trace, "expired") == (1002.0,)


def test_many_concurrent_scopes_share_nothing_observable(impl):
    """Scopes in many tasks with interleaved deadlines, some removed,
    moved earlier or later, some on the same instant: each expires in
    the stdlib's iteration and only its own task is cancelled."""

    def scenario(sc):
        plan = [  # (delay, reschedule-after-0.5s-to, body sleep)
            (3.0, None, 5.0), (1.0, 2.0, 5.0), (2.0, 0.75, 5.0),
            (1.0, None, 0.25), (4.0, 1.0, 5.0), (2.0, 2.0, 5.0),
            (0.5, None, 5.0), (5.0, "none", 1.5), (1.25, None, 5.0),
            (1.0, 3.0, 5.0),
        ]

        async def worker(i, delay, moved, sleep_t):
            t = sc.impl.timeout(delay)
            try:
                async with t:
                    if moved is not None:
                        await asyncio.sleep(0.5)
                        t.reschedule(None if moved == "none"
                                     else sc.loop.time() + moved)
                    await asyncio.sleep(sleep_t)
                sc(f"w{i}:finished", sc.loop.time())
            except TimeoutError:
                sc(f"w{i}:timeout", sc.loop.time(), me().cancelling())

        async def main():
            tasks = [sc.loop.create_task(worker(i, *p), name=f"w{i}")
                     for i, p in enumerate(plan)]
            for t in tasks:
                await t

        sc.run(main)

    trace = tparity(impl, scenario, step=0.25, per_iteration_multiset=True)
    got = {e[1]: e[2] for e in trace}
    # The workers start at t0 (eager: at once), resume 0.25 s after a timer
    # of theirs ran.
    t0 = 1000.0 if EAGER else 1000.25
    assert got["w0:timeout"] == t0 + 3.25
    assert got["w1:timeout"] == got["w5:timeout"] == t0 + 3.0
    assert got["w3:finished"] == t0 + 0.5
    assert got["w7:finished"] == t0 + 2.5


def test_scopes_on_two_loops(impl, loop_factory):
    """Two loops, each with live scopes, stepped alternately: each
    deadline fires on its own loop, in its own loop's iteration."""

    def observe(mod):
        a = loop_factory(clock=VirtualClock(autojump=False))
        b = loop_factory(clock=VirtualClock(start=5000.0, autojump=False))
        log = []

        async def body(name, loop, delay):
            try:
                async with mod.timeout(delay):
                    await loop.create_future()
            except TimeoutError:
                log.append((name, loop.fw_iteration, loop.time()))

        ta = a.create_task(body("a", a, 2.0))
        tb = b.create_task(body("b", b, 1.0))
        for _ in range(6):
            a.clock.advance(0.5)
            run_briefly(a)
            b.clock.advance(0.5)
            run_briefly(b)
        return log, ta.done(), tb.done()

    got = observe(impl)
    assert got == observe(asyncio)
    # Entered after the first advance: deadlines 5001.5 and 1002.5, run in
    # those iterations, the TimeoutErrors one iteration later.
    assert got == ([("b", 4, 5002.0), ("a", 6, 1003.0)], True, True)


def test_loop_closed_with_a_live_scope(impl, loop_factory):
    """A loop closed while a scope is active (its task abandoned): a new
    loop's scopes work normally afterwards."""

    def observe(mod):
        from conftest import close_loop

        old = loop_factory(clock=VirtualClock(autojump=False))

        async def stuck():
            async with mod.timeout(10):
                await old.create_future()

        t = old.create_task(stuck())
        run_briefly(old)
        close_loop(old)  # cancels the task first
        out = [t.cancelled()]
        new = loop_factory(clock=VirtualClock())

        async def main():
            try:
                async with mod.timeout(1):
                    await asyncio.sleep(5)
            except TimeoutError:
                return new.time()

        out.append(run(new, main))
        return out

    got = observe(impl)
    assert got == observe(asyncio) == [True, 1001.0]


def test_base_exception_after_expiry(impl):
    """A BaseException subclass (not Exception) leaving an expired scope:
    3.13 splices the TimeoutError into its chain too."""

    class BaseBoom(BaseException):
        pass

    def scenario(sc):
        async def body():
            try:
                await hang(sc, "body")
            except asyncio.CancelledError:
                raise BaseBoom("bb")

        async def main():
            try:
                await scoped(sc, sc.impl.timeout(1), "t", body)
            except BaseBoom as e:
                sc("main:bb", e, e.__context__, me().cancelling())

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    ctx = entry(trace, "main:bb")[1]
    assert ctx[0] == ("TimeoutError" if PY >= (3, 13) else "CancelledError")


class RecordingTask(asyncio.Task):
    """A Task subclass whose cancel()/uncancel()/cancelling() calls are
    logged: a Timeout must go through the task's own methods."""

    log = None

    def cancel(self, msg=None):
        r = super().cancel(msg)
        if self.log is not None:
            self.log(f"cancel({msg!r})", r)
        return r

    def uncancel(self):
        r = super().uncancel()
        if self.log is not None:
            self.log("uncancel()", r)
        return r

    def cancelling(self):
        r = super().cancelling()
        if self.log is not None:
            self.log("cancelling()", r)
        return r


@pytest.mark.parametrize("task_cls", ["subclass", "pytask"])
def test_task_methods_are_called(impl, task_cls):
    """With a Task subclass (overridden cancel/uncancel/cancelling) or the
    pure-Python Task, the scope calls the same methods, in the same order,
    with the same results.  From 3.14 on the pure-Python Task is invisible
    to (the C) ``asyncio.current_task()`` (it enters itself with
    ``_py_enter_task``), so a scope refuses to be entered in it: "Timeout
    should be used inside a task", for wait_for() with a timeout too, while
    wait_for(aw, 0) still cancels and waits (its call-graph edge goes to
    no task)."""

    def scenario(sc):
        def log(what, result):
            sc("task-call", what, result)

        if task_cls == "subclass":
            def factory(loop, coro, **kw):
                t = RecordingTask(coro, loop=loop, **kw)
                t.log = log
                return t
        else:
            def factory(loop, coro, **kw):
                return asyncio.tasks._PyTask(coro, loop=loop, **kw)

        sc.loop.set_task_factory(factory)

        async def body():
            sc("body:type", type(me()).__name__)
            await scoped(sc, sc.impl.timeout(1), "inner", hang, sc, "in",
                         catch=True)
            await hang(sc, "body")

        async def invisible():
            try:
                async with sc.impl.timeout(3):
                    sc("timeout:entered")
            except RuntimeError as e:
                sc("timeout:refused", e.args)
            try:
                await sc.impl.wait_for(asyncio.sleep(0.5, "slept"), 2)
            except RuntimeError as e:
                sc("wait_for:refused", e.args)
            try:
                await sc.impl.wait_for(asyncio.sleep(5), 0)
            except TimeoutError as e:
                sc("wait_for-0:timeout", e, type(e.__cause__).__name__)

        async def main():
            sc("main:current_task", me() is not None)
            if me() is None:
                return await invisible()
            try:
                await scoped(sc, sc.impl.timeout(3), "outer", body)
            except TimeoutError as e:
                sc("main:timeout", e)
            r = await sc.impl.wait_for(asyncio.sleep(0.5, "slept"), 2)
            sc("wait_for", r)
            try:
                await sc.impl.wait_for(asyncio.sleep(5), 1)
            except TimeoutError as e:
                sc("wait_for:timeout", e)

        sc.run(main)

    trace = tparity(impl, scenario, step=0.5)
    if not entry(trace, "main:current_task")[0]:
        assert task_cls == "pytask" and PY >= (3, 14)
        refused = ("Timeout should be used inside a task",)
        assert entry(trace, "timeout:refused") == (refused,)
        assert entry(trace, "wait_for:refused") == (refused,)
        assert entry(trace, "wait_for-0:timeout")[1] == "CancelledError"
        return
    assert entry(trace, "body:type")[0] == (
        "RecordingTask" if task_cls == "subclass" else "Task")
    if task_cls == "subclass":
        assert ("cancel(None)", True) in [e[2:] for e in trace
                                          if e[1] == "task-call"]
