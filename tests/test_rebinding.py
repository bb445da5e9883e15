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
