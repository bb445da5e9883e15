"""Parity tests for ``as_completed``: every behaviour, on both implementations.

Each behavioural test takes the ``impl`` fixture (``asyncio`` or
``fastwait``) and either traces one scenario with ``impl.as_completed`` and
with ``asyncio.as_completed`` on fresh loops of the active axes
(``ac_parity``), or observes both directly in the same run; then it pins the
facts of the running version explicitly.

The stdlib builds ``set(fs)`` and ``set(todo)``, so the order in which it
creates tasks for coroutines, in which it adds its done-callbacks and hence
in which it reports futures that were already done is hash-dependent (README,
difference #3).  ``ac_parity`` therefore compares traces with the entries of
each loop iteration as a multiset (anonymous labels masked); orders that the
stdlib does define (completions in different iterations, or in one iteration
by different callbacks) are pinned by explicit ordered records.

The hash order also leaks into *when* an item is received: the tasks the
stdlib creates for coroutines keep their (hash-dependent) relative order
from step to step, so when one of them finishes in iteration k and another
in k+1, whether the second one's done-callback runs before or after the
consumer woken by the first one varies from run to run, and the second item
is received in iteration k+3 or k+2.  Scenarios here keep the coroutine
children that suspend with ``sleep(0)`` from finishing in adjacent
iterations (two apart, or together, is deterministic).  Likewise, timers
falling due at the same time fire in the order they were scheduled, and
an iteration that stops part-way through children that finished together
(a break after n items, or one item fewer after a cancelled wait) reports
a hash-dependent subset of them; tests that do so use children whose order
is defined.

Version map (the stdlib of the running interpreter is the reference):

* 3.11 / 3.12: ``as_completed`` is a generator function: nothing happens at
  call time; the type check, the loop lookup, task creation, callbacks and
  the timer happen at the first ``next()``.  ``async for`` raises TypeError.
* 3.13: ``_AsCompletedIterator`` does all of that at call time and is also
  an async iterator that yields the original futures (or the tasks made for
  coroutines), already done.

fastwait's native ``as_completed`` (when ``"as_completed" in
fastwait.NATIVE_NAMES``) offers 3.13's ``async for`` on every version (a
strictly additive feature); the async-iteration tests assert 3.13's
behaviour for it on 3.11/3.12, and the stdlib's (TypeError) otherwise.
"""

import asyncio
import gc
import inspect
import itertools
import re
import sys
import types
import warnings
import weakref

import pytest

import fastwait
from conftest import (
    PY,
    TASKS_KIND,
    VirtualClock,
    entry,
    events,
    run,
    trace_scenario,
    when,
)
from helpers import (PY314, BaseBoom, Boom, GraphWatch, policy_loop,
                     reset_event_loop_policy)

EAGER = TASKS_KIND == "eager"
PY313 = PY >= (3, 13)
HAS_EAGER = hasattr(asyncio, "eager_task_factory")


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def native_as_completed():
    return "as_completed" in fastwait.NATIVE_NAMES


def async_iteration_expected(impl):
    """Does ``impl.as_completed(...)`` support ``async for`` here?"""
    if PY313:
        return True
    if impl is asyncio:
        return False
    return native_as_completed()


def is_lazy(impl):
    """Does ``impl.as_completed`` defer all work to the first next()?  The
    stdlib's answer for the running version (fastwait must match it)."""
    return not PY313


_ANON = re.compile(r"#\d+")


def _mask(value):
    if isinstance(value, str):
        return "#" if _ANON.fullmatch(value) else value
    if isinstance(value, tuple):
        return tuple(_mask(v) for v in value)
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def canonical(trace):
    """The trace with the entries of each loop iteration sorted and the
    anonymous labels (``#n``, numbered in order of first appearance, which
    follows hash-dependent orders) masked."""
    out = []
    for _, group in itertools.groupby(trace, key=lambda e: e[0]):
        out.extend(sorted((_mask(e) for e in group), key=repr))
    return out


def trace_ac(as_completed, scenario, *, tasks=None, clock=False):
    """Trace ``scenario(sc)`` with ``sc.as_completed = as_completed`` on a
    fresh loop (a fresh VirtualClock with ``clock``); canonical trace."""

    def wrapped(sc):
        sc.as_completed = as_completed
        scenario(sc)

    trace = trace_scenario(as_completed, wrapped, tasks=tasks,
                           clock=VirtualClock() if clock else None)
    return canonical(trace)


def ac_parity(impl, scenario, **kwargs):
    """Trace ``scenario`` with ``impl.as_completed`` and with
    ``asyncio.as_completed``; the canonical traces must be equal."""
    got = trace_ac(impl.as_completed, scenario, **kwargs)
    want = trace_ac(asyncio.as_completed, scenario, **kwargs)
    assert got == want
    return got


def outcome(fn):
    """Call ``fn``; ("returned", value) or ("raised", type name, args)."""
    try:
        value = fn()
    except BaseException as e:  # noqa: B902 - recorded
        return ("raised", type(e).__name__, e.args)
    return ("returned", value)


async def worker(sc, name, *, steps=0, result=None, exc=None, wait=(),
                 catch_cancel=False, sleep=None):
    """A child: labels its task ``name``, suspends ``steps`` times (or sleeps
    ``sleep`` seconds), then awaits each of ``wait``, then returns ``result``
    or raises ``exc`` (labelled ``<name>.exc``).  A CancelledError is
    labelled ``<name>.cancel``, recorded and re-raised unless
    ``catch_cancel``."""
    sc.label(asyncio.current_task(), name)
    sc(f"{name}:start")
    try:
        for i in range(steps):
            await asyncio.sleep(0)
        if sleep is not None:
            await asyncio.sleep(sleep)
        for fut in wait:
            await fut
    except asyncio.CancelledError as e:
        sc.label(e, f"{name}.cancel")
        sc(f"{name}:cancelled", e)
        if not catch_cancel:
            raise
        sc(f"{name}:end", "caught")
        return "caught"
    if exc is not None:
        sc.label(exc, f"{name}.exc")
        sc(f"{name}:end", exc)
        raise exc
    sc(f"{name}:end", result)
    return result


async def consume(sc, it, *, name="item"):
    """Plain iteration: await every item and record what it returned or
    raised (event ``name``), in order.  Stops when the consuming task itself
    is cancelled (event ``name:cancelled``).  Returns the outcomes."""
    seen = []
    for c in it:
        try:
            r = await c
        except BaseException as e:  # noqa: B902 - recorded
            if asyncio.current_task().cancelling():
                sc(f"{name}:cancelled", e)
                return seen
            sc(name, "raised", e)
            seen.append(("raised", sc.tr.describe_exc(e)[:3]))
        else:
            sc(name, "result", r)
            seen.append(("result", r))
    sc(f"{name}:exhausted", len(seen))
    return seen


async def consume_async(sc, it, *, name="item"):
    """``async for``: record each yielded object (label, done()) and what
    its result() returns or raises, in the same shape as ``consume``; a
    TimeoutError from ``__anext__`` is recorded as an item's, and the
    iteration goes on."""
    seen = []
    while True:
        try:
            async for f in it:
                sc(f"{name}:future", f, f.done())
                try:
                    r = f.result()
                except BaseException as e:  # noqa: B902 - recorded
                    sc(name, "raised", e)
                    seen.append(("raised", sc.tr.describe_exc(e)[:3]))
                else:
                    sc(name, "result", r)
                    seen.append(("result", r))
        except BaseException as e:  # noqa: B902 - recorded
            if asyncio.current_task().cancelling():
                sc(f"{name}:cancelled", e)
                return seen
            sc(name, "raised", e)
            seen.append(("raised", sc.tr.describe_exc(e)[:3]))
            if isinstance(e, TimeoutError):
                continue  # the next __anext__ goes on
            sc(f"{name}:abandoned", type(e).__name__)
            return seen
        else:
            sc(f"{name}:exhausted", len(seen))
            return seen


async def settle(limit=100):
    """Let every other task of the loop finish (bounded; waits with
    asyncio.wait(), which retrieves no exception, so that a virtual clock
    can jump to the timers)."""
    me = asyncio.current_task()
    for _ in range(limit):
        pending = {t for t in asyncio.all_tasks() if t is not me}
        if not pending:
            return
        await asyncio.wait(pending)
    raise AssertionError("tasks still pending after settle()")


def set_later(loop, fut, n, value=None, *, exc=None, cancel=False, msg=None,
              then=None):
    """Resolve ``fut`` with ``value`` (or ``exc``, or cancel it with
    ``msg``) ``n`` loop iterations from now (``n`` >= 1), then call
    ``then()`` if given."""

    def step(k):
        if k > 1:
            loop.call_soon(step, k - 1)
            return
        if cancel:
            fut.cancel(msg)
        elif exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)
        if then is not None:
            then()

    step_n = max(n, 1)
    loop.call_soon(step, step_n)


def project(trace):
    """A trace without the ``*:future`` entries that only ``async for``
    records: what remains is comparable with a plain iteration's trace."""
    return [e for e in trace if not e[1].endswith(":future")]


def async_parity(impl, make_scenario, **kwargs):
    """For an ``impl`` with ``async for``: trace ``make_scenario("async")``
    with ``impl.as_completed``; it must read like the stdlib's plain
    iteration of ``make_scenario("plain")`` (same items, outcomes and
    iterations, the yielded futures aside), and on 3.13 exactly like the
    stdlib's own ``async for``.  Returns the async trace."""
    got = trace_ac(impl.as_completed, make_scenario("async"), **kwargs)
    plain = trace_ac(asyncio.as_completed, make_scenario("plain"), **kwargs)
    assert project(got) == plain
    if PY313:
        want = trace_ac(asyncio.as_completed, make_scenario("async"),
                        **kwargs)
        assert got == want
    return got


ASYNC_FOR_TYPEERROR = (
    "'async for' requires an object with __aiter__ method, got generator",)


def check_no_async_iteration(impl, loop):
    """``async for`` over as_completed(...) fails as the stdlib's does on
    3.11/3.12 (the generator never starts: no task is created)."""

    def observe(as_completed):
        async def child():
            return 1

        async def main():
            before = asyncio.all_tasks()
            coro = child()
            it = as_completed([coro])
            try:
                async for _ in it:
                    pass
            except TypeError as e:
                out = ("TypeError", e.args)
            else:  # pragma: no cover - a failure
                out = ("no error",)
            try:
                aiter(it)
            except TypeError as e:
                out += ("aiter", e.args)
            out += (len(asyncio.all_tasks() - before),
                    inspect.getcoroutinestate(coro))
            coro.close()
            return out

        return run(loop, main)

    got = observe(impl.as_completed)
    want = observe(asyncio.as_completed)
    assert got == want
    assert got == ("TypeError", ASYNC_FOR_TYPEERROR,
                   "aiter", ("'generator' object is not an async iterable",),
                   0, inspect.CORO_CREATED)


# ---------------------------------------------------------------------------
# Laziness (3.11/3.12) versus work at call time (3.13)
# ---------------------------------------------------------------------------

def test_tasks_created_at_call_or_first_next(impl, loop):
    def observe(as_completed):
        async def child():
            await asyncio.sleep(0)
            return "c"

        async def main():
            before = asyncio.all_tasks()
            coro = child()
            fut = asyncio.get_running_loop().create_future()
            it = as_completed([coro, fut])
            at_call = (len(asyncio.all_tasks() - before),
                       inspect.getcoroutinestate(coro),
                       "cb=[" in repr(fut))
            first = next(it)
            at_next = (len(asyncio.all_tasks() - before),
                       inspect.getcoroutinestate(coro),
                       "cb=[" in repr(fut))
            fut.set_result("f")
            results = {await first, await next(it)}
            return at_call, at_next, results

        return run(loop, main)

    got = observe(impl.as_completed)
    want = observe(asyncio.as_completed)
    assert got == want
    at_call, at_next, results = got
    # With eager_task_factory the child's first step runs in create_task().
    started = inspect.CORO_SUSPENDED if EAGER else inspect.CORO_CREATED
    if is_lazy(impl):
        assert at_call == (0, inspect.CORO_CREATED, False)
    else:
        assert at_call == (1, started, True)
    assert at_next == (1, started, True)
    assert results == {"c", "f"}


def test_abandoned_before_first_next(impl, loop):
    """3.11/3.12: an as_completed() never iterated does nothing at all (the
    coroutine stays unstarted); 3.13 has already started the work."""

    def observe(as_completed):
        log = []

        async def child():
            log.append("ran")
            return "c"

        async def main():
            coro = child()
            it = as_completed([coro])
            ref = weakref.ref(it)
            del it
            gc.collect()
            alive = ref() is not None
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            gc.collect()
            alive_later = ref() is not None
            state = inspect.getcoroutinestate(coro)
            if state == inspect.CORO_CREATED:
                coro.close()
            return alive, alive_later, state, list(log)

        return run(loop, main)

    got = observe(impl.as_completed)
    want = observe(asyncio.as_completed)
    assert got == want
    if is_lazy(impl):
        assert got == (False, False, inspect.CORO_CREATED, [])
    else:
        # The child's done-callback (pending on the child, or scheduled on
        # the loop when an eager start finished it) keeps the iterator
        # alive until it has run.
        assert got == (True, False, inspect.CORO_CLOSED, ["ran"])


def test_timeout_counts_from_call_or_first_next(impl, vloop):
    """The timer starts where the work starts: at the first next() on
    3.11/3.12, at the call on 3.13."""

    def observe(as_completed):
        async def main():
            t0 = vloop.time()
            fut = vloop.create_future()
            it = as_completed([fut], timeout=5)
            await asyncio.sleep(3)
            c = next(it)
            try:
                await c
            except TimeoutError as e:
                out = ("TimeoutError", e.args, vloop.time() - t0)
            else:  # pragma: no cover - a failure
                out = ("no timeout",)
            fut.cancel()
            return out

        return run(vloop, main)

    got = observe(impl.as_completed)
    want = observe(asyncio.as_completed)
    assert got == want
    assert got == ("TimeoutError", (), 8.0 if is_lazy(impl) else 5.0)


class AwaitableObj:
    """A non-coroutine awaitable (not iterable)."""

    def __init__(self, value=None, steps=1):
        self.value = value
        self.steps = steps

    def __await__(self):
        for _ in range(self.steps):
            yield
        return self.value


class IterableAwaitable:
    """Both iterable (empty) and awaitable."""

    def __iter__(self):
        return iter(())

    def __await__(self):
        yield


@types.coroutine
def _gen_based_coroutine():
    yield


async def _never_run():
    return None  # pragma: no cover


BAD_ARGS = {
    "future": lambda loop: loop.create_future(),
    "pyfuture": lambda loop: asyncio.futures._PyFuture(loop=loop),
    "task": lambda loop: loop.create_task(asyncio.sleep(0)),
    "coroutine": lambda loop: _never_run(),
    "awaitable": lambda loop: AwaitableObj(),
    "iterable-awaitable": lambda loop: IterableAwaitable(),
    "generator": lambda loop: (x for x in ()),
    "types.coroutine": lambda loop: _gen_based_coroutine(),
    "int": lambda loop: 42,
    "none": lambda loop: None,
}


@pytest.mark.parametrize("kind", list(BAD_ARGS))
def test_argument_check_timing_and_message(impl, loop, kind):
    def observe(as_completed):
        async def main():
            before = asyncio.all_tasks()
            arg = BAD_ARGS[kind](asyncio.get_running_loop())
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                at_next = None
                try:
                    it = as_completed(arg)
                except BaseException as e:  # noqa: B902 - recorded
                    at_call = (type(e).__name__, e.args)
                else:
                    at_call = "returned"
                    at_next = outcome(lambda: next(it))
                    if at_next[0] == "returned":  # pragma: no cover
                        at_next[1].close()
                        at_next = ("returned",)
                    it = None
                tasks = asyncio.all_tasks() - before - (
                    {arg} if isinstance(arg, asyncio.Task) else set())
                if inspect.iscoroutine(arg) or inspect.isgenerator(arg):
                    arg.close()
                elif isinstance(arg, asyncio.Future):
                    arg.cancel()
                await asyncio.sleep(0)
                del arg
                gc.collect()
            return at_call, at_next, len(tasks), [
                (w.category.__name__, str(w.message)) for w in caught]

        return run(loop, main)

    got = observe(impl.as_completed)
    want = observe(asyncio.as_completed)
    assert got == want
    at_call, at_next, n_tasks, ws = got
    assert n_tasks == 0 and ws == []
    typename = {"future": "Future", "pyfuture": "Future", "task": "Task",
                "awaitable": "AwaitableObj",
                "iterable-awaitable": "IterableAwaitable",
                "types.coroutine": "generator"}.get(kind, kind)
    awaitable = kind in ("future", "pyfuture", "task", "coroutine",
                         "awaitable", "iterable-awaitable", "types.coroutine")
    not_iterable = {"int": "'int' object is not iterable",
                    "none": "'NoneType' object is not iterable"}
    if PY313:
        if awaitable:
            assert at_call == ("TypeError", (
                f"expects an iterable of awaitables, not {typename}",))
            assert at_next is None
        elif kind in not_iterable:
            assert at_call == ("TypeError", (not_iterable[kind],))
            assert at_next is None
        else:  # an empty generator is fine
            assert at_call == "returned"
            assert at_next == ("raised", "StopIteration", ())
        return
    # 3.11/3.12: nothing at call time; the check runs at the first next().
    assert at_call == "returned"
    rejected = ["future", "pyfuture", "task", "coroutine"]
    if PY < (3, 12):
        # 3.11's asyncio.iscoroutine() accepts any generator.
        rejected += ["generator", "types.coroutine"]
    if kind in rejected:
        assert at_next == ("raised", "TypeError", (
            f"expect an iterable of futures, not {typename}",))
    elif kind == "awaitable":
        assert at_next == ("raised", "TypeError", (
            "'AwaitableObj' object is not iterable",))
    elif kind in not_iterable:
        assert at_next == ("raised", "TypeError", (not_iterable[kind],))
    elif kind == "types.coroutine":
        # 3.12: iterated; its first item (None) is not awaitable.
        assert at_next == ("raised", "TypeError", (
            "An asyncio.Future, a coroutine or an awaitable is required",))
    else:  # iterable-awaitable, generator (3.12): an empty iterable
        assert at_next == ("raised", "StopIteration", ())


def _call_positional(as_completed, fs):
    return as_completed(fs, 5)


def test_signature(impl, loop):
    def observe(as_completed):
        async def main():
            out = []
            for call in (lambda: _call_positional(as_completed, []),
                         lambda: as_completed([], loop=loop),
                         lambda: as_completed(),
                         lambda: as_completed(fs=[])):
                r = outcome(call)
                if r[0] == "returned":
                    r = ("returned", list(r[1]))
                out.append(r)
            return out

        return run(loop, main)

    got = observe(impl.as_completed)
    want = observe(asyncio.as_completed)
    assert got == want
    assert got[0] == ("raised", "TypeError", (
        "as_completed() takes 1 positional argument but 2 were given",))
    assert got[1] == ("raised", "TypeError", (
        "as_completed() got an unexpected keyword argument 'loop'",))
    assert got[2] == ("raised", "TypeError", (
        "as_completed() missing 1 required positional argument: 'fs'",))
    assert got[3] == ("returned", [])


# ---------------------------------------------------------------------------
# Plain iteration
# ---------------------------------------------------------------------------

def test_items_are_fresh_awaitables(impl, loop):
    def observe(as_completed):
        async def child(x):
            await asyncio.sleep(0)
            return x

        async def main():
            t = asyncio.get_running_loop().create_task(child("t"))
            coro = child("c")
            it = as_completed([t, coro])
            shape = (iter(it) is it,)
            items = list(it)
            shape += (len(items), len({id(c) for c in items}),
                      [asyncio.iscoroutine(c) for c in items],
                      [inspect.isawaitable(c) for c in items],
                      any(c is t or c is coro for c in items),
                      outcome(lambda: next(it)))
            results = [await c for c in items]
            return shape, sorted(results)

        return run(loop, main)

    got = observe(impl.as_completed)
    want = observe(asyncio.as_completed)
    assert got == want
    assert got == ((True, 2, 2, [True, True], [True, True], False,
                    ("raised", "StopIteration", ())), ["c", "t"])


def _children_at_distinct_iterations(sc):
    """Children finishing in loop iterations at least 3 apart (lazy and
    eager): a task (14 lazy / 13 eager), a task (3 / 2), a coroutine
    (6 / 5), a future resolved by a callback (9 / 9)."""
    loop = sc.loop
    a = loop.create_task(worker(sc, "a", steps=12, result="A"))
    b = loop.create_task(worker(sc, "b", steps=1, result="B"))
    f = loop.create_future()
    sc.label(f, "f")
    set_later(loop, f, 8, "F")
    sc.watch(f, "f")
    return [a, b, worker(sc, "c", steps=4, result="C"), f]


def test_results_in_completion_order(impl):
    def scenario(sc):
        async def main():
            fs = _children_at_distinct_iterations(sc)
            sc("calling")
            it = sc.as_completed(fs)
            del fs
            seen = await consume(sc, it)
            sc("order", [s[1] for s in seen])

        sc.run(main)

    trace = ac_parity(impl, scenario)
    assert entry(trace, "order") == (["B", "C", "F", "A"],)
    assert entry(trace, "item:exhausted") == (4,)
    # Each item returns two iterations after its child finished: the
    # done-callback runs in the next one, the woken consumer in the one
    # after.
    for name in ("a", "b", "c"):
        value = name.upper()
        done_at = when(trace, f"{name}:end")
        got_at = [e[0] for e in trace if e[1:] == ("item", "result", value)]
        assert got_at == [done_at + 2], (name, trace)
    assert [e[0] for e in trace if e[1:] == ("item", "result", "F")] == [
        when(trace, "f:done") + 2]


@pytest.mark.parametrize("created", ["forward", "reverse"])
def test_same_iteration_completions_follow_finishing_order(impl, created):
    """Children finishing in one iteration are reported in the order they
    finished (defined: the order their done-callbacks were scheduled)."""

    def scenario(sc):
        async def main():
            names = ["p", "q", "r"]
            if created == "reverse":
                names.reverse()
            ts = [sc.loop.create_task(worker(sc, n, steps=1, result=n))
                  for n in names]
            f1 = sc.loop.create_future()
            f2 = sc.loop.create_future()

            def resolve():
                f2.set_result("f2")
                f1.set_result("f1")

            sc.loop.call_soon(sc.loop.call_soon, sc.loop.call_soon, resolve)
            it = sc.as_completed([f1, *ts, f2])
            del ts
            seen = await consume(sc, it)
            sc("order", [s[1] for s in seen])

        sc.run(main)

    trace = ac_parity(impl, scenario)
    names = ["p", "q", "r"] if created == "forward" else ["r", "q", "p"]
    (order,) = entry(trace, "order")
    # The tasks finish in creation order in one iteration; the futures are
    # resolved f2 first, in another.
    assert order == names + ["f2", "f1"]


def test_already_done_inputs(impl):
    """Futures done before the call are reported first (in an order the
    stdlib leaves to hashing), one iteration after the callbacks were
    added."""

    def scenario(sc):
        async def main():
            done = []
            for i in range(4):
                f = sc.loop.create_future()
                if i == 2:
                    exc = Boom("d2")
                    sc.label(exc, "d2.exc")
                    f.set_exception(exc)
                elif i == 3:
                    f.cancel("d3")
                else:
                    f.set_result(f"d{i}")
                done.append(f)
            late = sc.loop.create_task(worker(sc, "late", steps=0,
                                              result="L"))
            await asyncio.sleep(0)
            sc("calling")
            it = sc.as_completed(done + [late])
            del done
            seen = await consume(sc, it)
            sc("outcomes", sorted(map(repr, seen)))

        sc.run(main)

    trace = ac_parity(impl, scenario)
    (outcomes,) = entry(trace, "outcomes")
    assert len(outcomes) == 5
    items = [e for e in trace if e[1] == "item"]
    assert {e[0] for e in items} == {when(trace, "calling") + 2}
    assert sorted(e[2:] for e in items if e[2] == "result") == [
        ("result", "L"), ("result", "d0"), ("result", "d1")]
    raised = sorted(e[3][:2] for e in items if e[2] == "raised")
    assert raised == [("Boom", ("d2",)), ("CancelledError", ("d3",))]


def test_duplicates_collapse(impl):
    def scenario(sc):
        async def main():
            t = sc.loop.create_task(worker(sc, "t", steps=1, result="T"))
            f = sc.loop.create_future()
            set_later(sc.loop, f, 8, "F")
            coro = worker(sc, "c", steps=2, result="C")
            aw = AwaitableObj("AW", steps=4)
            before = asyncio.all_tasks()
            it = sc.as_completed([t, coro, f, t, aw, coro, f, aw, t])
            del t, coro, aw
            items = list(it)
            sc("items", len(items), len(asyncio.all_tasks() - before))
            seen = [await c for c in items]
            sc("order", seen)

        sc.run(main)

    trace = ac_parity(impl, scenario)
    # The coroutine's task may finish inside create_task() (eager), and then
    # is not registered.
    assert entry(trace, "items") == (4, 2)
    assert entry(trace, "order") == (["T", "C", "AW", "F"],)
    assert len(events(trace, "c:start")) == 1


def test_empty_inputs(impl, loop):
    def observe(as_completed):
        async def main():
            out = []
            for fs in ([], (), set(), iter([]), {}, (x for x in [])):
                if PY < (3, 12) and inspect.isgenerator(fs):
                    continue  # 3.11 rejects generators (tested elsewhere)
                it = as_completed(fs, timeout=1)
                out.append((list(it), outcome(lambda: next(it))))
            return out

        return run(loop, main)

    got = observe(impl.as_completed)
    want = observe(asyncio.as_completed)
    assert got == want
    assert got == [([], ("raised", "StopIteration", ()))] * (
        5 if PY < (3, 12) else 6)


def test_outcomes_surface_in_items(impl):
    """Results, exceptions (the child's own objects), BaseException
    subclasses, cancellations (with their messages) and CancelledErrors
    raised by the child itself, from tasks, coroutines and futures."""

    def scenario(sc):
        async def main():
            loop = sc.loop
            ext = loop.create_task(worker(sc, "ext", steps=10))
            loop.call_soon(loop.call_soon, ext.cancel, "ext-msg")
            early = loop.create_task(worker(sc, "early", steps=1))
            early.cancel("early-msg")  # before its first step (lazy)
            f = loop.create_future()
            pf = asyncio.futures._PyFuture(loop=loop)
            ef = loop.create_future()
            fexc = Boom("ef")
            sc.label(fexc, "ef.exc")
            set_later(loop, f, 6, cancel=True, msg="f-msg")
            set_later(loop, pf, 7, cancel=True, msg="pf-msg")
            set_later(loop, ef, 8, exc=fexc)
            # (Coroutine children finish 2 iterations apart: see the module
            # docstring.)
            fs = [
                worker(sc, "ok", steps=1, result="OK"),
                worker(sc, "boom", steps=3, exc=Boom("boom")),
                worker(sc, "base", steps=5, exc=BaseBoom("base")),
                worker(sc, "selfc", steps=7,
                       exc=asyncio.CancelledError("self-msg")),
                worker(sc, "swallow", steps=12, result="SW",
                       catch_cancel=True),
                ext, early, f, pf, ef,
            ]
            it = sc.as_completed(fs)
            del fs, ext, early
            seen = await consume(sc, it)
            sc("order", sorted(map(repr, seen)))
            sc("f:final", sc.state(f))
            sc("pf:final", sc.state(pf))
            sc("ef:final", sc.state(ef))

        sc.run(main)

    trace = ac_parity(impl, scenario)
    items = [e[2:] for e in trace if e[1] == "item"]
    results = [i[1] for i in items if i[0] == "result"]
    raised = {i[1][0] + ":" + repr(i[1][1]): i[1] for i in items
              if i[0] == "raised"}
    assert sorted(results) == ["OK", "SW"]
    assert raised["Boom:('boom',)"][2] == "boom.exc"
    assert raised["Boom:('ef',)"][2] == "ef.exc"
    assert raised["BaseBoom:('base',)"][2] == "base.exc"
    # A CancelledError the child raised itself is that very object.
    assert raised["CancelledError:('self-msg',)"][2] == "selfc.exc"
    # A task cancelled while running: the error that went through it.
    assert raised["CancelledError:('ext-msg',)"][2] == "ext.cancel"
    assert "CancelledError:('early-msg',)" in raised
    assert "CancelledError:('f-msg',)" in raised
    assert "CancelledError:('pf-msg',)" in raised
    # ``swallow`` was never cancelled: nothing cancels the children.
    assert len(items) == 10
    assert events(trace, "swallow:cancelled") == []
    assert entry(trace, "swallow:end") == ("SW",)
    assert entry(trace, "item:exhausted") == (10,)
    assert entry(trace, "ef:final")[0][2] == "retrieved"
    assert entry(trace, "f:final")[0][0] == "cancelled"


def test_exception_context_follows_the_awaiting_code(impl):
    """An item raising while the consumer handles another exception chains
    it as ``__context__`` (as a raise at the ``await`` would)."""

    def scenario(sc):
        async def main():
            a = sc.loop.create_task(worker(sc, "a", steps=1, exc=Boom("a")))
            b = sc.loop.create_task(worker(sc, "b", steps=3, exc=Boom("b")))
            it = sc.as_completed([a, b])
            del a, b
            try:
                await next(it)
            except Boom as first:
                sc("first", first)
                try:
                    await next(it)
                except Boom as second:
                    sc("second", second)

        sc.run(main)

    trace = ac_parity(impl, scenario)
    assert entry(trace, "first")[0][2:] == ("a.exc", None, None)
    assert entry(trace, "second")[0][2:] == ("b.exc", "a.exc", None)


def test_item_awaited_twice_or_after_close(impl, loop):
    def observe(as_completed):
        async def main():
            f = asyncio.get_running_loop().create_future()
            f.set_result("F")
            g = asyncio.get_running_loop().create_future()
            g.set_result("G")
            it = as_completed([f, g])
            c1 = next(it)
            first = await c1
            try:
                await c1
            except RuntimeError as e:
                again = ("RuntimeError", e.args)
            c2 = next(it)
            c2.close()
            try:
                await c2
            except RuntimeError as e:
                closed = ("RuntimeError", e.args)
            return first in ("F", "G"), again, closed

        return run(loop, main)

    got = observe(impl.as_completed)
    want = observe(asyncio.as_completed)
    assert got == want
    assert got[0] is True
    assert got[1] == got[2] == (
        "RuntimeError", ("cannot reuse already awaited coroutine",))


def test_items_taken_before_awaiting(impl):
    """Items are interchangeable: whichever is awaited first gets the first
    completion, whatever the order they were taken in."""

    def scenario(sc):
        async def main():
            a = sc.loop.create_task(worker(sc, "a", steps=3, result="A"))
            b = sc.loop.create_task(worker(sc, "b", steps=1, result="B"))
            items = list(sc.as_completed([a, b]))
            del a, b
            sc("second-item", await items[1])
            sc("first-item", await items[0])

        sc.run(main)

    trace = ac_parity(impl, scenario)
    assert entry(trace, "second-item") == ("B",)
    assert entry(trace, "first-item") == ("A",)
    assert when(trace, "second-item") == when(trace, "b:end") + 2
    assert when(trace, "first-item") == when(trace, "a:end") + 2


def test_items_awaited_concurrently(impl):
    """Items awaited by several tasks at once are served in the order the
    tasks started waiting (the queue's getters)."""

    def scenario(sc):
        async def waiter(name, c):
            try:
                sc(f"{name}:got", await c)
            except BaseException as e:  # noqa: B902 - recorded
                sc(f"{name}:raised", e)

        async def main():
            loop = sc.loop
            a = loop.create_task(worker(sc, "a", steps=4, result="A"))
            b = loop.create_task(worker(sc, "b", steps=2, exc=Boom("b")))
            c = loop.create_task(worker(sc, "c", steps=6, result="C"))
            items = list(sc.as_completed([a, b, c], timeout=None))
            del a, b, c
            ws = [loop.create_task(waiter(f"w{i}", items[i]))
                  for i in (2, 0, 1)]
            del items
            await asyncio.gather(*ws)

        sc.run(main)

    trace = ac_parity(impl, scenario)
    assert entry(trace, "w2:raised")[0][:3] == ("Boom", ("b",), "b.exc")
    assert entry(trace, "w0:got") == ("A",)
    assert entry(trace, "w1:got") == ("C",)
    assert when(trace, "w2:raised") == when(trace, "b:end") + 2


# ---------------------------------------------------------------------------
# timeout (virtual clock)
# ---------------------------------------------------------------------------

def _timed(sc, name, delay, *, result=None, exc=None):
    return worker(sc, name, sleep=delay, result=result, exc=exc)


def test_timeout_between_completions(impl):
    def scenario(sc):
        t0 = sc.loop.time()

        async def main():
            loop = sc.loop
            t3 = loop.create_task(_timed(sc, "t3", 3, result="T3"))
            f5 = loop.create_future()
            loop.call_later(5, f5.set_result, "F5")
            it = sc.as_completed(
                [_timed(sc, "c1", 1, result="C1"), t3, f5,
                 _timed(sc, "c7", 7, exc=Boom("c7"))], timeout=4)
            del t3
            seen = []
            for c in it:
                try:
                    seen.append(await c)
                except TimeoutError as e:
                    seen.append(("TimeoutError", e.args))
                sc("at", loop.time() - t0)
            sc("seen", seen)
            sc("f5:at-timeout", sc.state(f5))
            await settle()
            sc("f5:final", sc.state(f5))
            sc("end", loop.time() - t0)

        sc.run(main)

    trace = ac_parity(impl, scenario, clock=True)
    assert entry(trace, "seen") == (
        ["C1", "T3", ("TimeoutError", ()), ("TimeoutError", ())],)
    assert [e[2] for e in trace if e[1] == "at"] == [1.0, 3.0, 4.0, 4.0]
    assert entry(trace, "f5:at-timeout") == (("pending",),)
    # Nothing was cancelled: the children finished later, on their own.
    assert entry(trace, "f5:final") == (("result", "F5"),)
    assert events(trace, "c7:cancelled") == []
    assert entry(trace, "c7:end")[0][:3] == ("Boom", ("c7",), "c7.exc")
    assert entry(trace, "end") == (7.0,)
    # ... and c7's exception was never retrieved (the timeout removed the
    # done-callback that would have delivered it).
    (log,) = events(trace, "exception-handler")
    assert log[1] == "Task exception was never retrieved"
    assert log[2][:3] == ("Boom", ("c7",), "c7.exc")


def test_timeout_after_everything_finished(impl):
    """The timer is cancelled when the last child finishes; the loop does
    not wait for it."""

    def scenario(sc):
        t0 = sc.loop.time()

        async def main():
            it = sc.as_completed([_timed(sc, "a", 1, result="A"),
                                  _timed(sc, "b", 2, result="B")],
                                 timeout=10)
            sc("seen", [await c for c in it])
            sc("done-at", sc.loop.time() - t0)
            await asyncio.sleep(0)

        sc.run(main)
        sc("end", sc.loop.time() - t0)

    trace = ac_parity(impl, scenario, clock=True)
    assert entry(trace, "seen") == (["A", "B"],)
    assert entry(trace, "done-at") == (2.0,)
    assert entry(trace, "end") == (2.0,)


def test_items_completed_before_the_timeout_are_still_returned(impl):
    """Completions queued before the deadline are delivered even when the
    consumer only asks after it; the rest raise TimeoutError at once."""

    def scenario(sc):
        t0 = sc.loop.time()

        async def main():
            gate = sc.loop.create_future()
            it = sc.as_completed([_timed(sc, "a", 1, result="A"),
                                  _timed(sc, "b", 2, exc=Boom("b")),
                                  worker(sc, "c", wait=[gate], result="C")],
                                 timeout=5)
            items = [next(it)]  # starts the work on 3.11/3.12
            await asyncio.sleep(9)
            items += list(it)
            for c in items:
                try:
                    sc("item", await c, sc.loop.time() - t0)
                except BaseException as e:  # noqa: B902 - recorded
                    sc("item", e, sc.loop.time() - t0)
            gate.set_result(None)
            await settle()

        sc.run(main)

    trace = ac_parity(impl, scenario, clock=True)
    items = [e for e in trace if e[1] == "item"]
    assert [i[2] if isinstance(i[2], str) else i[2][:3] for i in items] == [
        "A", ("Boom", ("b",), "b.exc"), ("TimeoutError", (), "#")]
    assert {i[3] for i in items} == {9.0}
    assert entry(trace, "c:end") == ("C",)
    assert events(trace, "exception-handler") == []


@pytest.mark.parametrize("timeout", [0, -1])
@pytest.mark.parametrize("pending", [False, True])
def test_zero_or_negative_timeout(impl, timeout, pending):
    """The timer fires in the next iteration, after the callbacks of the
    futures that were already done."""

    def scenario(sc):
        async def main():
            f = sc.loop.create_future()
            f.set_result("F")
            fs = [f]
            if pending:
                fs.append(sc.loop.create_task(
                    worker(sc, "p", steps=1, result="P")))
            it = sc.as_completed(fs, timeout=timeout)
            del fs
            seen = await consume(sc, it)
            sc("seen", seen)
            await settle()

        sc.run(main)

    trace = ac_parity(impl, scenario, clock=True)
    (seen,) = entry(trace, "seen")
    if pending:
        assert seen == [("result", "F"), ("raised", ("TimeoutError", (), "#"))]
        assert entry(trace, "p:end") == ("P",)
    else:
        assert seen == [("result", "F")]


def test_deadline_equal_to_a_child_sleep(impl):
    """A child that sleeps exactly until the deadline: both timers fire in
    one iteration, but the child finishes in the next (its wake-up goes
    through the loop), so the timeout wins."""

    def scenario(sc):
        t0 = sc.loop.time()

        async def main():
            it = sc.as_completed([_timed(sc, "a", 3, result="A")], timeout=3)
            try:
                sc("got", await next(it))
            except TimeoutError:
                sc("timeout", sc.loop.time() - t0)
            await settle()

        sc.run(main)

    trace = ac_parity(impl, scenario, clock=True)
    assert entry(trace, "timeout") == (3.0,)
    assert entry(trace, "a:end") == ("A",)
    assert events(trace, "got") == []
    assert when(trace, "a:end") == when(trace, "timeout")


# ---------------------------------------------------------------------------
# The generator protocol (3.11/3.12)
# ---------------------------------------------------------------------------

def _gen_case_send_value_fresh(it, call, mk):
    call("send(1)", lambda: it.send(1))
    call("send(None)", lambda: it.send(None))
    call("next", lambda: next(it))
    call("next", lambda: next(it))


def _gen_case_throw_fresh(it, call, mk):
    call("throw", lambda: it.throw(mk(ValueError, "v")))
    call("next", lambda: next(it))
    call("send(None)", lambda: it.send(None))


def _gen_case_close_fresh(it, call, mk):
    call("close", lambda: it.close())
    call("next", lambda: next(it))
    call("close", lambda: it.close())
    call("throw", lambda: it.throw(mk(KeyError, "after")))


def _gen_case_send_value_started(it, call, mk):
    call("next", lambda: next(it))
    call("send(5)", lambda: it.send(5))
    call("send(5)", lambda: it.send(5))


def _gen_case_throw_started(it, call, mk):
    call("next", lambda: next(it))
    call("throw", lambda: it.throw(mk(KeyError, "k")))
    call("next", lambda: next(it))
    call("close", lambda: it.close())


def _gen_case_close_started(it, call, mk):
    call("next", lambda: next(it))
    call("close", lambda: it.close())
    call("next", lambda: next(it))
    call("throw", lambda: it.throw(mk(KeyError, "after")))


def _gen_case_throw_stopiteration(it, call, mk):
    call("next", lambda: next(it))
    call("throw", lambda: it.throw(mk(StopIteration, "s")))
    call("next", lambda: next(it))


def _gen_case_throw_generatorexit(it, call, mk):
    call("next", lambda: next(it))
    call("throw", lambda: it.throw(mk(GeneratorExit, "g")))
    call("next", lambda: next(it))


def _gen_case_throw_type(it, call, mk):
    call("throw", lambda: it.throw(KeyError))
    call("next", lambda: next(it))


def _gen_case_throw_three_args(it, call, mk):
    call("next", lambda: next(it))
    call("throw", lambda: it.throw(KeyError, mk(KeyError, "a"), None))


def _gen_case_exhausted(it, call, mk):
    for _ in range(3):
        call("next", lambda: next(it))
    call("send(None)", lambda: it.send(None))
    call("throw", lambda: it.throw(mk(KeyError, "late")))
    call("close", lambda: it.close())


GEN_CASES = {
    name[len("_gen_case_"):]: fn for name, fn in list(globals().items())
    if name.startswith("_gen_case_")
}


@pytest.mark.parametrize("case", sorted(GEN_CASES))
def test_generator_protocol(impl, loop, case):
    """3.11/3.12: the object is a generator; send(), throw() and close()
    behave exactly like the stdlib's, before, during and after iteration
    (what is raised, identity of thrown exceptions, warnings, which tasks
    exist, whether the inputs were started).  3.13's iterator has none of
    these methods."""

    def observe(as_completed):
        async def child(x, n):
            for _ in range(n):
                await asyncio.sleep(0)
            return x

        async def main():
            loop = asyncio.get_running_loop()
            before = asyncio.all_tasks()
            t = loop.create_task(child("t", 2))
            coro = child("c", 1)
            it = as_completed([t, coro])
            if PY313:
                out = [hasattr(it, m) for m in ("send", "throw", "close")]
                list(map(lambda c: c.close(), it))
                await t
                return out
            log = []
            items = []
            thrown = []

            def mk(cls, arg):
                exc = cls(arg)
                thrown.append(exc)
                return exc

            def call(label, fn):
                try:
                    r = fn()
                except BaseException as e:  # noqa: B902 - recorded
                    cause = e.__cause__
                    log.append((label, "raised", type(e).__name__, e.args,
                                any(e is x for x in thrown),
                                None if cause is None else (
                                    type(cause).__name__,
                                    any(cause is x for x in thrown))))
                else:
                    if asyncio.iscoroutine(r):
                        items.append(r)
                        r = "item"
                    log.append((label, "returned", r))

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                GEN_CASES[case](it, call, mk)
            log.append(("warnings", [(w.category.__name__, str(w.message))
                                     for w in caught]))
            log.append(("tasks", len(asyncio.all_tasks() - before - {t}),
                        inspect.getcoroutinestate(coro)))
            await asyncio.sleep(0)
            if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
                coro.close()  # no task was made for it
            results = []
            for c in items:
                results.append(await c)
            log.append(("results", sorted(results)))
            await t
            await settle()
            return log

        return run(loop, main)

    got = observe(impl.as_completed)
    want = observe(asyncio.as_completed)
    assert got == want
    if PY313:
        assert got == [False, False, False]
        return
    it = asyncio.as_completed([])
    assert inspect.isgenerator(it)
    it.close()
    log = dict((e[0], e[1:]) for e in got if e[0] in ("tasks", "warnings"))
    # Facts of the generator protocol, pinned:
    if case == "send_value_fresh":
        assert got[0] == ("send(1)", "raised", "TypeError", (
            "can't send non-None value to a just-started generator",),
            False, None)
        assert [e[1:] for e in got[1:4]] == [
            ("returned", "item"), ("returned", "item"),
            ("raised", "StopIteration", (), False, None)]
    elif case in ("throw_fresh", "close_fresh", "throw_type"):
        # A generator closed before it started did nothing at all.
        assert log["tasks"] == (0, inspect.CORO_CREATED)
        if case == "throw_fresh":
            assert got[0] == ("throw", "raised", "ValueError", ("v",), True,
                              None)
    elif case == "throw_started":
        assert got[1] == ("throw", "raised", "KeyError", ("k",), True, None)
        assert got[2][1:3] == ("raised", "StopIteration")
        # The work started by the first next() goes on.
        assert log["tasks"][0] == 1
    elif case == "throw_stopiteration":
        assert got[1] == ("throw", "raised", "RuntimeError",
                          ("generator raised StopIteration",), False,
                          ("StopIteration", True))
    elif case == "throw_three_args":
        assert got[1] == ("throw", "raised", "KeyError", ("a",), True, None)
        assert log["warnings"] == ([(
            "DeprecationWarning",
            "the (type, exc, tb) signature of throw() is deprecated, use "
            "the single-arg signature instead.")] if PY >= (3, 12) else [],)


# ---------------------------------------------------------------------------
# async for (3.13; fastwait's native version on every version)
# ---------------------------------------------------------------------------

class LabellingAwaitable:
    """A non-coroutine awaitable that labels the task running it and
    records its steps like ``worker``."""

    def __init__(self, sc, name, *, steps=0, result=None):
        self.sc = sc
        self.name = name
        self.steps = steps
        self.result = result

    def __await__(self):
        sc, name = self.sc, self.name
        sc.label(asyncio.current_task(), name)
        sc(f"{name}:start")
        for _ in range(self.steps):
            yield
        sc(f"{name}:end", self.result)
        return self.result


def _iterate(sc, mode, it, **kwargs):
    if mode == "async":
        return consume_async(sc, it, **kwargs)
    return consume(sc, it, **kwargs)


def test_async_for_yields_the_original_objects(impl, loop):
    if not async_iteration_expected(impl):
        check_no_async_iteration(impl, loop)
        return

    def make(mode):
        def scenario(sc):
            async def main():
                loop = sc.loop
                t = loop.create_task(worker(sc, "t", steps=1, result="T"))
                f = loop.create_future()
                sc.label(f, "f")
                set_later(loop, f, 10, "F")
                coro = worker(sc, "c", steps=3, result="C")
                aw = LabellingAwaitable(sc, "aw", steps=5, result="AW")
                before = asyncio.all_tasks()
                it = sc.as_completed([t, f, coro, aw, t, coro, f])
                sc("made", len(asyncio.all_tasks() - before))
                del t, coro, aw
                seen = await _iterate(sc, mode, it)
                sc("order", [s[1] for s in seen])

            sc.run(main)

        return scenario

    trace = async_parity(impl, make)
    futures = [e[2:] for e in trace if e[1] == "item:future"]
    # Tasks and futures are yielded themselves; coroutines and other
    # awaitables as the tasks made for them.  All of them done.
    assert futures == [("t", True), ("c", True), ("aw", True), ("f", True)]
    assert entry(trace, "order") == (["T", "C", "AW", "F"],)
    assert entry(trace, "item:exhausted") == (4,)


def test_async_for_outcomes_via_result(impl, loop):
    if not async_iteration_expected(impl):
        check_no_async_iteration(impl, loop)
        return

    def make(mode):
        def scenario(sc):
            async def main():
                loop = sc.loop
                ext = loop.create_task(worker(sc, "ext", steps=8))
                loop.call_soon(loop.call_soon, ext.cancel, "m")
                f = loop.create_future()
                sc.label(f, "f")
                set_later(loop, f, 5, cancel=True, msg="fm")
                it = sc.as_completed([
                    worker(sc, "boom", steps=1, exc=Boom("boom")),
                    worker(sc, "base", steps=3, exc=BaseBoom("base")),
                    ext, f])
                del ext
                seen = await _iterate(sc, mode, it)
                sc("count", len(seen))

            sc.run(main)

        return scenario

    trace = async_parity(impl, make)
    futures = [e[2] for e in trace if e[1] == "item:future"]
    assert sorted(futures) == ["base", "boom", "ext", "f"]
    raised = [e[3][:3] for e in trace if e[1:3] == ("item", "raised")]
    assert sorted(raised) == [
        ("BaseBoom", ("base",), "base.exc"),
        ("Boom", ("boom",), "boom.exc"),
        ("CancelledError", ("fm",), "#"),
        ("CancelledError", ("m",), "ext.cancel")]


def test_async_for_timeout_raises_from_anext(impl, loop):
    if not async_iteration_expected(impl):
        check_no_async_iteration(impl, loop)
        return

    def make(mode):
        def scenario(sc):
            t0 = sc.loop.time()

            async def main():
                f = sc.loop.create_future()
                sc.label(f, "f")
                it = sc.as_completed([_timed(sc, "a", 1, result="A"),
                                      _timed(sc, "b", 5, result="B"), f],
                                     timeout=3)
                await _iterate(sc, mode, it)
                sc("end", sc.loop.time() - t0)
                if mode == "async":
                    try:
                        await it.__anext__()
                    except StopAsyncIteration:
                        sc("after", "exhausted")
                else:
                    try:
                        next(it)
                    except StopIteration:
                        sc("after", "exhausted")
                f.cancel()
                await settle()

            sc.run(main)

        return scenario

    trace = async_parity(impl, make, clock=True)
    items = [e[2:] for e in trace if e[1] in ("item", "item:future")]
    # (Entries of one iteration are sorted: "item" before "item:future".)
    assert [i[:2] if i[0] == "raised" else i for i in items] == [
        ("result", "A"), ("a", True),
        ("raised", ("TimeoutError", (), "#", None, None)),
        ("raised", ("TimeoutError", (), "#", None, None))]
    assert entry(trace, "item:exhausted") == (3,)
    assert entry(trace, "end") == (3.0,)
    assert entry(trace, "after") == ("exhausted",)
    assert entry(trace, "b:end") == ("B",)


def test_async_for_empty(impl, loop):
    if not async_iteration_expected(impl):
        check_no_async_iteration(impl, loop)
        return

    async def main():
        it = impl.as_completed([])
        assert aiter(it) is it
        n = 0
        async for _ in it:
            n += 1
        try:
            await it.__anext__()
        except StopAsyncIteration as e:
            return n, e.args
        return n, "no StopAsyncIteration"  # pragma: no cover

    assert run(loop, main) == (0, ())


def test_plain_and_async_iteration_share_the_count(impl, loop):
    if not async_iteration_expected(impl):
        check_no_async_iteration(impl, loop)
        return

    async def main():
        loop = asyncio.get_running_loop()
        fs = [loop.create_future() for _ in range(3)]
        for i, f in enumerate(fs):
            loop.call_soon(f.set_result, i)
        it = impl.as_completed(fs)
        assert iter(it) is it and aiter(it) is it
        first = await next(it)
        rest = [f async for f in it]
        assert all(f.done() for f in rest)
        assert len({id(f) for f in rest}) == 2
        assert all(any(f is g for g in fs) for f in rest)
        return sorted([first] + [f.result() for f in rest]), list(it)

    assert run(loop, main) == ([0, 1, 2], [])


# ---------------------------------------------------------------------------
# Loops: futures of another loop, coroutines made into tasks
# ---------------------------------------------------------------------------

LOOP_MISMATCH = ("The future belongs to a different loop than the one "
                 "specified as the loop argument",)


@pytest.mark.parametrize("kind", ["future", "pyfuture", "task"])
def test_future_of_another_loop(impl, loop, loop_factory, kind):
    other = loop_factory()

    async def idle():
        await asyncio.sleep(0)

    def observe(as_completed):
        async def main():
            before = asyncio.all_tasks()
            mine = asyncio.get_running_loop().create_future()
            if kind == "future":
                foreign = other.create_future()
            elif kind == "pyfuture":
                foreign = asyncio.futures._PyFuture(loop=other)
            else:
                foreign = other.create_task(idle())
            at_next = None
            try:
                it = as_completed([mine, foreign])
            except BaseException as e:  # noqa: B902 - recorded
                at_call = (type(e).__name__, e.args)
            else:
                at_call = "returned"
                at_next = outcome(lambda: next(it))
            out = (at_call, at_next, len(asyncio.all_tasks() - before),
                   "cb=[" in repr(mine))
            mine.cancel()
            if kind != "task":
                foreign.cancel()
            return out

        return run(loop, main)

    got = observe(impl.as_completed)
    want = observe(asyncio.as_completed)
    assert got == want
    if PY313:
        assert got == (("ValueError", LOOP_MISMATCH), None, 0, False)
    else:
        assert got == ("returned", ("raised", "ValueError", LOOP_MISMATCH),
                       0, False)
    # The foreign tasks (one per run) were left alone: still pending on
    # their own loop.
    if kind == "task":
        leftover = asyncio.all_tasks(other)
        assert len(leftover) == 2
        other.run_until_complete(asyncio.wait(leftover))


def test_coroutine_with_future_of_another_loop(impl, loop, loop_factory):
    """as_completed([coro, foreign]) raises ValueError; whether the
    coroutine's task was made before the error depends on the stdlib's set
    order: either the task runs to completion, or the coroutine is never
    awaited.  Both implementations give one of those outcomes."""
    other = loop_factory()

    def observe(as_completed):
        log = []

        async def child():
            log.append("ran")
            return "c"

        async def main():
            before = asyncio.all_tasks()
            foreign = other.create_future()
            coro = child()
            try:
                it = as_completed([coro, foreign])
                next(it)
            except ValueError as e:
                err = e.args
            made = len(asyncio.all_tasks() - before)
            await asyncio.sleep(0)
            state = inspect.getcoroutinestate(coro)
            if state == inspect.CORO_CREATED:
                coro.close()
            foreign.cancel()
            return err, made, state, list(log)

        return run(loop, main)

    allowed = [
        (LOOP_MISMATCH, 1, inspect.CORO_CLOSED, ["ran"]),
        (LOOP_MISMATCH, 0, inspect.CORO_CREATED, []),
    ]
    if EAGER:  # the task finished inside create_task(): not registered
        allowed[0] = (LOOP_MISMATCH, 0, inspect.CORO_CLOSED, ["ran"])
    assert observe(asyncio.as_completed) in allowed
    assert observe(impl.as_completed) in allowed


def test_coroutines_become_tasks_of_the_running_loop(impl):
    """Coroutines and other awaitables run in Tasks of the running loop,
    whose ``_log_destroy_pending`` as_completed leaves alone (gather clears
    it)."""

    def scenario(sc):
        async def probe(name, steps):
            task = asyncio.current_task()
            sc.label(task, name)
            sc(f"{name}:task", type(task).__name__, isinstance(
                task, asyncio.Task), task.get_loop() is sc.loop,
                task._log_destroy_pending)
            for _ in range(steps):
                await asyncio.sleep(0)
            sc(f"{name}:flag", task._log_destroy_pending)
            return name

        class ProbeAwaitable:
            def __await__(self):
                return probe("aw", 3).__await__()

        async def main():
            user = sc.loop.create_task(probe("user", 2))
            it = sc.as_completed([probe("coro", 1), ProbeAwaitable(), user])
            del user
            sc("results", sorted([await c for c in it]))

        sc.run(main)

    trace = ac_parity(impl, scenario)
    assert entry(trace, "results") == (["aw", "coro", "user"],)
    for name in ("coro", "aw", "user"):
        assert entry(trace, f"{name}:task") == ("Task", True, True, True)
        assert entry(trace, f"{name}:flag") == (True,)


def test_destroyed_pending_children_are_logged(impl):
    """Abandoned children that never finish are reported as "destroyed but
    pending" when collected, the tasks as_completed made included."""

    def scenario(sc):
        async def stuck(name):
            sc.label(asyncio.current_task(), name)
            sc(f"{name}:start")
            await sc.loop.create_future()

        class StuckAwaitable:
            def __await__(self):
                return stuck("aw").__await__()

        async def main():
            user = sc.loop.create_task(stuck("user"))
            quick = sc.loop.create_task(worker(sc, "quick", steps=1,
                                               result="Q"))
            it = sc.as_completed([stuck("coro"), user, StuckAwaitable(),
                                  quick])
            del user, quick
            sc("first", await next(it))
            del it
            for _ in range(3):
                await asyncio.sleep(0)

        sc.run(main)

    trace = ac_parity(impl, scenario)
    assert entry(trace, "first") == ("Q",)
    handlers = events(trace, "exception-handler")
    assert sorted(h[1] for h in handlers) == [
        "Task was destroyed but it is pending!"] * 3
    assert {h[2][:2] for h in handlers} == {("task", "Task")}
    coros = sorted(h[2][2] for h in handlers)
    assert [c.endswith(".stuck") for c in coros] == [False, True, True]
    assert "_wrap_awaitable" in coros[0]
    assert {h[2][3] for h in handlers} == {("pending", ("cancelling", 0))}


# ---------------------------------------------------------------------------
# Abandoned iterations: what stays alive, what is logged
# ---------------------------------------------------------------------------

def _modes(impl):
    return ["plain", "async"] if async_iteration_expected(impl) else [
        "plain"]


@pytest.mark.parametrize("how", ["break", "raise", "cancel"])
def test_abandoned_iteration(impl, how):
    """After the consumer breaks out, raises in the loop body or is
    cancelled: the pending children keep their done-callback (checked by
    the presence of ``cb=[`` in their repr), nothing is cancelled, the
    iterator object lives exactly as long as the stdlib's (3.13: until the
    pending children finish, since their callbacks hold it), and the
    exceptions nobody retrieved are logged."""

    for mode in _modes(impl):
        def scenario(sc):
            refs = {}

            async def consumer(fs):
                it = sc.as_completed(fs)
                refs["it"] = weakref.ref(it)
                del fs
                try:
                    if mode == "async":
                        async for f in it:
                            sc("consumer:got", f.result())
                            if how == "break":
                                break
                            if how == "raise":
                                raise Boom("body")
                    else:
                        for c in it:
                            sc("consumer:got", await c)
                            if how == "break":
                                break
                            if how == "raise":
                                raise Boom("body")
                except BaseException as e:  # noqa: B902 - recorded
                    sc("consumer:raised", e)
                    raise

            async def main():
                loop = sc.loop
                gate = loop.create_future()
                quick = loop.create_task(worker(sc, "quick", steps=1,
                                                result="Q"))
                slow = loop.create_task(worker(sc, "slow", wait=[gate],
                                               exc=Boom("slow")))
                fut = loop.create_future()
                sc.label(fut, "fut")
                con = loop.create_task(consumer(
                    [quick, slow, fut,
                     worker(sc, "coro", wait=[gate], result="C")]))
                sc.label(con, "consumer")
                for _ in range(20):
                    await asyncio.sleep(0)
                    if events(sc.tr.events, "consumer:got"):
                        break
                if how == "cancel":
                    await asyncio.sleep(0)
                    sc("cancel", con.cancel("stop"))
                await asyncio.wait([con])
                sc("consumer:final", sc.state(con))
                del con, quick
                # Neither the consumer's exception (the tracer holds it) nor
                # the recorded "never retrieved" context of the consumer
                # task may keep its frame, and so the iterator, alive.
                sc.tr.record_exceptions()
                sc("pending-cb", "cb=[" in repr(slow), "cb=[" in repr(fut))
                sc("iterator-alive", refs["it"]() is not None)
                gate.set_result(None)
                fut.set_result("F")
                await settle()
                sc.tr.record_exceptions()
                sc("iterator-alive-after", refs["it"]() is not None)
                sc("slow:final", sc.state(slow))
                sc("fut:final", sc.state(fut))

            sc.run(main)

        if mode == "async" and not PY313:
            # fastwait's native async for on 3.11/3.12: the iterator is
            # what the stdlib's plain one is there (checked in plain mode);
            # check the rest against 3.13's facts below.
            trace = trace_ac(impl.as_completed, scenario)
        else:
            trace = ac_parity(impl, scenario)
        assert entry(trace, "consumer:got") == ("Q",)
        assert entry(trace, "pending-cb") == (True, True)
        assert events(trace, "slow:cancelled") == []
        assert events(trace, "coro:cancelled") == []
        assert entry(trace, "coro:end") == ("C",)
        assert entry(trace, "fut:final") == (("result", "F"),)
        (slow_final,) = entry(trace, "slow:final")
        assert slow_final[0] == "exception" and slow_final[2] == "unretrieved"
        assert entry(trace, "iterator-alive-after") == (False,)
        # The object's lifetime is that of what as_completed() returns on
        # the running version, however it is iterated: on 3.13 the
        # _AsCompletedIterator, which the pending children's callbacks hold;
        # on 3.11/3.12 the generator, which they do not hold (fastwait's
        # async iteration there keeps that).
        assert entry(trace, "iterator-alive") == (PY313,)
        (final,) = entry(trace, "consumer:final")
        if how == "break":
            assert final[0] == "result"
        elif how == "raise":
            assert final[:2] == ("exception", ("Boom", ("body",), "#",
                                               None, None))
        else:
            assert final[0] == "cancelled"
            (raised,) = entry(trace, "consumer:raised")
            assert raised[:2] == ("CancelledError", ("stop",))
        logs = sorted(h[1:3] for h in events(trace, "exception-handler"))
        want_logs = [("Task exception was never retrieved",
                      ("Boom", ("slow",), "slow.exc", None, None))]
        if how == "raise":
            want_logs.insert(0, ("Task exception was never retrieved",
                                 ("Boom", ("body",), "#", None, None)))
        assert logs == want_logs


def test_never_retrieved_after_break(impl):
    """Break after the first item: every later failure is reported once
    collected, as by the stdlib (compared as a multiset)."""

    def scenario(sc):
        async def main():
            loop = sc.loop
            ts = [loop.create_task(worker(sc, "t1", steps=1, result=1)),
                  loop.create_task(worker(sc, "t2", steps=3,
                                          exc=Boom("t2"))),
                  worker(sc, "c3", steps=2, exc=Boom("c3")),
                  worker(sc, "c4", steps=4, exc=BaseBoom("c4"))]
            f5 = loop.create_future()
            exc5 = Boom("f5")
            sc.label(exc5, "f5.exc")
            set_later(loop, f5, 3, exc=exc5)
            ts.append(f5)
            del f5, exc5
            for c in sc.as_completed(ts):
                sc("got", await c)
                break
            del ts, c
            await settle()
            await asyncio.sleep(0)

        sc.run(main)

    trace = ac_parity(impl, scenario)
    assert entry(trace, "got") == (1,)
    logs = sorted((h[1], h[2][:3], h[3][:2])
                  for h in events(trace, "exception-handler"))
    assert logs == [
        ("Future exception was never retrieved", ("Boom", ("f5",), "f5.exc"),
         ("future", "Future")),
        ("Task exception was never retrieved",
         ("BaseBoom", ("c4",), "c4.exc"), ("future", "Task")),
        ("Task exception was never retrieved", ("Boom", ("c3",), "c3.exc"),
         ("future", "Task")),
        ("Task exception was never retrieved", ("Boom", ("t2",), "t2.exc"),
         ("future", "Task")),
    ]


def test_cancelling_the_iterating_task(impl):
    """A consumer cancelled while waiting for an item: the CancelledError
    is the consumer's own; the children are not touched.  Up to 3.13 the
    cancelled item counts as consumed, so the remaining items cover one
    child fewer; 3.14's _wait_for_one puts its slot back."""

    def scenario(sc):
        async def consumer(it):
            try:
                sc("got", await next(it))
            except asyncio.CancelledError as e:
                sc("consumer:cancelled", e,
                   asyncio.current_task().cancelling())
                raise

        async def main():
            loop = sc.loop
            a = loop.create_task(worker(sc, "a", steps=8, result="A"))
            b = loop.create_task(worker(sc, "b", steps=10, result="B"))
            it = sc.as_completed([a, b])
            con = loop.create_task(consumer(it))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            sc("cancel", con.cancel("cm"))
            await asyncio.wait([con])
            sc("consumer:final", sc.state(con))
            sc("a:state", sc.state(a))
            rest = list(it)
            sc("rest", len(rest))
            for c in rest:
                sc("next", await c)
            await settle()
            sc("b:final", sc.state(b))

        sc.run(main)

    trace = ac_parity(impl, scenario)
    # Up to 3.13 the cancelled item used up its slot: one item is left for
    # two children, and B's completion is never delivered.  3.14: two.
    assert entry(trace, "rest") == ((2 if PY314 else 1),)
    assert entry(trace, "b:final") == (("result", "B", ("cancelling", 0)),)
    assert entry(trace, "cancel") == (True,)
    (cancelled, cancelling) = entry(trace, "consumer:cancelled")
    assert cancelled[:2] == ("CancelledError", ("cm",))
    assert cancelling == 1
    assert entry(trace, "consumer:final")[0][0] == "cancelled"
    assert entry(trace, "a:state") == (("pending", ("cancelling", 0)),)
    assert [e[2] for e in trace if e[1] == "next"] == (
        ["A", "B"] if PY314 else ["A"])


def test_unawaited_item_warns(impl):
    """An item dropped without being awaited warns like the stdlib's
    coroutine (same text)."""

    def scenario(sc):
        async def main():
            f = sc.loop.create_future()
            f.set_result(1)
            it = sc.as_completed([f])
            # Made in asyncio's as_completed() its origin traceback starts
            # with asyncio/tasks.py frames, which C code does not have: that
            # is pinned by test_differences.py's
            # test_debug_mode_origin_of_as_completed_items; here the
            # warning's text is compared without it.
            depth = sys.get_coroutine_origin_tracking_depth()
            sys.set_coroutine_origin_tracking_depth(0)
            try:
                c = next(it)
            finally:
                sys.set_coroutine_origin_tracking_depth(depth)
            del c, it
            gc.collect()
            await asyncio.sleep(0)

        sc.run(main)

    trace = ac_parity(impl, scenario)
    name = ("_AsCompletedIterator._wait_for_one" if PY313
            else "as_completed.<locals>._wait_for_one")
    assert events(trace, "warning") == [
        ("warning", "RuntimeWarning", f"coroutine '{name}' was never awaited")]


# ---------------------------------------------------------------------------
# Iteration timing
# ---------------------------------------------------------------------------

TIMING_CASES = {
    # name: ([steps of pre-created tasks], [steps of coroutines],
    #        [iterations (from the call) at which futures are resolved])
    "tasks-together": ([1, 1, 1], [], []),
    "tasks-adjacent": ([1, 2, 3, 4], [], []),
    "tasks-reverse": ([4, 3, 2, 1, 0], [], []),
    "tasks-immediate": ([0, 0], [], []),
    "coros-together": ([], [2, 2, 2], []),
    "coros-spaced": ([], [0, 2, 4, 6], []),
    "futures": ([], [], [1, 1, 2, 4, 5]),
    "mixed": ([1, 3, 3], [0, 5], [2, 3, 6]),
}


@pytest.mark.parametrize("case", sorted(TIMING_CASES))
def test_receive_iterations(impl, case):
    """The loop iteration in which each awaited item returns, for children
    finishing in chosen iterations, is the stdlib's (exact on the default
    loop)."""
    task_steps, coro_steps, future_at = TIMING_CASES[case]

    def scenario(sc):
        async def main():
            loop = sc.loop
            fs = [loop.create_task(worker(sc, f"t{i}", steps=n, result=f"t{i}"))
                  for i, n in enumerate(task_steps)]
            fs += [worker(sc, f"c{i}", steps=n, result=f"c{i}")
                   for i, n in enumerate(coro_steps)]
            for i, n in enumerate(future_at):
                f = loop.create_future()
                sc.label(f, f"f{i}")
                set_later(loop, f, n, f"f{i}",
                          then=lambda i=i: sc(f"f{i}:end", f"f{i}"))
                fs.append(f)
            sc("calling")
            it = sc.as_completed(fs)
            del fs
            for c in it:
                r = await c
                sc("got", r)
                sc(f"got:{r}")

        sc.run(main)

    trace = ac_parity(impl, scenario)
    got = [e[2] for e in trace if e[1] == "got"]
    n = len(task_steps) + len(coro_steps) + len(future_at)
    assert sorted(got) == sorted(
        [f"t{i}" for i in range(len(task_steps))]
        + [f"c{i}" for i in range(len(coro_steps))]
        + [f"f{i}" for i in range(len(future_at))]) and len(got) == n
    # Every item is received at least one iteration after its child
    # finished (the done-callback runs in the next one), and a child that
    # finished in an earlier iteration is not received later.
    finished = {}
    for e in trace:
        if e[1].endswith(":end"):
            finished[e[1][:-4]] = e[0]
    received = {e[1][4:]: e[0] for e in trace if e[1].startswith("got:")}
    assert set(received) == set(finished)
    for name, at in received.items():
        assert at >= finished[name] + 1, (name, trace)
    for x, y in itertools.permutations(finished, 2):
        if finished[x] < finished[y]:
            assert received[x] <= received[y], (x, y, trace)


def test_eager_children_complete_at_creation(impl, loop_factory):
    """With eager_task_factory (3.12+), coroutines that never suspend finish
    where as_completed creates their tasks: in the call on 3.13, in the
    first next() on 3.12; the items still arrive through the loop."""

    def scenario(sc):
        async def main():
            sc("calling")
            it = sc.as_completed([worker(sc, "a", result="A"),
                                  worker(sc, "b", exc=Boom("b")),
                                  worker(sc, "c", steps=2, result="C")])
            sc("called")
            first = next(it)
            sc("first-next")
            seen = await consume(sc, itertools.chain([first], it))
            sc("seen", sorted(map(repr, seen)))

        sc.run(main)

    if not HAS_EAGER:
        assert PY < (3, 12)
        trace = ac_parity(impl, scenario)
        assert when(trace, "a:end") == when(trace, "calling") + 1
        return
    trace = ac_parity(impl, scenario, tasks="eager")
    start = when(trace, "calling")
    assert when(trace, "a:end") == when(trace, "b:end") == start
    assert when(trace, "c:end") == start + 2
    items = [e for e in trace if e[1] == "item"]
    assert [e[0] - start for e in items] == [2, 2, 4]


def test_eager_children_run_inside_the_call_or_first_next(impl, loop_factory):
    """Which call (as_completed() or the first next()) runs the eager
    children's first steps is the stdlib's."""
    if not HAS_EAGER:
        assert PY < (3, 12)
        loop = loop_factory()
    else:
        loop = loop_factory(tasks="eager")

    def observe(as_completed):
        log = []

        async def child(name):
            log.append(name)
            return name

        async def main():
            it = as_completed([child("a"), child("b")])
            at_call = sorted(log)
            first = next(it)
            at_next = sorted(log)
            results = sorted([await first, await next(it)])
            return at_call, at_next, results

        return run(loop, main)

    got = observe(impl.as_completed)
    want = observe(asyncio.as_completed)
    assert got == want
    ran = ["a", "b"]
    if not HAS_EAGER:
        assert got == ([], [], ran)
    elif PY313:
        assert got == (ran, ran, ran)
    else:
        assert got == ([], ran, ran)


# ---------------------------------------------------------------------------
# Outside a running loop
# ---------------------------------------------------------------------------

def _call_then_next(as_completed, fs):
    # One call site for both implementations: warnings attributed to the
    # caller point at the same lines.
    it = as_completed(fs)
    return it, next(it)


def _outside_loop(as_completed, make_fs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fs = make_fs()
        try:
            it, first = _call_then_next(as_completed, fs)
        except BaseException as e:  # noqa: B902 - recorded
            out = ("raised", type(e).__name__, e.args)
            it = first = None
        else:
            out = ("returned",)
        coros = [f for f in fs if inspect.iscoroutine(f)]
        states = [inspect.getcoroutinestate(c) for c in coros]
    ws = [(w.category.__name__, str(w.message), w.filename, w.lineno)
          for w in caught]
    return out, states, ws, it, first, coros


async def _value(x):
    await asyncio.sleep(0)
    return x


def test_outside_running_loop_with_current_loop(impl, loop,
                                                event_loop_policy_guard):
    """3.14's _AsCompletedIterator asks current_task() for the call graph:
    without a running loop that raises, even with a current loop, before
    any task is made."""
    asyncio.set_event_loop(loop)

    def observe(as_completed):
        out, states, ws, it, first, coros = _outside_loop(
            as_completed, lambda: [_value(1), _value(2)])
        if it is None:
            for c in coros:
                c.close()
            return out, states, ws, len(asyncio.all_tasks(loop))
        results = [loop.run_until_complete(first)]
        results += [loop.run_until_complete(c) for c in it]
        return out, states, ws, sorted(results)

    got = observe(impl.as_completed)
    want = observe(asyncio.as_completed)
    assert got == want
    if PY314:
        assert got == (("raised", "RuntimeError", ("no running event loop",)),
                       [inspect.CORO_CREATED] * 2, [], 0)
    else:
        assert got == (("returned",), [inspect.CORO_CREATED] * 2, [], [1, 2])


def test_outside_running_loop_without_current_loop(impl,
                                                   event_loop_policy_guard):
    """No current loop: the policy makes one (3.12+ warn, attributed to the
    caller's line: next() on 3.12, the call on 3.13); 3.14's
    get_event_loop() raises instead."""

    def observe(as_completed):
        reset_event_loop_policy()
        out, states, ws, it, first, coros = _outside_loop(
            as_completed, lambda: [_value(1)])
        made = policy_loop()
        if made is None:
            for c in coros:
                c.close()
            return out, states, ws, None
        result = made.run_until_complete(first)
        made.close()
        reset_event_loop_policy()
        return out, states, ws, result

    got = observe(impl.as_completed)
    want = observe(asyncio.as_completed)
    assert got == want
    out, states, ws, result = got
    if PY314:
        assert got == (("raised", "RuntimeError", (
            "There is no current event loop in thread 'MainThread'.",)),
            [inspect.CORO_CREATED], [], None)
        return
    assert out == ("returned",) and result == 1
    if PY >= (3, 12):
        assert [w[:3] for w in ws] == [
            ("DeprecationWarning", "There is no current event loop",
             __file__)]
    else:
        assert ws == []


def test_outside_running_loop_loop_set_to_none(impl, event_loop_policy_guard):
    asyncio.set_event_loop(None)

    def observe(as_completed):
        out, states, ws, it, first, coros = _outside_loop(
            as_completed, lambda: [_value(1)])
        for c in coros:
            c.close()
        return out, states, ws

    got = observe(impl.as_completed)
    want = observe(asyncio.as_completed)
    assert got == want
    assert got == (("raised", "RuntimeError", (
        "There is no current event loop in thread 'MainThread'.",)),
        [inspect.CORO_CREATED], [])


# ---------------------------------------------------------------------------
# 3.14: call-graph edges (asyncio.capture_call_graph)
# ---------------------------------------------------------------------------

def _later(loop, n, fn, *args):
    """Call fn(*args) from a loop callback n iterations from now."""
    if n <= 0:
        loop.call_soon(fn, *args)
    else:
        loop.call_soon(_later, loop, n - 1, fn, *args)


def _as_completed_graph(as_completed, loop_factory, case):
    loop = loop_factory()
    gw = GraphWatch(loop)

    async def child(n):
        for _ in range(n):
            await asyncio.sleep(0)
        return n

    async def main():
        gw.track("main", asyncio.current_task())
        t1 = gw.track("t1", loop.create_task(child(1)))
        t3 = gw.track("t3", loop.create_task(child(3)))
        fut = gw.track("fut", loop.create_future())
        done = gw.track("done", loop.create_future())
        done.set_result("d")
        gw.each_iteration(10)
        _later(loop, 6, lambda: fut.done() or fut.set_result("f"))
        kwargs = {"timeout": 0} if case == "timeout" else {}
        it = as_completed([t1, t3, fut, done], **kwargs)
        gw.snap("after-call")
        got = []
        try:
            if case == "async-for":
                async for f in it:
                    gw.snap(("got", gw.label(f)))
                    got.append(gw.label(f))
            else:
                for c in it:
                    r = await c
                    gw.snap(("got", r))
                    got.append(r)
        except TimeoutError:
            got.append("timeout")
        gw.snap("after-loop")
        for _ in range(8):
            await asyncio.sleep(0)
        gw.snap("end")
        gw.release()
        return got

    return run(loop, main), gw.log


# async iteration is 3.13's: on 3.11/3.12 the stdlib has none to compare
@pytest.mark.parametrize("case", ["plain", "timeout"] + (
    ["async-for"] if PY313 else []))
def test_call_graph_edges(impl, loop_factory, case):
    """3.14: each future as_completed() waits for is recorded as awaited by
    the task that called it; its edge goes when it is handed to the queue
    (its done-callback) or when the timeout gives up on it."""
    got = _as_completed_graph(impl.as_completed, loop_factory, case)
    want = _as_completed_graph(asyncio.as_completed, loop_factory, case)
    assert got == want
    if not PY314:
        return
    log = dict(want[1])
    edges = dict(log["after-call"])
    assert edges["t1"] == edges["t3"] == edges["fut"] == edges["done"] == [
        "main"]
    assert all(v == [] for v in dict(log["after-loop"]).values())
