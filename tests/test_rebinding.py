"""Names the stdlib's primitives look up at call time are looked up at call
time by fastwait too.

asyncio's ``timeouts.py``, ``taskgroups.py`` and ``tasks.py`` call
``tasks.current_task()``, a global of ``asyncio.tasks`` read at every call:
a program or a test may rebind it (CPython's own tests rebind it to
``tasks._py_current_task`` to run the primitives on the pure-Python Task,
which on 3.14+ only that function can see).  fastwait must follow the
rebinding exactly as the stdlib does.
"""

import asyncio

import pytest

from conftest import run


@pytest.fixture
def rebound_current_task(monkeypatch):
    """asyncio.tasks.current_task replaced by a recording wrapper; the test
    sets ``answer`` to what it returns (None: "no task")."""
    state = {"calls": 0, "answer": None}

    def current_task(loop=None):
        state["calls"] += 1
        return state["answer"]

    monkeypatch.setattr(asyncio.tasks, "current_task", current_task)
    return state


def test_timeout_asks_the_rebound_current_task(impl, loop, rebound_current_task):
    async def main():
        try:
            async with impl.timeout(10):
                pass
        except RuntimeError as e:
            return str(e)

    assert run(loop, main()) == "Timeout should be used inside a task"
    assert rebound_current_task["calls"] == 1


def test_taskgroup_asks_the_rebound_current_task(impl, loop, rebound_current_task):
    async def main():
        try:
            async with impl.TaskGroup():
                pass
        except RuntimeError as e:
            return str(e)

    assert run(loop, main()) == "TaskGroup <TaskGroup> cannot determine the parent task"
    assert rebound_current_task["calls"] == 1


def test_timeout_uses_the_task_the_rebound_function_names(impl, loop, rebound_current_task):
    """The scope cancels the task that ``tasks.current_task()`` named, not
    the one asyncio's C registry knows."""
    async def victim():
        await asyncio.sleep(3600)

    async def main():
        other = asyncio.get_running_loop().create_task(victim())
        await asyncio.sleep(0)
        rebound_current_task["answer"] = other
        cm = impl.timeout(0)
        await cm.__aenter__()
        rebound_current_task["answer"] = None
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return other.cancelled(), cm.expired()

    assert run(loop, main()) == (True, True)


HAS_GRAPH = hasattr(asyncio, "future_add_to_awaited_by")  # 3.14+


def _graph_calls(impl, loop, monkeypatch, body):
    """The calls body makes of asyncio.futures' two edge functions, rebound
    to recorders that forward to the originals; objects as labels."""
    calls = []
    labels = {}

    def label(obj):
        return labels.setdefault(id(obj), f"#{len(labels)}")

    futures = asyncio.futures
    with monkeypatch.context() as patch:
        for name in ("future_add_to_awaited_by", "future_discard_from_awaited_by"):
            original = getattr(futures, name, None)

            def recorder(fut, waiter, _name=name, _original=original):
                calls.append((_name, label(fut), label(waiter)))
                return _original(fut, waiter)

            patch.setattr(futures, name, recorder, raising=False)
        run(loop, body(impl, label))
    return calls


@pytest.mark.parametrize("primitive", ["gather", "wait", "shield", "as_completed"])
def test_graph_edges_go_through_the_rebound_functions(
        impl, loop_factory, monkeypatch, primitive):
    """Where the stdlib calls futures.future_add_to_awaited_by and
    future_discard_from_awaited_by, fastwait calls whatever those names are
    bound to at that moment, with the same arguments, in the same order.
    (Before 3.14 neither implementation records edges: no call at all.)"""

    async def child(i):
        await asyncio.sleep(0)
        return i

    async def body(impl, label):
        label(asyncio.current_task())
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(child(i)) for i in range(3)]
        for t in tasks:
            label(t)
        if primitive == "gather":
            await impl.gather(*tasks)
        elif primitive == "wait":
            await impl.wait(tasks)
        elif primitive == "shield":
            await impl.shield(tasks[0])
            await impl.gather(*tasks)
        else:
            for f in impl.as_completed(tasks):
                await f

    def trace(module):
        return _graph_calls(module, loop_factory(), monkeypatch, body)

    got = trace(impl)
    want = trace(asyncio)
    if primitive in ("wait", "as_completed"):
        # The stdlib walks set(fs): the order of its calls is hash order,
        # which varies in asyncio itself (difference 3); which calls are
        # made is the same.
        got, want = sorted(got), sorted(want)
    assert got == want
    assert bool(got) == HAS_GRAPH  # the stdlib records edges on 3.14+


def test_taskgroup_children_are_made_with_the_rebound_task_class(
        impl, loop_factory, monkeypatch):
    """asyncio's loop makes a task with tasks.Task as it is bound when
    create_task is called; so does fastwait's TaskGroup where it makes the
    child itself (a task factory or uvloop makes its own, for both)."""

    class MyTask(asyncio.tasks.Task):
        pass

    async def child():
        return 1

    def outcome(module):
        async def main():
            async with module.TaskGroup() as tg:
                t = tg.create_task(child())
            return type(t), t.result()

        loop = loop_factory()
        # asyncio's own loop with no task factory: tasks.Task makes it
        # (uvloop and the eager axis's factory make their own).
        plain = (isinstance(loop, asyncio.BaseEventLoop)
                 and loop.get_task_factory() is None)
        return run(loop, main()), plain

    monkeypatch.setattr(asyncio.tasks, "Task", MyTask)
    got, plain = outcome(impl)
    assert got == outcome(asyncio)[0]
    assert (got[0] is MyTask) == plain
