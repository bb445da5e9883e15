"""Focused tests of the native gather(limit=, timeout=, eager=)
(docs/extras.md), on fastwait._fastwait directly.  The parity suite
against the pure-Python fallback lives elsewhere; these pin what the C
code does: slots, closing never-started coroutines, outer cancellation,
the deadline on the shared heap, argument checking.
"""

import asyncio
import inspect

import pytest

from conftest import run, run_briefly

# The native implementation only (absent with FASTWAIT_NO_EXTENSIONS=1).
fw = pytest.importorskip("fastwait._fastwait")


class Boom(Exception):
    pass


class Tracker:
    """Children that count how many run at once."""

    def __init__(self):
        self.active = 0
        self.peak = 0
        self.log = []

    async def child(self, i, delay=1.0, result=None, exc=None):
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.log.append(("start", i))
        try:
            await asyncio.sleep(delay)
        finally:
            self.active -= 1
            self.log.append(("end", i))
        if exc is not None:
            raise exc
        return i if result is None else result


def created(coro):
    return inspect.getcoroutinestate(coro) == inspect.CORO_CREATED


def closed(coro):
    return inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


# ---------------------------------------------------------------- limit

@pytest.mark.parametrize("limit", [1, 2, 3, 10])
def test_limit_bounds_concurrency(vloop, limit):
    t = Tracker()

    async def main():
        start = vloop.time()
        res = await fw.gather(*(t.child(i) for i in range(5)), limit=limit)
        return res, vloop.time() - start

    res, elapsed = run(vloop, main)
    assert res == [0, 1, 2, 3, 4]
    assert t.peak == min(limit, 5)
    # Starts in argument order; with limit 1 strictly one after the other.
    assert [i for ev, i in t.log if ev == "start"] == [0, 1, 2, 3, 4]
    assert elapsed == pytest.approx(-(-5 // min(limit, 5)))
    if limit == 1:
        assert t.log == [(ev, i) for i in range(5) for ev in ("start", "end")]


def test_limit_tasks_created_lazily(vloop):
    """At most N of gather's own tasks exist; the next one is created from
    a finished child's completion."""
    seen = []

    async def child(i):
        seen.append(len([t for t in asyncio.all_tasks() if t is not me]))
        await asyncio.sleep(1)
        return i

    async def main():
        nonlocal me, nested
        me = asyncio.current_task()
        nested = asyncio.get_running_loop().get_task_factory() is not None
        return await fw.gather(*(child(i) for i in range(6)), limit=2)

    me = None
    nested = False
    assert run(vloop, main) == list(range(6))
    # The next child starts from the finished one's completion, inside its
    # last step: under an eager task factory its first step runs there,
    # while the finishing Task is not done yet (one more, at that moment).
    assert max(seen) <= 2 + nested


def test_limit_futures_take_no_slot(vloop):
    t = Tracker()

    async def main():
        fut = vloop.create_future()
        vloop.call_later(2.5, fut.set_result, "f")
        g = fw.gather(fut, t.child(0), t.child(1), limit=1)
        return await g, vloop.time()

    start = vloop.time()
    (res, end) = run(vloop, main)
    assert res == ["f", 0, 1]
    assert t.peak == 1
    assert end - start == pytest.approx(2.5)


def test_limit_duplicates_take_one_slot(vloop):
    t = Tracker()

    async def main():
        c = t.child(0)
        return await fw.gather(c, c, t.child(1), limit=1)

    assert run(vloop, main) == [0, 0, 1]
    assert t.peak == 1


def test_limit_early_exception_closes_never_started(vloop):
    t = Tracker()
    rest = []

    async def main():
        rest.extend(t.child(i) for i in range(1, 4))
        g = fw.gather(t.child(0, exc=Boom("x")), *rest, limit=1)
        with pytest.raises(Boom):
            await g
        # Never started: closed at once, no "never awaited" warning.
        assert all(closed(c) for c in rest)

    run(vloop, main)
    assert t.log == [("start", 0), ("end", 0)]


def test_limit_return_exceptions(vloop):
    t = Tracker()

    async def main():
        return await fw.gather(t.child(0, exc=Boom("x")), t.child(1),
                               limit=1, return_exceptions=True)

    res = run(vloop, main)
    assert isinstance(res[0], Boom) and res[1] == 1


def test_limit_outer_cancel(vloop):
    t = Tracker()
    rest = []

    async def main():
        rest.extend(t.child(i) for i in range(1, 4))
        g = fw.gather(t.child(0), *rest, limit=1)
        await asyncio.sleep(0.5)
        assert g.cancel("stop") is True
        assert all(closed(c) for c in rest)
        assert not g.done()  # waits for the cancelled child
        with pytest.raises(asyncio.CancelledError) as info:
            await g
        return info.value

    exc = run(vloop, main)
    assert exc.args == ("stop",)
    assert t.log == [("start", 0), ("end", 0)]


def test_limit_outer_cancel_when_done_is_false(vloop):
    async def main():
        g = fw.gather(asyncio.sleep(0), limit=1)
        await g
        assert g.cancel() is False

    run(vloop, main)


def test_limit_non_awaitable_beyond_limit_rejected_at_call(vloop):
    async def main():
        first = asyncio.sleep(1)
        later = asyncio.sleep(1)
        with pytest.raises(TypeError, match="coroutine or an awaitable"):
            fw.gather(first, later, 42, limit=1)
        # The started child runs on; the never-started one was closed.
        assert closed(later)
        await asyncio.sleep(2)

    run(vloop, main)


def test_limit_awaitables_wrapped_in_turn(vloop):
    class Aw:
        def __init__(self, v):
            self.v = v

        def __await__(self):
            yield from asyncio.sleep(1).__await__()
            return self.v

    async def main():
        return await fw.gather(Aw(1), Aw(2), Aw(3), limit=2), vloop.time()

    start = vloop.time()
    res, end = run(vloop, main)
    assert res == [1, 2, 3]
    assert end - start == pytest.approx(2)


# -------------------------------------------------------------- timeout

@pytest.mark.parametrize("limit", [None, 1])
def test_timeout_fires_raises_timeout_error(vloop, limit):
    t = Tracker()
    coros = []

    async def main():
        coros.extend([t.child(0, 0.5), t.child(1, 5), t.child(2, 5)])
        start = vloop.time()
        with pytest.raises(TimeoutError) as info:
            await fw.gather(*coros, timeout=2, limit=limit)
        assert vloop.time() - start == pytest.approx(2)
        return info.value

    exc = run(vloop, main)
    assert type(exc) is TimeoutError and exc.args == ()
    assert exc.__cause__ is None
    assert t.active == 0
    if limit == 1:
        assert closed(coros[2])


@pytest.mark.parametrize("limit", [None, 2])
def test_timeout_return_exceptions_marks_cut_children(vloop, limit):
    t = Tracker()

    async def main():
        return await fw.gather(
            t.child(0, 0.5), t.child(1, 5), t.child(2, 0.1, exc=Boom()),
            t.child(3, 5), timeout=2, limit=limit, return_exceptions=True)

    res = run(vloop, main)
    assert res[0] == 0
    assert type(res[1]) is TimeoutError
    assert isinstance(res[2], Boom)
    assert type(res[3]) is TimeoutError


def test_timeout_child_ignoring_cancel_keeps_outcome(vloop):
    async def stubborn():
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            await asyncio.sleep(0.5)
            return "kept"

    async def main():
        return await fw.gather(stubborn(), asyncio.sleep(5), timeout=1,
                               return_exceptions=True)

    res = run(vloop, main)
    assert res[0] == "kept" and type(res[1]) is TimeoutError


def test_timeout_late_exception_does_not_end_outer_early(vloop, exc_recorder):
    async def raiser():
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            raise Boom("late")

    async def main():
        with pytest.raises(TimeoutError):
            await fw.gather(raiser(), asyncio.sleep(5), timeout=1)

    run(vloop, main)
    # The late Boom was retrieved: nothing logged.
    assert exc_recorder.take() == []


def test_timeout_not_firing(vloop):
    async def main():
        start = vloop.time()
        res = await fw.gather(asyncio.sleep(1, "a"), asyncio.sleep(2, "b"),
                              timeout=10)
        assert vloop.time() - start == pytest.approx(2)
        return res

    assert run(vloop, main) == ["a", "b"]


def test_timeout_removed_when_outer_done_early(vloop):
    async def main():
        with pytest.raises(Boom):
            await fw.gather(asyncio.sleep(0), _raise_later(1), timeout=3)
        await asyncio.sleep(5)  # past the deadline: nothing happens

    async def _raise_later(d):
        await asyncio.sleep(d)
        raise Boom()

    run(vloop, main)


@pytest.mark.parametrize("timeout", [0, -1, float("-inf")])
def test_timeout_passed_fires_next_iteration(vloop, timeout):
    async def main():
        g = fw.gather(asyncio.sleep(10), timeout=timeout)
        assert not g.done()  # never inside the call
        with pytest.raises(TimeoutError):
            await g

    run(vloop, main)


def test_timeout_inf_never_fires(vloop):
    async def main():
        return await fw.gather(asyncio.sleep(100, 1), timeout=float("inf"))

    assert run(vloop, main) == [1]


def test_timeout_outer_cancel_wins(vloop):
    async def stubborn():
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            await asyncio.sleep(1)
            raise

    async def main():
        g = fw.gather(stubborn(), timeout=1)
        await asyncio.sleep(1.5)  # deadline fired, child still finishing
        assert not g.done()
        assert g.cancel() is True
        with pytest.raises(asyncio.CancelledError):
            await g

    run(vloop, main)


def test_timeout_with_futures_cancels_them(vloop):
    async def main():
        fut = vloop.create_future()
        with pytest.raises(TimeoutError):
            await fw.gather(fut, timeout=1)
        assert fut.cancelled()

    run(vloop, main)


def test_timeout_no_leftover_references(vloop):
    import gc
    import weakref

    async def main():
        g = fw.gather(asyncio.sleep(0.1), timeout=10)
        await g
        return weakref.ref(g)

    ref = run(vloop, main)
    gc.collect()
    assert ref() is None


# ---------------------------------------------------------------- eager

# eager=True needs fw_eager_start (eager.c, with its _eager_start test hook).
needs_eager = pytest.mark.skipif(not hasattr(fw, "_eager_start"),
                                 reason="eager.c not built in")


def test_eager_false_is_the_drop_in(vloop):
    async def main():
        return await fw.gather(asyncio.sleep(0, 1), eager=False, limit=None,
                               timeout=None)

    assert run(vloop, main) == [1]


@needs_eager
def test_eager_finishes_in_call(vloop):
    log = []

    async def quick(i):
        log.append(i)
        return i

    async def main():
        g = fw.gather(quick(1), quick(2), eager=True)
        assert log == [1, 2] and g.done()
        return await g

    assert run(vloop, main) == [1, 2]


@needs_eager
def test_eager_with_limit(vloop):
    t = Tracker()

    async def quick(i):
        return i

    async def main():
        return await fw.gather(quick(0), t.child(1), quick(2), t.child(3),
                               eager=True, limit=1)

    assert run(vloop, main) == [0, 1, 2, 3]
    assert t.peak == 1


@needs_eager
def test_eager_context_copy_per_child(vloop):
    import contextvars

    var = contextvars.ContextVar("var", default="caller")

    async def child(v):
        seen = var.get()
        var.set(v)
        await asyncio.sleep(0)
        return seen, var.get()

    async def main():
        var.set("main")
        res = await fw.gather(child("a"), child("b"), eager=True)
        return res, var.get()

    assert run(vloop, main) == ([("main", "a"), ("main", "b")], "main")


@needs_eager
def test_eager_first_failure_in_argument_order(vloop):
    log = []

    async def fail(i):
        log.append(i)
        raise Boom(i)

    async def main():
        g = fw.gather(fail(1), fail(2), eager=True)
        assert log == [1, 2] and g.done()  # all started, then reported
        with pytest.raises(Boom) as info:
            await g
        return info.value.args

    assert run(vloop, main) == (1,)


@needs_eager
def test_eager_cancelled_error_in_first_step(vloop):
    async def cancels():
        raise asyncio.CancelledError("x")

    async def main():
        return await fw.gather(cancels(), asyncio.sleep(0, 1), eager=True,
                               return_exceptions=True)

    res = run(vloop, main)
    assert type(res[0]) is asyncio.CancelledError and res[1] == 1


@needs_eager
def test_eager_keyboard_interrupt_propagates_and_closes_rest(vloop):
    later = []

    async def ki():
        raise KeyboardInterrupt

    async def main():
        later.append(asyncio.sleep(0))
        with pytest.raises(KeyboardInterrupt):
            fw.gather(ki(), later[0], eager=True)
        assert closed(later[0])

    run(vloop, main)


@needs_eager
def test_eager_timeout(vloop):
    async def main():
        return await fw.gather(asyncio.sleep(0, 0), asyncio.sleep(5),
                               eager=True, timeout=1,
                               return_exceptions=True)

    res = run(vloop, main)
    assert res[0] == 0 and type(res[1]) is TimeoutError


# ------------------------------------------------------------ arguments

@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(limit=1.0), TypeError, "limit must be an int or None, not float"),
    (dict(limit=True), TypeError, "limit must be an int or None, not bool"),
    (dict(limit=0), ValueError, "limit must be >= 1, got 0"),
    (dict(limit=-3), ValueError, "limit must be >= 1, got -3"),
    (dict(timeout="1"), TypeError,
     "timeout must be a number or None, not str"),
    (dict(timeout=False), TypeError,
     "timeout must be a number or None, not bool"),
    (dict(timeout=float("nan")), ValueError, "timeout must not be NaN"),
    (dict(eager="x"), TypeError, "eager must be a bool, not str"),
    (dict(eager=1), TypeError, "eager must be a bool, not int"),
    # order: limit, timeout, eager
    (dict(eager="x", timeout="y", limit=0), ValueError,
     "limit must be >= 1, got 0"),
    (dict(eager="x", timeout="y"), TypeError,
     "timeout must be a number or None, not str"),
])
def test_bad_arguments(kwargs, exc, msg):
    c = asyncio.sleep(0)
    try:
        with pytest.raises(exc) as info:
            fw.gather(c, **kwargs)
        assert str(info.value) == msg
        assert created(c)  # nothing was touched
    finally:
        c.close()


def test_unknown_keyword_is_pythons_error():
    """The TypeError a Python function with gather's signature raises
    (3.14+ adds "Did you mean 'limit'?")."""
    ns = {}
    exec("def gather(*coros_or_futures, return_exceptions=False, limit=None,"
         " timeout=None, eager=False): pass", ns)
    gather = ns["gather"]
    with pytest.raises(TypeError) as want:
        gather(limits=1)
    with pytest.raises(TypeError) as got:
        fw.gather(limits=1)
    assert str(got.value) == str(want.value)
    assert str(got.value).startswith(
        "gather() got an unexpected keyword argument 'limits'")


def test_signature():
    assert str(inspect.signature(fw.gather)) == (
        "(*coros_or_futures, return_exceptions=False, limit=None, "
        "timeout=None, eager=False)")


def test_keywords_not_interned(vloop):
    """Keyword names built at run time (not interned) are recognised too."""
    kw = {"".join(["time", "out"]): 10, "".join(["li", "mit"]): 1,
          "".join(["return_", "exceptions"]): True}

    async def main():
        return await fw.gather(asyncio.sleep(0, 1), **kw)

    assert run(vloop, main) == [1]


def test_limit_lets_finished_tasks_go(vloop):
    """A finished child's Task is not kept until the end (its outcome is)."""
    import gc
    import weakref

    refs = []
    alive_seen = []

    async def child(i):
        refs.append(weakref.ref(asyncio.current_task()))
        gc.collect()
        alive_seen.append(sum(r() is not None for r in refs))
        await asyncio.sleep(1)
        if i == 2:
            raise Boom(i)
        return i

    async def main():
        nonlocal nested
        nested = asyncio.get_running_loop().get_task_factory() is not None
        return await fw.gather(*(child(i) for i in range(6)), limit=2,
                               return_exceptions=True)

    nested = False
    res = run(vloop, main)
    assert res[:2] == [0, 1] and isinstance(res[2], Boom) and res[3:] == [3, 4, 5]
    # The running ones and one finishing; under an eager task factory the
    # next child's first step runs inside the finishing one's last step
    # (test_limit_tasks_created_lazily): one more then.
    assert max(alive_seen) <= 3 + nested
