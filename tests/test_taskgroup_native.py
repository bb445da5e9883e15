"""TaskGroup: concerns of the native implementation.

The parity suite proper lives in test_taskgroup*.py; these tests cover what
a C TaskGroup can get wrong on its own: the wrapped path (no per-child
done-callback) against the callback path (custom task factory), the
bookkeeping that decides in which loop iteration things happen,
subclassing, repr, argument errors, closing refused coroutines, and
references left behind.

Every scenario runs under ``impl`` and under ``asyncio`` on a fresh loop of
the active axes, and the two traces (events with their loop iteration,
outcome, exception-handler calls) must be equal.
"""

import asyncio
import gc
import re
import sys
import weakref

import pytest

import conftest
from conftest import normalize_addresses, run

PY313 = sys.version_info >= (3, 13)


_TASK_NAME = re.compile(r"name='Task-\d+'")


def norm(text):
    return _TASK_NAME.sub("name='Task-N'", normalize_addresses(text))


def describe(exc):
    if isinstance(exc, BaseExceptionGroup):
        return (type(exc).__name__, exc.message,
                sorted((describe(e) for e in exc.exceptions), key=repr),
                exc.__cause__ is None, exc.__suppress_context__)
    return (type(exc).__name__, norm(str(exc)))


def custom_factory(loop, coro, **kwargs):
    """A task factory fastwait does not know: the callback path."""
    return asyncio.Task(coro, loop=loop, **kwargs)


def trace(mod, loop_factory, scenario, *, factory=None):
    loop = loop_factory()
    if factory is not None:
        loop.set_task_factory(factory)
    log = []

    def ev(*what):
        log.append((loop.fw_iteration,) + tuple(
            norm(w) if isinstance(w, str) else w
            for w in what))

    main = loop.create_task(scenario(mod, ev))
    for _ in range(5):
        try:
            loop.run_until_complete(main)
            break
        except asyncio.CancelledError:
            # e.g. 3.12's uncancel() leaves _must_cancel set
            break
        except (KeyboardInterrupt, SystemExit) as exc:
            ev("loop-raised", describe(exc))
            if main.done():
                break
    if main.cancelled():
        log.append(("main", "cancelled"))
    elif main.exception() is not None:
        log.append(("main", "raised", describe(main.exception())))
    else:
        log.append(("main", "returned", main.result()))
    log.append(("handler", [
        tuple(norm(x) if isinstance(x, str) else x
              for x in conftest.describe_context(c))
        for c in loop.fw_exceptions.take()]))
    return log


def check(impl, loop_factory, scenario, **kw):
    got = trace(impl, loop_factory, scenario, **kw)
    want = trace(asyncio, loop_factory, scenario, **kw)
    assert got == want
    return got


FACTORIES = pytest.mark.parametrize(
    "factory", [None, custom_factory], ids=["default", "custom-factory"])


# -- children ----------------------------------------------------------------

async def child(ev, name, steps, outcome="return"):
    try:
        for _ in range(steps):
            await asyncio.sleep(0)
    except asyncio.CancelledError:
        ev("cancelled", name)
        raise
    ev("end", name, outcome)
    if outcome == "return":
        return name
    if outcome == "fail":
        raise ValueError(name)
    if outcome == "cancel":
        raise asyncio.CancelledError(name)
    if outcome == "cancel-self":
        asyncio.current_task().cancel()
        return name
    if outcome == "ki":
        raise KeyboardInterrupt(name)
    raise AssertionError(outcome)


def make_body(plan, *, body_steps=0, body_raises=None, watch=False):
    async def scenario(mod, ev):
        me = asyncio.current_task()
        tasks = []
        try:
            async with mod.TaskGroup() as tg:
                for name, steps, outcome in plan:
                    c = child(ev, name, steps, outcome)
                    try:
                        tasks.append(tg.create_task(c))
                    except RuntimeError as exc:
                        # An eager child failed inside create_task.
                        ev("refused", str(exc))
                        c.close()
                ev("created", repr(tg))
                if watch:
                    async def watcher():
                        for _ in range(8):
                            ev("watch", repr(tg))
                            await asyncio.sleep(0)
                    asyncio.get_running_loop().create_task(watcher())
                for _ in range(body_steps):
                    await asyncio.sleep(0)
                ev("body-end", repr(tg))
                if body_raises is not None:
                    raise body_raises("body")
        except BaseException as exc:
            ev("group-raised", describe(exc), me.cancelling(), repr(tg))
            if not isinstance(exc, (ValueError, BaseExceptionGroup,
                                    asyncio.CancelledError)):
                raise
        else:
            ev("group-done", me.cancelling(), repr(tg))
        states = []
        for t in tasks:
            if t.cancelled():
                states.append("cancelled")
            elif t.exception() is not None:
                states.append(describe(t.exception()))
            else:
                states.append(("result", t.result()))
        ev("states", states)
        return me.cancelling()
    return scenario


PLANS = {
    "all-return-now": [("a", 0, "return"), ("b", 0, "return")],
    "staggered": [("a", 0, "return"), ("b", 1, "return"),
                  ("c", 3, "return")],
    "one-fails": [("a", 2, "return"), ("b", 1, "fail"), ("c", 5, "return")],
    "fail-now": [("a", 0, "fail"), ("b", 0, "return"), ("c", 2, "return")],
    "two-fail": [("a", 1, "fail"), ("b", 1, "fail"), ("c", 4, "return")],
    "child-cancels": [("a", 1, "cancel"), ("b", 2, "return")],
    "cancel-self": [("a", 1, "cancel-self"), ("b", 2, "return")],
    "late-fail": [("a", 6, "fail"), ("b", 1, "return")],
}


@FACTORIES
@pytest.mark.parametrize("plan", sorted(PLANS))
@pytest.mark.parametrize("body_steps", [0, 2, 8])
def test_plans(impl, loop_factory, factory, plan, body_steps):
    check(impl, loop_factory, make_body(PLANS[plan], body_steps=body_steps),
          factory=factory)


@FACTORIES
@pytest.mark.parametrize("plan", ["staggered", "one-fails", "fail-now"])
@pytest.mark.parametrize("exc", [ValueError, asyncio.CancelledError])
def test_body_raises(impl, loop_factory, factory, plan, exc):
    check(impl, loop_factory,
          make_body(PLANS[plan], body_steps=1, body_raises=exc),
          factory=factory)


@FACTORIES
def test_keyboard_interrupt_child(impl, loop_factory, factory):
    check(impl, loop_factory,
          make_body([("a", 1, "ki"), ("b", 3, "return")]), factory=factory)


@FACTORIES
@pytest.mark.parametrize("body_steps", [0, 3])
def test_repr_outside_the_parent(impl, loop_factory, factory, body_steps):
    # repr() read by another task while the parent runs its body: exact.
    check(impl, loop_factory,
          make_body(PLANS["staggered"], body_steps=body_steps + 4,
                    watch=True), factory=factory)


@FACTORIES
@pytest.mark.parametrize("cancel_at", [0, 1, 2, 3, 5])
def test_parent_cancelled_from_outside(impl, loop_factory, factory,
                                       cancel_at):
    async def scenario(mod, ev):
        async def parent():
            me = asyncio.current_task()
            try:
                async with mod.TaskGroup() as tg:
                    tg.create_task(child(ev, "a", 1))
                    tg.create_task(child(ev, "b", 4))
                    await asyncio.sleep(0)
                    ev("body-end", repr(tg))
            finally:
                ev("parent-exit", me.cancelling(), repr(tg))
        t = asyncio.get_running_loop().create_task(parent())
        for _ in range(cancel_at):
            await asyncio.sleep(0)
        t.cancel("outer")
        try:
            await t
        except asyncio.CancelledError as exc:
            ev("parent-cancelled", exc.args)
        return t.cancelled()
    check(impl, loop_factory, scenario, factory=factory)


@FACTORIES
def test_children_spawn_while_exiting(impl, loop_factory, factory):
    async def scenario(mod, ev):
        async def spawner(tg, depth):
            await asyncio.sleep(0)
            # (Not repr(tg): while the parent waits in __aexit__, its
            # tasks=N may drop a finished child up to one iteration early;
            # see test_differences.)
            ev("spawn", depth)
            if depth < 3:
                tg.create_task(spawner(tg, depth + 1))
                tg.create_task(child(ev, f"leaf{depth}", depth))
            return depth
        async with mod.TaskGroup() as tg:
            tg.create_task(spawner(tg, 0))
        ev("done", repr(tg))
        c = child(ev, "late", 0)
        try:
            tg.create_task(c)
        except RuntimeError as exc:
            ev("late", str(exc))
        c.close()
    check(impl, loop_factory, scenario, factory=factory)


@FACTORIES
def test_nested_groups(impl, loop_factory, factory):
    async def scenario(mod, ev):
        async def inner(name, outcome):
            async with mod.TaskGroup() as tg2:
                tg2.create_task(child(ev, name + "1", 1))
                tg2.create_task(child(ev, name + "2", 2, outcome))
            return name
        try:
            async with mod.TaskGroup() as tg:
                tg.create_task(inner("x", "return"))
                tg.create_task(inner("y", "fail"))
                tg.create_task(child(ev, "z", 6))
        except BaseExceptionGroup as eg:
            ev("eg", describe(eg))
        return asyncio.current_task().cancelling()
    check(impl, loop_factory, scenario, factory=factory)


def test_error_after_parent_done_reports(impl, loop_factory):
    # The group is entered but never exited; its parent finishes and then a
    # child fails: the loop's exception handler hears of it.
    async def scenario(mod, ev):
        box = {}

        async def parent():
            tg = mod.TaskGroup()
            await tg.__aenter__()
            box["t"] = tg.create_task(child(ev, "a", 2, "fail"))
            box["tg"] = tg
        await asyncio.get_running_loop().create_task(parent())
        for _ in range(4):
            await asyncio.sleep(0)
        ev("repr", repr(box["tg"]))
        return describe(box["t"].exception())
    check(impl, loop_factory, scenario)


@FACTORIES
def test_user_callbacks_and_awaiting_children(impl, loop_factory, factory):
    # The user sees the Task: callbacks, await, cancel, its own outcome.
    async def scenario(mod, ev):
        async with mod.TaskGroup() as tg:
            t1 = tg.create_task(child(ev, "a", 1))
            t2 = tg.create_task(child(ev, "b", 3))
            t1.add_done_callback(lambda t: ev("cb", t.result()))
            ev("await", await t1)
            t2.cancel("by user")
        ev("t2", t2.cancelled(), repr(tg))
    check(impl, loop_factory, scenario, factory=factory)


# -- the wrapped path only where it applies ----------------------------------

def test_wrapped_children_run_a_wrapper(impl, loop):
    async def main():
        async with impl.TaskGroup() as tg:
            t = tg.create_task(child(lambda *a: None, "a", 1))
            await asyncio.sleep(0)
            coro = t.get_coro()
        return coro
    coro = run(loop, main)
    wrapped = conftest.fastwait_wraps_children(impl, loop)
    assert (type(coro).__name__ == "CoroutineWrapper") == wrapped
    assert coro.__qualname__ == "child"


def test_custom_factory_gets_the_coroutine(impl, loop):
    seen = []

    def factory(loop, coro, **kwargs):
        seen.append(type(coro).__name__)
        return asyncio.Task(coro, loop=loop, **kwargs)
    loop.set_task_factory(factory)

    async def main():
        async with impl.TaskGroup() as tg:
            tg.create_task(child(lambda *a: None, "a", 1))
    run(loop, main)
    assert seen == ["coroutine", "coroutine"]


# -- subclassing, repr, errors -----------------------------------------------

def test_subclass_overrides_create_task(impl, loop):
    class Collecting(impl.TaskGroup):
        def __init__(self):
            super().__init__()
            self.results = []

        def create_task(self, coro, **kwargs):
            task = super().create_task(coro, **kwargs)
            task.add_done_callback(
                lambda t: self.results.append(t.result()))
            return task

    async def main():
        async with Collecting() as tg:
            assert type(tg) is Collecting
            for i in range(3):
                tg.create_task(child(lambda *a: None, i, i), name=f"n{i}")
        return sorted(tg.results), repr(tg)
    assert run(loop, main) == ([0, 1, 2], "<TaskGroup entered>")


def test_instances_take_attributes_and_weakrefs(impl):
    tg = impl.TaskGroup()
    tg.extra = 1
    assert tg.extra == 1
    r = weakref.ref(tg)
    del tg
    gc.collect()
    assert r() is None


def test_init_arguments(impl):
    with pytest.raises(TypeError) as info:
        impl.TaskGroup(1)
    assert str(info.value) == (
        "TaskGroup.__init__() takes 1 positional argument but 2 were given")
    with pytest.raises(TypeError) as info:
        impl.TaskGroup(x=1)
    assert "unexpected keyword argument 'x'" in str(info.value)


def test_create_task_keywords(impl, loop):
    async def main():
        out = []
        async with impl.TaskGroup() as tg:
            c = child(lambda *a: None, "a", 0)
            try:
                tg.create_task(c, bogus=1)
            except TypeError as exc:
                out.append(str(exc))
            try:
                tg.create_task()
            except TypeError as exc:
                out.append(str(exc))
            t = tg.create_task(coro=c, name="nm")
            out.append(t.get_name())
            import contextvars
            t2 = tg.create_task(child(lambda *a: None, "b", 0),
                                context=contextvars.copy_context())
        out.append(t2.result())
        return out
    got = run(loop, main)
    if sys.version_info >= (3, 14):
        # create_task(coro, **kwargs): the loop's create_task (or Task())
        # rejects the keyword.
        assert got[0].endswith("got an unexpected keyword argument 'bogus'")
        assert not got[0].startswith("TaskGroup.")
    else:
        assert got[0].startswith("TaskGroup.create_task() got an unexpected "
                                 "keyword argument 'bogus'")
    assert got[1] == ("TaskGroup.create_task() missing 1 required "
                      "positional argument: 'coro'")
    assert got[2:] == ["nm", "b"]


def test_aexit_arguments(impl):
    tg = impl.TaskGroup()
    with pytest.raises(TypeError) as info:
        tg.__aexit__(None, None)
    assert str(info.value) == ("TaskGroup.__aexit__() missing 1 required "
                               "positional argument: 'tb'")
    with pytest.raises(TypeError) as info:
        tg.__aenter__(1)
    assert str(info.value) == (
        "TaskGroup.__aenter__() takes 1 positional argument but 2 were given")


@pytest.mark.parametrize("state", ["new", "finished", "aborting"])
def test_refused_coroutine_closed_on_313(impl, loop, state):
    async def main():
        tg = impl.TaskGroup()
        if state == "finished":
            async with tg:
                pass
        elif state == "aborting":
            await tg.__aenter__()
            tg.create_task(child(lambda *a: None, "x", 0, "fail"))
            for _ in range(3):
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError:
                    pass
        c = child(lambda *a: None, "a", 0)
        with pytest.raises(RuntimeError) as info:
            tg.create_task(c)
        closed = c.cr_frame is None
        if not closed:
            c.close()
        if state == "aborting":
            try:
                await tg.__aexit__(None, None, None)
            except BaseExceptionGroup:
                pass
        return normalize_addresses(str(info.value)), closed
    msg, closed = run(loop, main)
    assert closed is PY313
    assert msg == {
        "new": "TaskGroup <TaskGroup> has not been entered",
        "finished": "TaskGroup <TaskGroup entered> is finished",
        "aborting": "TaskGroup <TaskGroup errors=1 cancelling> "
                    "is shutting down",
    }[state]


def test_refused_non_coroutine_on_313(impl):
    tg = impl.TaskGroup()
    exc_type = AttributeError if PY313 else RuntimeError
    with pytest.raises(exc_type):
        tg.create_task(123)


def test_aenter_errors(impl, loop):
    async def main():
        tg = impl.TaskGroup()
        async with tg:
            with pytest.raises(RuntimeError) as info:
                await tg.__aenter__()
        return str(info.value)
    assert run(loop, main) == ("TaskGroup <TaskGroup entered> has already "
                               "been entered")
    with pytest.raises(RuntimeError) as info:
        impl.TaskGroup().__aenter__().send(None)
    assert str(info.value) == "no running event loop"


def test_never_awaited_warning(impl):
    tg = impl.TaskGroup()
    with pytest.warns(RuntimeWarning,
                      match="coroutine 'TaskGroup.__aenter__' was never "
                            "awaited"):
        tg.__aenter__()
        gc.collect()
    with pytest.warns(RuntimeWarning,
                      match="coroutine 'TaskGroup.__aexit__' was never "
                            "awaited"):
        tg.__aexit__(None, None, None)
        gc.collect()


# -- references ---------------------------------------------------------------

@pytest.mark.parametrize("outcome", ["return", "fail"])
def test_no_cycles_left(impl, loop, outcome):
    async def main():
        try:
            async with impl.TaskGroup() as tg:
                for i in range(3):
                    tg.create_task(child(lambda *a: None, i, i % 2,
                                         outcome if i == 1 else "return"))
        except BaseExceptionGroup as eg:
            del eg
        return weakref.ref(tg)
    gc.collect()
    gc.disable()
    try:
        ref = run(loop, main)
        if getattr(impl, "NATIVE", False):
            # The stdlib keeps _parent_task after a failed group: the
            # parent's frame, kept alive by the traceback, closes a cycle
            # through it.  fastwait drops the parent task on exit.
            assert ref() is None
            assert gc.collect() == 0
    finally:
        gc.enable()


@pytest.mark.parametrize("plan", ["staggered", "one-fails"])
def test_factory_changes_inside_the_group(impl, loop_factory, plan):
    # Wrapped and callback children in one group: the factory is read at
    # every create_task.
    async def scenario(mod, ev):
        loop = asyncio.get_running_loop()
        old = loop.get_task_factory()
        tasks = []
        try:
            async with mod.TaskGroup() as tg:
                for k, (name, steps, outcome) in enumerate(PLANS[plan]):
                    loop.set_task_factory(custom_factory if k % 2 else old)
                    tasks.append(tg.create_task(child(ev, name, steps,
                                                      outcome)))
                loop.set_task_factory(old)
                ev("body-end", repr(tg))
        except BaseExceptionGroup as eg:
            ev("eg", describe(eg))
        finally:
            loop.set_task_factory(old)
        return [t.cancelled() or describe(t.exception() or Exception())
                for t in tasks]
    check(impl, loop_factory, scenario)


def test_task_names_and_counter(impl, loop_factory):
    # Default names come from asyncio's global counter: a named child must
    # use up a number exactly where the stdlib's create_task does.
    def observe(mod):
        loop = loop_factory()

        async def main():
            base = asyncio.current_task().get_name()
            async with mod.TaskGroup() as tg:
                a = tg.create_task(child(lambda *a: None, "a", 0))
                b = tg.create_task(child(lambda *a: None, "b", 0), name="bee")
                c = tg.create_task(child(lambda *a: None, "c", 0))
            d = loop.create_task(child(lambda *a: None, "d", 0))
            await d

            def num(t):
                n = t.get_name()
                return n if not n.startswith("Task-") else int(n[5:])
            start = num(asyncio.current_task())
            return [num(t) if isinstance(num(t), str) else num(t) - start
                    for t in (a, b, c, d)], base.startswith("Task-")
        return run(loop, main)
    assert observe(impl) == observe(asyncio)


def test_create_task_on_a_closed_loop(impl, loop_factory):
    loop = loop_factory()
    box = {}

    async def main():
        tg = impl.TaskGroup()
        await tg.__aenter__()
        box["tg"] = tg
    run(loop, main)
    loop.close()
    c = child(lambda *a: None, "a", 0)
    with pytest.raises(RuntimeError) as info:
        box["tg"].create_task(c)
    assert str(info.value) == "Event loop is closed"
    assert c.cr_frame is not None  # not closed (the stdlib's loop does not)
    c.close()


def test_debug_mode_source_traceback(impl, loop_factory):
    loop = loop_factory()
    loop.set_debug(True)

    async def main():
        async with impl.TaskGroup() as tg:
            t = tg.create_task(child(lambda *a: None, "a", 1))
        tb = t._source_traceback
        return [f.name for f in tb] if tb else None
    got = run(loop, main)
    # The caller's frames are there; the stdlib's last one is
    # TaskGroup.create_task in asyncio/taskgroups.py (no such frame in C).
    assert got is not None and "main" in got
