"""Parity tests for the private names of ``asyncio.TaskGroup`` that real
code uses (README: "Private attributes provided for compatibility").

Each scenario is written in the style of code found in the wild (the
research notes name the projects): a subclass overriding ``_on_task_done``
or ``_abort``, outside code reading ``_tasks``/``_errors``, and so on.  It
runs with ``impl.TaskGroup`` and with ``asyncio.TaskGroup`` as the base,
each on a fresh loop of the active axes, and returns plain data (results,
exception groups, cancellation counts, exception-handler calls) that must
be equal.  Where the stdlib's order is arbitrary (its abort cancels in set
order) the scenarios record sets or sorted lists.

The last tests pin that a group which never touches these names keeps
fastwait's fast path (its wrapped children carry no done-callback).
"""

import asyncio

import pytest

from conftest import PY, close_loop, describe_context, new_loop, run


def desc(exc):
    """An exception as plain data (exception groups recursively)."""
    if isinstance(exc, BaseExceptionGroup):
        return (type(exc).__name__, exc.message,
                sorted((desc(e) for e in exc.exceptions), key=repr))
    return (type(exc).__name__, exc.args)


def both(impl, scenario, **loop_kw):
    """``await scenario(TaskGroup)`` with ``impl.TaskGroup`` and with
    ``asyncio.TaskGroup``; the outcomes (returned value or exception, and
    the exception-handler calls) must be equal.  Returns the outcome."""

    def once(TaskGroup):
        loop = new_loop(**loop_kw)
        try:
            try:
                out = ("ok", run(loop, scenario(TaskGroup)))
            except BaseException as e:  # noqa: BLE001 - compared as data
                out = ("raised", desc(e))
            recs = [describe_context(c)[:2]
                    for c in loop.fw_exceptions.take()]
        finally:
            close_loop(loop)
        return out, recs

    got = once(impl.TaskGroup)
    want = once(asyncio.TaskGroup)
    assert got == want
    return got


async def value(x, steps=1):
    for _ in range(steps):
        await asyncio.sleep(0)
    return x


async def fail(exc, steps=1):
    for _ in range(steps):
        await asyncio.sleep(0)
    raise exc


async def forever():
    await asyncio.sleep(3600)


def state(t):
    if not t.done():
        return "pending"
    if t.cancelled():
        return "cancelled"
    if t.exception() is not None:
        return ("failed", type(t.exception()).__name__)
    return ("result", t.result())


# ---------------------------------------------------------------------------
# Subclasses
# ---------------------------------------------------------------------------

def test_on_task_done_override_collects_results(impl):
    """pulsefire / ForgivingTaskGroup: _on_task_done overridden, super()
    called; the base registers the override as each child's callback."""

    async def scenario(TG):
        class Collecting(TG):
            def __init__(self):
                super().__init__()
                self.results = []
                self.seen = 0

            def _on_task_done(self, task):
                self.seen += 1
                if not task.cancelled() and task.exception() is None:
                    self.results.append(task.result())
                super()._on_task_done(task)

        async with Collecting() as g:
            for i in range(5):
                g.create_task(value(i, steps=i))
            g.create_task(value("x", steps=0))
        return sorted(map(str, g.results)), g.seen, len(g._tasks)

    assert both(impl, scenario)[0] == (
        "ok", (["0", "1", "2", "3", "4", "x"], 6, 0))


def test_on_task_done_override_with_failure(impl):
    async def scenario(TG):
        seen = []

        class Sub(TG):
            def _on_task_done(self, task):
                seen.append(state(task))
                return super()._on_task_done(task)

        me = asyncio.current_task()
        try:
            async with Sub() as g:
                a = g.create_task(value(1))
                b = g.create_task(fail(ValueError("v"), steps=2))
                c = g.create_task(forever())
                await asyncio.sleep(3600)
        except BaseExceptionGroup as e:
            return (desc(e), sorted(map(repr, seen)), state(a), state(b),
                    state(c), me.cancelling())

    both(impl, scenario)


def test_abort_noop_lambda(impl):
    """`_abort = lambda self: None` (a class attribute): a failing child
    cancels the parent but not its siblings."""

    async def scenario(TG):
        class Forgiving(TG):
            _abort = lambda self: None  # noqa: E731

        me = asyncio.current_task()
        log = []
        try:
            async with Forgiving() as g:
                g.create_task(fail(ValueError("a")))
                slow = g.create_task(value("slow", steps=5))
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    log.append(("body cancelled", me.cancelling()))
                    raise
        except BaseExceptionGroup as e:
            log.append(desc(e))
        log.append(state(slow))
        log.append(me.cancelling())
        return log

    assert both(impl, scenario)[0][1][-2] == ("result", "slow")


def test_abort_conditional_override(impl):
    """extraasync / never_abort: _abort overridden, super()._abort() on a
    condition; hasattr(TaskGroup, "_abort") as the feature check."""

    async def scenario(TG):
        assert hasattr(TG, "_abort")

        class Sub(TG):
            def __init__(self, default_abort):
                super().__init__()
                self.default_abort = default_abort
                self.aborts = 0

            def _abort(self):
                self.aborts += 1
                if self.default_abort:
                    return super()._abort()
                return None

        out = []
        for default in (True, False):
            try:
                async with Sub(default) as g:
                    g.create_task(fail(ValueError("x")))
                    other = g.create_task(value(2, steps=4))
            except BaseExceptionGroup as e:
                out.append((default, desc(e), state(other), g.aborts,
                            g._aborting))
        return out

    both(impl, scenario)


def test_abort_called_from_outside(impl):
    """GlobalTaskGroup.abort() = super()._abort(); x3dh:
    taskgroup._abort() as "cancel everything" (no parent cancel)."""

    async def scenario(TG):
        class Global(TG):
            def abort(self):
                super()._abort()

        out = []
        for cls in (TG, Global):
            me = asyncio.current_task()
            async with cls() as g:
                ts = [g.create_task(forever()) for _ in range(3)]
                done = g.create_task(value(1, steps=0))
                await asyncio.sleep(0)
                (g.abort if cls is Global else g._abort)()
                out.append((g._aborting, me.cancelling()))
            out.append(([state(t) for t in ts], state(done),
                         me.cancelling()))
        return out

    both(impl, scenario)


def test_parent_cancel_requested_in_init(impl):
    """three.js downloader: `_parent_cancel_requested = True` in __init__
    and a no-op _abort: an error cancels nothing."""

    async def scenario(TG):
        class Resilient(TG):
            def __init__(self):
                super().__init__()
                self._parent_cancel_requested = True

            def _abort(self):
                return None

        me = asyncio.current_task()
        try:
            async with Resilient() as g:
                g.create_task(fail(ValueError("one")))
                rest = [g.create_task(value(i, steps=3)) for i in range(3)]
                await value(None, steps=5)
                body = ("body finished", me.cancelling())
        except BaseExceptionGroup as e:
            return body, desc(e), [state(t) for t in rest], me.cancelling()

    both(impl, scenario)


def test_parent_cancel_requested_toggled_around_super(impl):
    """ForgivingTaskGroup v3: the flag saved, set and restored around
    super()._on_task_done(task); _is_base_error overridden with super."""

    async def scenario(TG):
        class Forgiving(TG):
            def _is_base_error(self, exc):
                self.checked = getattr(self, "checked", 0) + 1
                return super()._is_base_error(exc)

            def _on_task_done(self, task):
                saved = self._parent_cancel_requested
                self._parent_cancel_requested = True
                super()._on_task_done(task)
                self._parent_cancel_requested = saved

        me = asyncio.current_task()
        try:
            async with Forgiving() as g:
                g.create_task(fail(ValueError("a")))
                ok = g.create_task(value(7, steps=3))
                await value(None, steps=4)
                flag = g._parent_cancel_requested
        except BaseExceptionGroup as e:
            return (desc(e), state(ok), flag, g.checked, me.cancelling())

    both(impl, scenario)


def test_is_base_error_override(impl):
    """A subclass that treats one more exception type as a "base error"
    (the group re-raises it bare)."""

    async def scenario(TG):
        class Sub(TG):
            def _is_base_error(self, exc):
                return isinstance(exc, LookupError) or \
                    super()._is_base_error(exc)

        try:
            async with Sub() as g:
                g.create_task(fail(KeyError("k")))
                await asyncio.sleep(3600)
        except BaseException as e:
            return desc(e), asyncio.current_task().cancelling()

    assert both(impl, scenario)[0][1][0] == ("KeyError", ("k",))


def test_subclass_replaces_tasks_and_errors(impl):
    """imbue's PropagatingTaskGroup: the private attributes assigned in
    __init__ after super().__init__(); the base adds to that _tasks."""

    async def scenario(TG):
        class Propagating(TG):
            def __init__(self):
                super().__init__()
                self._entered = False
                self._exiting = False
                self._aborting = False
                self._loop = None
                self._parent_task = None
                self._parent_cancel_requested = False
                self._tasks = set()
                self._errors = []
                self._base_error = None
                self._on_completed_fut = None

        g = Propagating()
        mine = g._tasks
        async with g:
            ts = [g.create_task(value(i, steps=i)) for i in range(3)]
            sizes = [len(mine)]
            await asyncio.sleep(0)
            sizes.append(len(mine))
        return sizes, len(mine), [state(t) for t in ts], g._errors

    both(impl, scenario)


def test_repr_reads_assigned_attributes(impl):
    """taskgroup_collect's tests: attributes written, repr() reports them."""

    async def scenario(TG):
        tg = TG()
        tg._entered = True
        tg._aborting = True
        tg._tasks = {object()}
        tg._errors = [RuntimeError()]
        r1 = repr(tg)
        tg._aborting = False
        r2 = repr(tg)
        return r1, r2

    out = both(impl, scenario)
    assert out[0] == ("ok", ("<TaskGroup tasks=1 errors=1 cancelling>",
                             "<TaskGroup tasks=1 errors=1 entered>"))


# ---------------------------------------------------------------------------
# Outside code reading and mutating the private attributes
# ---------------------------------------------------------------------------

def test_tasks_len_polled(impl):
    """dan / downloader: len(group._tasks) read while children run."""

    async def scenario(TG):
        sizes = []
        async with TG() as g:
            for i in range(4):
                g.create_task(value(i, steps=i))
            for _ in range(6):
                sizes.append(len(g._tasks))
                await asyncio.sleep(0)
        sizes.append(len(g._tasks))
        return sizes

    both(impl, scenario)


def test_tasks_read_after_children_ran(impl):
    """_tasks first read when some children are finished and others not:
    the switch moves the running ones into the set, and the finished ones
    whose _on_task_done has not run yet (asyncio's set still holds them)."""

    async def scenario(TG):
        async with TG() as g:
            ts = [g.create_task(value(i, steps=i)) for i in range(6)]
            await value(None, steps=2)
            live = g._tasks
            first = sorted((ts.index(t), t.done()) for t in live)
            await asyncio.sleep(0)
            second = len(live)
            more = g.create_task(value(9, steps=1))
            third = len(live)
            await asyncio.sleep(0)
            fourth = len(live), more in live
        return (first, second, third, fourth, len(live),
                [state(t) for t in ts + [more]])

    both(impl, scenario)


def test_tasks_iterate_and_cancel(impl):
    """The most common use: for t in tg._tasks: t.cancel() (from the body
    and from another coroutine)."""

    async def scenario(TG):
        me = asyncio.current_task()
        async with TG() as g:
            ts = [g.create_task(forever()) for _ in range(3)]

            async def stopper():
                await asyncio.sleep(0)
                for t in list(g._tasks):
                    if t is not asyncio.current_task():
                        t.cancel()

            st = g.create_task(stopper())
        return [state(t) for t in ts], state(st), me.cancelling()

    both(impl, scenario)


def test_tasks_add_done_callback(impl):
    """Gemini AudioLoop / dan: iterate _tasks and add a done-callback."""

    async def scenario(TG):
        seen = []
        async with TG() as g:
            for i in range(3):
                g.create_task(value(i, steps=i + 1))
            for t in g._tasks:
                t.add_done_callback(lambda t: seen.append(t.result()))
        return sorted(seen)

    both(impl, scenario)


def test_tasks_pop_and_discard(impl):
    """`.pop()` of a child to await it elsewhere; pulsefire's
    `.discard(task)` + `_on_completed_fut.set_result(True)` in an
    _on_task_done override that swallows errors."""

    async def scenario(TG):
        out = []
        async with TG() as g:
            g.create_task(value("popped", steps=2))
            t = g._tasks.pop()
            out.append((len(g._tasks), await asyncio.wait_for(t, 1)))

        class Swallowing(TG):
            def __init__(self):
                super().__init__()
                self._exceptions = []

            def _on_task_done(self, task):
                if not task.cancelled() and task.exception() is not None:
                    self._exceptions.append(task.exception())
                    self._tasks.discard(task)
                    fut = self._on_completed_fut
                    if fut is not None and not self._tasks:
                        if not fut.done():
                            fut.set_result(True)
                    return
                return super()._on_task_done(task)

        async with Swallowing() as g:
            g.create_task(fail(ValueError("swallowed"), steps=1))
            ok = g.create_task(value(3, steps=3))
            g.create_task(fail(KeyError("late"), steps=5))
        out.append((state(ok), [desc(e) for e in g._exceptions]))
        return out

    both(impl, scenario)


def test_errors_cleared(impl):
    """NapCat bot: a long-running forgiving group clears the errors it
    collected, so it exits without raising."""

    async def scenario(TG):
        class Forgiving(TG):
            def _abort(self):
                pass

        async with Forgiving() as g:
            g._parent_cancel_requested = True
            g.create_task(fail(ValueError("x")))
            await value(None, steps=3)
            before = [desc(e) for e in g._errors]
            if g._errors:
                g._errors.clear()
        return before, g._errors

    both(impl, scenario)


def test_instance_on_task_done(impl):
    """keyword-extraction scripts: tg._on_task_done = f, which calls the
    unbound TaskGroup._on_task_done(tg, task)."""

    async def scenario(TG):
        done = []
        async with TG() as tg:
            def new_on_task_done(task):
                TG._on_task_done(tg, task)
                done.append(task.result())

            tg._on_task_done = new_on_task_done
            for i in range(4):
                tg.create_task(value(i, steps=4 - i))
        return done

    both(impl, scenario)


def test_scalars_read(impl):
    """_entered (async-wrapper), _exiting (downloader), _parent_task
    (PRIME kernel), _loop, _aborting, _base_error, _on_completed_fut."""

    async def scenario(TG):
        me = asyncio.current_task()
        loop = asyncio.get_running_loop()
        g = TG()

        def snap():
            return (g._entered, g._exiting, g._aborting,
                    g._parent_task is me, g._loop is loop,
                    g._base_error, g._on_completed_fut is None,
                    g._parent_cancel_requested, list(g._errors or ()))

        out = [snap()]
        async with g:
            out.append(snap())
            g.create_task(value(1))
        out.append(snap())
        return out

    both(impl, scenario)


# ---------------------------------------------------------------------------
# The fast path stays when the names are not touched
# ---------------------------------------------------------------------------

def callbacks(task):
    return len(task._callbacks or ())


@pytest.mark.parametrize("touch", ["nothing", "scalars", "tasks"])
def test_fast_path_kept(touch):
    """On asyncio's own loop with no task factory, fastwait's children of a
    group that never reads _tasks (nor installs a hook) carry no
    done-callback (they are wrapped children); reading _tasks switches the
    group to the stdlib's algorithm, one done-callback per child."""
    import fastwait

    async def scenario():
        async with fastwait.TaskGroup() as g:
            a = g.create_task(value(1, steps=2))
            if touch == "scalars":
                (g._entered, g._exiting, g._aborting, g._loop,
                 g._parent_task, g._errors, g._parent_cancel_requested,
                 g._base_error, g._on_completed_fut)
            elif touch == "tasks":
                assert g._tasks == {a}
            b = g.create_task(value(2, steps=2))
            return callbacks(a), callbacks(b)

    loop = new_loop(kind="asyncio", tasks="lazy")
    try:
        got = run(loop, scenario())
    finally:
        close_loop(loop)
    assert got == ((1, 1) if touch == "tasks" else (0, 0))


def test_plain_subclass_keeps_fast_path():
    """A subclass that only adds attributes (aiotools, quattro) is not
    switched: no hook of its own."""
    import fastwait

    class Named(fastwait.TaskGroup):
        def __init__(self, *, name=None):
            super().__init__()
            self._name = name
            self._semaphore = None

    class Hooked(fastwait.TaskGroup):
        def _on_task_done(self, task):
            super()._on_task_done(task)

    async def scenario(cls):
        async with cls() as g:
            t = g.create_task(value(1, steps=1))
            return callbacks(t)

    for cls, want in ((Named, 0), (Hooked, 1)):
        loop = new_loop(kind="asyncio", tasks="lazy")
        try:
            assert run(loop, scenario(cls)) == want
        finally:
            close_loop(loop)


def test_bad_assignments():
    import fastwait

    g = fastwait.TaskGroup()
    with pytest.raises(TypeError):
        g._tasks = [1]
    with pytest.raises(TypeError):
        g._errors = ()
    g._errors = None
    assert g._errors is None
    g._loop = None
    assert g._loop is None


# ---------------------------------------------------------------------------
# The switch at awkward moments, and the lifetime of a switched group
# ---------------------------------------------------------------------------

def test_tasks_read_inside_a_childs_first_step(impl):
    """A child reads _tasks before its first await: on the eager axis that
    is inside create_task (the child is not in the set yet), and a child
    that finishes there too is processed as the running version does."""

    async def scenario(TG):
        seen = []

        async def reader(i, steps):
            seen.append((i, len(g._tasks)))
            for _ in range(steps):
                await asyncio.sleep(0)
            return i

        async with TG() as g:
            a = g.create_task(reader(0, 2))
            b = g.create_task(reader(1, 0))
            c = g.create_task(reader(2, 1))
            seen.append(("body", len(g._tasks)))
            await asyncio.sleep(0)
            seen.append(("body", len(g._tasks)))
        return seen, [state(t) for t in (a, b, c)], len(g._tasks)

    both(impl, scenario)


def test_hooked_subclass_child_failing_at_once(impl):
    """A child of a hooked subclass that fails in its first step (inside
    create_task on the eager axis)."""

    async def scenario(TG):
        calls = []

        class Sub(TG):
            def _on_task_done(self, task):
                calls.append(state(task))
                super()._on_task_done(task)

        async def boom():
            raise ValueError("now")

        me = asyncio.current_task()
        try:
            async with Sub() as g:
                other = g.create_task(value(1, steps=2))
                g.create_task(boom())
                await asyncio.sleep(3600)
        except BaseExceptionGroup as e:
            return desc(e), sorted(map(repr, calls)), state(other), \
                me.cancelling()

    both(impl, scenario)


def test_switched_group_is_collected(impl):
    """A group in stdlib mode (its children hold `self._on_task_done`,
    a bound method) is freed by the garbage collector like asyncio's."""
    import gc
    import weakref

    async def scenario(TG):
        class Sub(TG):
            def _on_task_done(self, task):
                super()._on_task_done(task)

        refs = []
        for cls in (TG, Sub):
            g = cls()
            async with g:
                g.create_task(value(1))
                len(g._tasks)
            refs.append(weakref.ref(g))
            del g
        gc.collect()
        return [r() is None for r in refs]

    assert both(impl, scenario)[0] == ("ok", [True, True])
