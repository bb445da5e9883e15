"""A straightforward pure-asyncio reference of docs/extras.md (issue 11).

``gather(limit=, timeout=, eager=)``, ``race()`` and ``TaskGroup(limit=)``
built from the stdlib's own pieces, written for obviousness, not speed:

* ``limit``: a ``Semaphore(limit)`` guard coroutine per slot-taking child
  (all guard Tasks exist from the call on: the recipe the issue replaces);
  a guard cancelled before it got its slot closes its coroutine.
* ``timeout``/``limit``/``eager``: the outer is a Task running a
  ``wait(FIRST_COMPLETED)`` loop over the children (the plain
  ``asyncio.gather`` when no new argument is given); on the deadline it
  cancels the unfinished children, awaits them, and builds the partial
  results.
* ``eager``: each coroutine's first step is ``coro.send(None)`` run in a
  ``contextvars.copy_context()``; one that suspends continues in a Task
  running a small forwarding wrapper (``_Resume``).
* ``race``: a ``wait(FIRST_COMPLETED)`` loop, completion order kept by
  done-callbacks; the losers are cancelled and awaited.
* ``TaskGroup(limit=)``: ``asyncio.TaskGroup`` whose tasks run a
  semaphore-guarded wrapper coroutine.

What it cannot do by construction (the tests list these, see
``REFERENCE_CANNOT`` in tests/test_extras.py): the guard Tasks exist up
front (so more than N Tasks are alive), the outer is a Task (its
completion comes some loop iterations after the stdlib-like gather's, and
``outer.cancel()`` returns True whenever it is pending), eager children
started later (when a slot frees) run in their guard Task, not eagerly.
The differential tests therefore compare with it in virtual time only.
"""

import asyncio
import contextvars
import weakref
import inspect
import math

__all__ = ("gather", "race", "TaskGroup")


# ---------------------------------------------------------------------------
# Arguments (docs/extras.md, "Arguments, and the errors for bad ones")
# ---------------------------------------------------------------------------

def check_limit(limit):
    if limit is None:
        return
    if type(limit) is bool or not isinstance(limit, int):
        raise TypeError(
            f"limit must be an int or None, not {type(limit).__name__}")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")


def check_timeout(timeout):
    if timeout is None:
        return
    if type(timeout) is bool or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"timeout must be a number or None, not {type(timeout).__name__}")
    if math.isnan(timeout):
        raise ValueError("timeout must not be NaN")


def check_eager(eager):
    if type(eager) is not bool:
        raise TypeError(f"eager must be a bool, not {type(eager).__name__}")


def _close(aw):
    if asyncio.iscoroutine(aw):
        aw.close()


def _retrieve(fut):
    if not fut.cancelled():
        fut.exception()


#: Eager children that raised CancelledError in their first step: their
#: future -> the raised instance (a Task hands that one out first).
_RAISED_CANCEL = weakref.WeakKeyDictionary()


def _error(fut):
    """The exception of a done future (its CancelledError if cancelled),
    or None."""
    if fut in _RAISED_CANCEL:
        return _RAISED_CANCEL[fut]
    if fut.cancelled():
        try:
            fut.result()
        except asyncio.CancelledError as exc:
            return exc
    return fut.exception()


def _outcome(fut):
    """What gather's results list holds for a done child (asyncio's gather:
    a cancelled child's place gets ``CancelledError(fut._cancel_message or
    '')``, never the CancelledError its coroutine raised)."""
    if fut.cancelled():
        msg = getattr(fut, "_cancel_message", None)
        return asyncio.CancelledError("" if msg is None else msg)
    exc = fut.exception()
    return fut.result() if exc is None else exc


# ---------------------------------------------------------------------------
# Eager first steps
# ---------------------------------------------------------------------------

class _Resume:
    """Awaitable that hands its Task what the coroutine's first step
    yielded, then forwards every send/throw to the coroutine."""

    def __init__(self, coro, yielded):
        self.coro = coro
        self.yielded = yielded

    def __await__(self):
        coro, value = self.coro, self.yielded
        self.coro = self.yielded = None
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: B902 - forwarded
                step, arg = coro.throw, exc
            else:
                step, arg = coro.send, sent
            try:
                value = step(arg)
            except StopIteration as stop:
                return stop.value


async def _resumed(coro, yielded):
    return await _Resume(coro, yielded)


def _eager_start(loop, coro):
    """Run ``coro``'s first step now, in a copy of the current context:
    a done future if it finished, else the Task it continues in.
    KeyboardInterrupt and SystemExit propagate."""
    ctx = contextvars.copy_context()
    fut = loop.create_future()
    try:
        yielded = ctx.run(coro.send, None)
    except StopIteration as stop:
        fut.set_result(stop.value)
    except asyncio.CancelledError as exc:
        # As a Task whose coroutine raised it: cancelled without a message
        # (gather's list gets CancelledError('')), the raised instance is
        # what an outer failing on it gets.
        fut.cancel()
        _RAISED_CANCEL[fut] = exc
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: B902 - the child's outcome
        fut.set_exception(exc)
    else:
        return loop.create_task(_resumed(coro, yielded), context=ctx)
    return fut


def _try_acquire(sem):
    """Take a slot of ``sem`` now if one is free (acquire() does not
    suspend then)."""
    if sem.locked():
        return False
    step = sem.acquire()
    try:
        step.send(None)
    except StopIteration:
        return True
    raise AssertionError("Semaphore.acquire() suspended while unlocked")


# ---------------------------------------------------------------------------
# gather
# ---------------------------------------------------------------------------

def gather(*aws, return_exceptions=False, limit=None, timeout=None,
           eager=False):
    check_limit(limit)
    check_timeout(timeout)
    check_eager(eager)
    if limit is None and timeout is None and not eager:
        return asyncio.gather(*aws, return_exceptions=return_exceptions)
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    slots = None if limit is None else asyncio.Semaphore(limit)
    children = {}  # distinct argument -> its future, in argument order
    eager_done = []  # children finished in their first step, in order
    guards = {}  # guard task -> [started]

    def guard(aw):
        pre = _try_acquire(slots)
        started = [pre]

        async def guarded():
            if pre:
                try:
                    started[0] = True
                    return await aw
                finally:
                    slots.release()
            async with slots:
                started[0] = True
                return await aw

        task = loop.create_task(guarded())
        # A guard cancelled before it got its slot (even before its first
        # step, where the cancellation is thrown in before any line ran)
        # closes its coroutine.
        task.add_done_callback(lambda _: started[0] or _close(aw))
        guards[task] = started
        return task

    def stop():
        """No further child starts: cancel the guards still waiting."""
        for task, started in guards.items():
            if not started[0]:
                task.cancel()

    for i, aw in enumerate(aws):
        if aw in children:
            continue
        if asyncio.isfuture(aw):
            children[aw] = aw
        elif eager and asyncio.iscoroutine(aw) and (
                slots is None or _try_acquire(slots)):
            try:
                fut = _eager_start(loop, aw)
            except (KeyboardInterrupt, SystemExit):
                for later in aws[i + 1:]:
                    if later not in children:
                        _close(later)
                stop()
                raise
            if slots is not None:
                if fut.done():
                    slots.release()
                else:
                    fut.add_done_callback(lambda _: slots.release())
            if fut.done():
                eager_done.append(fut)
            children[aw] = fut
        elif slots is None:
            children[aw] = asyncio.ensure_future(aw, loop=loop)
        else:
            children[aw] = guard(aw)
    futs = [children[aw] for aw in aws]
    for fut in children.values():
        fut.add_done_callback(_retrieve)

    if eager and (all(f.done() for f in children.values()) or (
            not return_exceptions
            and any(_error(f) is not None for f in eager_done))):
        # The outer is done when gather() returns.
        outer = loop.create_future()
        first = next((f for f in eager_done if _error(f) is not None), None)
        if not return_exceptions and first is not None:
            stop()
            outer.set_exception(_error(first))
        else:
            outer.set_result([_outcome(f) for f in futs])
        return outer
    return loop.create_task(
        _collect(futs, return_exceptions, deadline, stop))


async def _wait_all(futs, on_cancel):
    """Wait for every future of ``futs``; a cancellation of the waiting
    task does not interrupt it: ``on_cancel(exc)`` is called, and the last
    such CancelledError returned."""
    cancelled = None
    while True:
        pending = [f for f in futs if not f.done()]
        if not pending:
            return cancelled
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError as exc:
            cancelled = exc
            on_cancel(exc)


async def _collect(futs, return_exceptions, deadline, stop):
    loop = asyncio.get_running_loop()
    distinct = list(dict.fromkeys(futs))
    finished = []  # completion order (done-callbacks)
    for fut in distinct:
        fut.add_done_callback(finished.append)
    seen = 0
    failure = None
    expired = False
    try:
        while failure is None and len(finished) < len(distinct):
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                expired = True
                break
            await asyncio.wait([f for f in distinct if f not in finished],
                               timeout=remaining,
                               return_when=asyncio.FIRST_COMPLETED)
            if not return_exceptions:
                for fut in finished[seen:]:
                    err = _error(fut)
                    if err is not None:
                        failure = err
                        break
                seen = len(finished)
    except asyncio.CancelledError as exc:
        # The outer cancelled: as gather.
        msg = exc.args[:1]
        stop()
        for fut in distinct:
            fut.cancel(*msg)
        await _wait_all(distinct, lambda e: None)
        raise
    if failure is not None:
        stop()
        raise failure
    if not expired:
        return [_outcome(f) for f in futs]

    # The deadline passed with children unfinished.
    cut = [f for f in distinct if not f.done()]
    stop()
    for fut in cut:
        fut.cancel()

    def cancel_again(exc):
        for fut in cut:
            fut.cancel(*exc.args[:1])

    cancelled = await _wait_all(cut, cancel_again)
    if cancelled is not None:
        raise cancelled
    if not return_exceptions:
        raise TimeoutError()
    timeouts = {f: TimeoutError() for f in cut if f.cancelled()}
    return [timeouts[f] if f in timeouts else _outcome(f) for f in futs]


# ---------------------------------------------------------------------------
# race
# ---------------------------------------------------------------------------

def race(*aws, timeout=None):
    if not aws:
        raise TypeError("race() needs at least one awaitable")
    check_timeout(timeout)
    return _race(aws, timeout)


async def _race(aws, timeout):
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    children = {}
    for aw in aws:
        if aw not in children:
            children[aw] = asyncio.ensure_future(aw, loop=loop)
    children = list(children.values())
    finished = []  # completion order (done-callbacks)
    for fut in children:
        fut.add_done_callback(finished.append)
    seen = 0
    outcome = None
    # A cancelled task hands out the CancelledError its coroutine raised
    # only to the first caller that asks (later ones get a new one): keep
    # what each child failed with.
    errors = {}
    try:
        while outcome is None:
            for fut in finished[seen:]:
                seen += 1
                exc = errors[fut] = _error(fut)
                if exc is None:
                    outcome = ("won", fut.result())
                    break
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    outcome = ("raise", exc)
                    break
            if outcome is not None:
                break
            if seen == len(children):
                outcome = ("all failed",)
                break
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                outcome = ("raise", TimeoutError())
                break
            await asyncio.wait([f for f in children if f not in finished],
                               timeout=remaining,
                               return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError as exc:
        outcome = ("raise", exc)
    losers = [f for f in children if not f.done()]
    for fut in losers:
        fut.cancel()
    cancelled = await _wait_all(losers, lambda e: None)
    for fut in children:
        _retrieve(fut)
    if cancelled is not None:
        raise cancelled
    if outcome[0] == "won":
        return outcome[1]
    if outcome[0] == "raise":
        raise outcome[1]
    raise BaseExceptionGroup("all racers failed",
                             [errors[f] for f in children])


# ---------------------------------------------------------------------------
# TaskGroup
# ---------------------------------------------------------------------------

class TaskGroup(asyncio.TaskGroup):
    def __init__(self, *, limit=None):
        check_limit(limit)
        super().__init__()
        self._ref_limit = limit
        self._ref_slots = None if limit is None else asyncio.Semaphore(limit)

    @property
    def limit(self):
        return self._ref_limit

    def create_task(self, coro, *, name=None, context=None):
        if self._ref_slots is None:
            return super().create_task(coro, name=name, context=context)
        started = [False]
        failed = [False]
        slots = self._ref_slots

        async def guarded():
            await slots.acquire()
            started[0] = True
            try:
                result = await coro
            except asyncio.CancelledError:
                slots.release()
                raise
            except BaseException:
                # docs/extras.md: a child that fails hands its slot on only
                # after the group has seen the error (the done-callback
                # below runs after the group's own).
                failed[0] = True
                raise
            slots.release()
            return result

        wrapper = guarded()
        try:
            task = super().create_task(wrapper, name=name, context=context)
        except BaseException:
            # A refusal: from 3.13 on the group closes the coroutine it was
            # given; then so is the caller's.
            if inspect.getcoroutinestate(wrapper) == inspect.CORO_CLOSED:
                coro.close()
            wrapper.close()
            raise
        # Cancelled while waiting for its slot: the coroutine never runs.
        task.add_done_callback(lambda _: started[0] or coro.close())
        task.add_done_callback(lambda _: failed[0] and slots.release())
        return task
