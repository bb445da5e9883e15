"""Parity tests reproducing, without the library, differences found by running
real libraries' own test suites with fastwait installed
(scripts/real_libraries.py; README "Real libraries' test suites").

aiotools 2.2.4's ``TaskScope(shield=True)`` (test
``test_taskscope_external_timeout_when_shielded``, 3.13+) shields the body of
the scope from outside cancellation by replacing the host task's ``cancel``,
``cancelling`` and ``uncancel`` with instance attributes
(``task.cancel = scope._cancel``) for the scope's duration; a shielded
scope records a cancel() instead of passing it on.  asyncio's ``Timeout``
calls ``self._task.cancel()``, ``.cancelling()`` and ``.uncancel()``
through attribute lookup, so an ``asyncio.timeout()`` outside such a scope
is absorbed while the scope runs.  A timeout that calls the Task type's
methods directly cancels the task anyway.
"""

import asyncio
import contextlib

import pytest

METHODS = ("cancel", "cancelling", "uncancel")


def hook(task, log, *, absorb_cancel=False):
    """Replace the task's cancel/cancelling/uncancel with instance
    attributes that log each call (as aiotools' TaskScope does); with
    ``absorb_cancel`` a cancel() is recorded and not passed on."""
    for name in METHODS:
        real = getattr(task, name)

        def method(*args, _name=name, _real=real, **kwargs):
            log.append(_name)
            if _name == "cancel" and absorb_cancel:
                return True
            return _real(*args, **kwargs)

        setattr(task, name, method)


def unhook(task):
    for name in METHODS:
        delattr(task, name)


@contextlib.contextmanager
def hooked(log, **kwargs):
    """The current task's methods hooked (``hook``) for the block."""
    task = asyncio.current_task()
    hook(task, log, **kwargs)
    try:
        yield
    finally:
        unhook(task)


def outcome(loop, main):
    try:
        return ("result", loop.run_until_complete(main()))
    except BaseException as exc:  # noqa: BLE001 - compared below
        return ("raised", type(exc).__name__)


@pytest.fixture
def both(impl, loop_factory):
    """``both(scenario)``: (what scenario(asyncio) gives, what scenario(impl)
    gives), each run on a fresh loop of the active axis."""

    def compare(scenario):
        return (outcome(loop_factory(), lambda: scenario(asyncio)),
                outcome(loop_factory(), lambda: scenario(impl)))

    return compare


def test_timeout_calls_the_task_methods_through_the_instance(both):
    """asyncio.timeout() calls ``task.cancelling()`` on entry, ``task.cancel()``
    at the deadline and ``task.uncancel()`` on exit through attribute lookup:
    instance attributes replacing them are called."""

    async def scenario(mod):
        log = []
        with hooked(log):
            try:
                async with mod.timeout(0):
                    await asyncio.sleep(10)
            except TimeoutError:
                log.append("TimeoutError")
        return log

    want, got = both(scenario)
    assert want[0] == "result" and "cancel" in want[1], want
    assert got == want


def test_timeout_cancel_absorbed_by_an_instance_override(both):
    """The aiotools TaskScope(shield=True) case: the task's cancel() is
    replaced by one that records the request and does not cancel.  With
    asyncio the expired timeout's cancel() is absorbed, the body runs to its
    end and the block exits without an exception (the timeout expired, but
    nothing was cancelled)."""

    async def scenario(mod):
        log = []
        with hooked(log, absorb_cancel=True):
            try:
                async with mod.timeout(0) as cm:
                    for _ in range(3):
                        await asyncio.sleep(0)
                    log.append("body finished")
                log.append(("exited", cm.expired()))
            except BaseException as exc:
                log.append(type(exc).__name__)
        return log

    want, got = both(scenario)
    assert want[0] == "result" and "body finished" in want[1], want
    assert got == want


def test_wait_for_calls_the_task_methods_through_the_instance(both):
    """asyncio.wait_for() (a timeout scope around the await on 3.12+): the
    same calls, through the same instance attributes."""

    async def scenario(mod):
        log = []
        with hooked(log):
            try:
                await mod.wait_for(asyncio.sleep(10), 0.001)
            except TimeoutError:
                log.append("TimeoutError")
        return log

    want, got = both(scenario)
    assert want[0] == "result" and "TimeoutError" in want[1], want
    assert got == want


def test_taskgroup_calls_the_parent_methods_through_the_instance(both):
    """TaskGroup calls its parent task's cancel(), cancelling() and
    uncancel() through attribute lookup, as asyncio's does (a guard: this
    one holds)."""

    async def scenario(mod):
        log = []

        async def boom():
            raise ZeroDivisionError

        with hooked(log):
            try:
                async with mod.TaskGroup() as tg:
                    tg.create_task(boom())
                    await asyncio.sleep(10)
            except* ZeroDivisionError:
                log.append("ZeroDivisionError")
        return log

    want, got = both(scenario)
    assert want[0] == "result" and "cancel" in want[1], want
    assert got == want
