"""gather(limit=, timeout=, eager=), race() and TaskGroup(limit=) in pure Python.

The implementation of docs/extras.md used without the C extension
(``FASTWAIT_NO_EXTENSIONS=1``, or off CPython), built on the stdlib's own
primitives; same API, same argument checks and messages, same outcomes as
the native one.  A call of ``gather()`` without any of the new arguments
returns ``asyncio.gather(...)``'s own future, and ``TaskGroup()`` without a
limit is the stdlib's TaskGroup.

As natively, each coroutine child of an extended gather runs in a small
coroutine-protocol wrapper (``_GatherCoro``, created with
``loop.create_task(wrapper)`` so task factories see it) that reports the
coroutine's outcome inside the child Task's last step: the next child
waiting for a slot starts in that same loop iteration.  Futures, Tasks and
other awaitables passed in are followed with done-callbacks.  The
deadlines of ``timeout=`` are plain loop timers (``loop.call_at``, one per
call), not fastwait's deadline heap.  As the native gather, it reads
``return_exceptions``'s truth value once, at the call (when a new argument
is given; without, it is the stdlib's gather).  A cancelled child's
``CancelledError`` in the results is the one ``result()`` raises (a
Task's own, with its message, the first time).
"""

from __future__ import annotations

import collections
import collections.abc
import contextvars
import inspect
import math
import sys
import types
from asyncio import base_events as _base_events
from asyncio import events, exceptions, futures, tasks
from asyncio import gather as _stdlib_gather
from asyncio import TaskGroup as _StdlibTaskGroup

__all__ = ("TaskGroup", "gather", "race")

_CancelledError = exceptions.CancelledError


# ---------------------------------------------------------------------------
# Argument checks (the same order and messages as the native functions)
# ---------------------------------------------------------------------------

def _check_limit(limit):
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(
            f"limit must be an int or None, not {type(limit).__name__}")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {int(limit)}")
    return int(limit)


def _check_timeout(timeout):
    """The timeout as a float (None for no deadline)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"timeout must be a number or None, not {type(timeout).__name__}")
    try:
        value = float(timeout)
    except OverflowError:
        # An int too large for a float: never / already expired.
        value = math.inf if timeout > 0 else -math.inf
    if math.isnan(value):
        raise ValueError("timeout must not be NaN")
    return value


def _check_eager(eager):
    if eager is not True and eager is not False:
        raise TypeError(f"eager must be a bool, not {type(eager).__name__}")


def _schedule_deadline(loop, when, callback):
    """A loop timer for ``when`` (None when it never expires); a deadline
    already passed fires in the next loop iteration."""
    if when == math.inf:
        return None
    # (-inf, and some loops' integer arithmetic, need a finite time; a past
    # time is due at the next iteration either way.)
    return loop.call_at(max(when, loop.time()), callback)


# ---------------------------------------------------------------------------
# Coroutine-protocol wrappers
# ---------------------------------------------------------------------------

class _CoroWrapper(collections.abc.Coroutine):
    """Base of the coroutine-protocol objects a Task runs in place of a
    coroutine: forwards the coroutine's introspection attributes
    (``__name__``, ``__qualname__``, ``cr_code``, ``cr_frame``,
    ``cr_running``, ``cr_await``, ``cr_origin``, ``cr_suspended`` and, where
    coroutines have it, ``cr_state``) so that the Task's repr and
    ``get_stack()`` read the same; ``__wrapped__`` is the coroutine.  A
    subclass of ``collections.abc.Coroutine``: ``asyncio.iscoroutine()``
    accepts it."""

    __slots__ = ("_coro",)

    def __init__(self, coro):
        self._coro = coro

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        return self.send(None)

    def __repr__(self):
        return repr(self._coro)

    @property
    def __wrapped__(self):
        """The coroutine this wrapper runs."""
        return self._coro

    @property
    def __name__(self):
        return self._coro.__name__

    # __qualname__ cannot be a property in a class body (type() takes it for
    # the class's own name): it is forwarded by __getattr__.
    def __getattr__(self, name):
        if name in _FORWARDED:
            return getattr(self._coro, name)
        raise AttributeError(
            f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def cr_code(self):
        return self._coro.cr_code

    @property
    def cr_frame(self):
        return self._coro.cr_frame

    @property
    def cr_running(self):
        return self._coro.cr_running

    @property
    def cr_await(self):
        return self._coro.cr_await


_FORWARDED = frozenset({"__qualname__", "cr_origin", "cr_suspended",
                        "cr_state"})


def _throw(coro, args):
    """coro.throw(*args) with the caller's signature (3.12+ warns about
    the three-argument form; the one-argument form is what Task uses)."""
    return coro.throw(*args)


def _raise_thrown(typ, val=None, tb=None):
    """Raise what ``throw(typ[, val[, tb]])`` throws, as a generator that
    has finished would."""
    if isinstance(typ, BaseException):
        exc = typ
    elif val is None:
        exc = typ()
    elif isinstance(val, typ):
        exc = val
    elif isinstance(val, tuple):
        exc = typ(*val)
    else:
        exc = typ(val)
    if tb is not None:
        exc = exc.with_traceback(tb)
    raise exc


_NOTHING = object()


class _GatherCoro(_CoroWrapper):
    """What the Task of a coroutine child of an extended gather runs: it
    forwards every step to the coroutine and, the moment the coroutine
    returns or raises, reports the outcome to the gather right there,
    inside the child Task's own last step (so that the next child waiting
    for a slot starts in that same loop iteration), then lets the
    StopIteration or exception go on to the Task.

    An eager child that suspended in its first step (run inside
    ``gather()``) gets ``first``, what that step yielded: the wrapper's
    first ``send()`` hands it to the Task (a future's
    ``_asyncio_future_blocking``, reset after the first step as a Task step
    does, is set again right then).  A ``throw()`` before that first
    ``send()`` is the Task cancelled before its first step: the coroutine is
    suspended on what it yielded, so when the exception is a
    ``CancelledError`` that future is cancelled first (with the same
    message), as a Task's ``cancel()`` would have cancelled the future it
    waits on; then the exception is thrown into the coroutine."""

    __slots__ = ("_outer", "_child", "_first", "_blocking")

    def __init__(self, coro, outer, child, first=_NOTHING, blocking=False):
        self._coro = coro
        self._outer = outer
        self._child = child
        self._first = first
        self._blocking = blocking

    def _finished(self, value, exc):
        outer = self._outer
        if outer is not None:
            child = self._child
            self._outer = self._child = None
            outer._wrapped_finished(child, value, exc)

    def _step(self, method, *args):
        try:
            return method(*args)
        except StopIteration as e:
            self._finished(e.value, None)
            raise
        except BaseException as e:
            self._finished(None, e)
            raise

    def _take_first(self):
        first = self._first
        self._first = _NOTHING
        if self._blocking:
            self._blocking = False
            first._asyncio_future_blocking = True
        return first

    def send(self, value):
        """Send ``value`` into the coroutine (an eager child's first call
        returns what the coroutine's first step yielded)."""
        if self._first is not _NOTHING:
            return self._take_first()
        return self._step(self._coro.send, value)

    def throw(self, typ, val=None, tb=None, /):
        """Raise an exception in the coroutine."""
        args = (typ,) if val is None and tb is None else (typ, val, tb)
        if self._first is not _NOTHING:
            yielded = self._take_first()
            exc = typ if val is None else val
            if (isinstance(exc, _CancelledError)
                    or (isinstance(exc, type)
                        and issubclass(exc, _CancelledError))):
                if futures.isfuture(yielded) and not yielded.done():
                    msg = None
                    if isinstance(exc, BaseException) and exc.args:
                        msg = exc.args[0]
                    yielded._asyncio_future_blocking = False
                    yielded.cancel(msg=msg)
        return self._step(self._coro.throw, *args)

    def close(self):
        """Close the coroutine."""
        self._first = _NOTHING
        self._outer = self._child = None
        return self._coro.close()


# ---------------------------------------------------------------------------
# gather()
# ---------------------------------------------------------------------------

# Child kinds
_FUTURE, _CORO, _AWAITABLE = 0, 1, 2


class _Child:
    """One distinct child of an extended gather.

    ``fut`` is the future standing for it once started (None while it
    waits for a slot, for a coroutine that finished in its eager first
    step, and once the wrapper of a coroutine child reported its outcome:
    its Task is let go); ``done`` says the outcome is final; without a
    future the outcome
    is ``result`` / ``exc`` / ``cancelled`` (+ ``cancelled_exc`` and
    ``cancel_msg``); ``cut`` marks a child the deadline cut short (never
    started), ``deadline_cancelled`` one the deadline cancelled."""

    __slots__ = ("arg", "kind", "fut", "done", "result", "exc", "cancelled",
                 "cancelled_exc", "cancel_msg", "cut", "deadline_cancelled")

    def __init__(self, arg, kind):
        self.arg = arg
        self.kind = kind
        self.fut = None
        self.done = False
        self.result = None
        self.exc = None
        self.cancelled = False
        self.cancelled_exc = None
        self.cancel_msg = None
        self.cut = False
        self.deadline_cancelled = False

    # The outcome, read the way gather reads a future's.

    def is_cancelled(self):
        if self.fut is not None:
            return self.fut.cancelled()
        return self.cancelled

    def exception(self):
        if self.fut is not None:
            return self.fut.exception()
        return self.exc

    def get_result(self):
        if self.fut is not None:
            return self.fut.result()
        return self.result

    def make_cancelled_error(self):
        """The child's CancelledError, read as ``fut.result()`` raises it:
        the first time, a Task's is the one its coroutine raised."""
        fut = self.fut
        if fut is not None:
            if not fut.cancelled():
                # (the outer cancelled, this child did not end cancelled)
                return fut._make_cancelled_error()
            try:
                fut.result()
            except _CancelledError as e:
                return e
        exc = self.cancelled_exc
        if exc is not None:
            self.cancelled_exc = None
            return exc
        if self.cancel_msg is None:
            return _CancelledError()
        return _CancelledError(self.cancel_msg)

    def listed_cancelled_error(self):
        """What gather's results list holds for a cancelled child:
        ``CancelledError(fut._cancel_message or '')``, as asyncio's gather
        builds it (a Task that ended cancelled has no message left, so a
        child run as a Task, or finished in its eager first step, gets
        ``CancelledError('')``)."""
        fut = self.fut
        msg = None if fut is None else getattr(fut, "_cancel_message", None)
        return _CancelledError("" if msg is None else msg)

    def retrieve(self):
        """Mark a future's exception retrieved."""
        fut = self.fut
        if fut is not None and not fut.cancelled():
            fut.exception()

    def drop(self, cancelled=False, msg=None):
        """A child never started: close its coroutine (it never runs, and
        gives no "never awaited" warning), drop other awaitables."""
        if self.kind == _CORO:
            self.arg.close()
        self.arg = None
        self.done = True
        if cancelled:
            self.cancelled = True
            self.cancel_msg = msg


class _GatheringFuture(futures.Future):
    """The future ``gather()`` returns when ``limit=``, ``timeout=`` or
    ``eager=True`` is given (the stdlib's ``_GatheringFuture`` otherwise).

    ``cancel(msg=None)`` cancels every started, unfinished child (with the
    message) and closes the coroutines never started; it returns True if a
    child was cancelled or a coroutine closed.  When a child was cancelled
    the outer ends, as gather's does after a cancellation, once the
    children have finished; otherwise it is cancelled at once.
    """

    def __init__(self, *, loop, positions, children, return_exceptions,
                 limit):
        super().__init__(loop=loop)
        self._positions = positions     # a _Child per argument
        self._fw_children = children    # distinct, in argument order
        self._return_exceptions = return_exceptions
        self._limit = limit
        self._queue = collections.deque()  # children waiting for a slot
        self._running = 0                  # slots taken
        self._nfinished = 0
        self._by_fut = {}
        self._cancel_requested = False
        self._timed_out = False
        self._abandoned = False
        self._starting = True              # inside the gather() call
        self._finished_at_call = []
        self._eager = False
        self._context = None               # the caller's, for eager starts
        self._timer = None

    # -- cancellation ---------------------------------------------------

    def cancel(self, msg=None):
        """Cancel the started children and close the never-started ones
        (see the class docstring)."""
        if self.done():
            return False
        ret = False
        for child in self._positions:
            fut = child.fut
            if fut is not None and fut.cancel(msg=msg):
                ret = True
        closed = self._drop_queue(cancelled=True, msg=msg)
        if ret:
            # As gather: propagate the cancellation whatever
            # return_exceptions says (bpo-32684).  The cancellation wins:
            # the deadline no longer cancels the children again.
            self._cancel_requested = True
            self._cancel_timer()
            return True
        if closed:
            self._cancel_timer()
            super().cancel(msg=msg)
            return True
        return False

    def _drop_queue(self, cancelled=False, msg=None, cut=False):
        """Close or drop every child waiting for a slot; each counts as
        finished.  Returns whether there was any."""
        queue = self._queue
        if not queue:
            return False
        while queue:
            child = queue.popleft()
            child.drop(cancelled=cancelled, msg=msg)
            child.cut = cut
            self._nfinished += 1
        return True

    def _cancel_timer(self):
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()

    # -- finishing ------------------------------------------------------

    def _finish_early(self, exc):
        self._cancel_timer()
        self.set_exception(exc)
        self._drop_queue()

    def _complete(self):
        """Every child has finished: the outer's outcome."""
        self._cancel_timer()
        if self._cancel_requested:
            # As gather: the cancellation propagates whatever
            # return_exceptions says (the last child's cancelled error).
            for child in self._fw_children:
                child.retrieve()
            self.set_exception(self._positions[-1].make_cancelled_error())
            return
        # (the results are read in every case, as gather does: that marks
        # the children's exceptions retrieved)
        results = []
        for child in self._positions:
            if child.cut or (child.deadline_cancelled
                             and child.is_cancelled()):
                # cut short by the deadline
                res = TimeoutError()
            elif child.is_cancelled():
                res = child.listed_cancelled_error()
            else:
                res = child.exception()
                if res is None:
                    res = child.get_result()
            results.append(res)
        if self._timed_out and not self._return_exceptions:
            self.set_exception(TimeoutError())
        else:
            self.set_result(results)

    def _report(self, child):
        """A child has its final outcome: gather's done-callback logic."""
        self._nfinished += 1
        if self._abandoned or self.done():
            child.retrieve()
            return
        if self._timed_out:
            # Waiting for the children the deadline cancelled: nothing ends
            # the outer early.
            child.retrieve()
        elif not self._return_exceptions:
            if child.is_cancelled():
                self._finish_early(child.make_cancelled_error())
                return
            exc = child.exception()
            if exc is not None:
                self._finish_early(exc)
                return
        if self._nfinished == len(self._fw_children):
            self._complete()

    def _on_child_done(self, fut):
        """Done-callback of a future or Task passed in, of the Task of an
        awaitable, and of a coroutine child's Task cancelled in its last
        step."""
        child = self._by_fut.pop(fut)
        child.done = True
        if child.kind != _FUTURE:
            self._running -= 1
        self._report(child)
        if self._queue:
            self._start_waiting()

    def _wrapped_finished(self, child, value, exc):
        """A coroutine child's coroutine returned ``value`` or raised
        ``exc``: called by its wrapper inside the child Task's last step.
        The outcome is kept on the child (the Task is let go), its slot is
        free, and the next waiting children start at once."""
        task = child.fut
        if task is None:
            # (an eager task factory running the Task to its end inside
            # create_task: gather has not seen the Task yet)
            task = tasks.current_task(self._loop)
        if exc is None and task is not None and getattr(
                task, "_must_cancel", False):
            # The Task was cancelled during the coroutine's last step: it
            # ends cancelled, not with the value; its done-callback tells.
            child.fut = task
            self._by_fut[task] = child
            task.add_done_callback(self._on_child_done)
            return
        child.fut = None
        if exc is None:
            child.result = value
        elif isinstance(exc, _CancelledError):
            # (the Task ends cancelled; the error is the one it keeps)
            child.cancelled = True
            child.cancelled_exc = exc
        else:
            child.exc = exc
            if task is not None:
                # (the Task's exception, retrieved once it is set)
                task.add_done_callback(_retrieve)
        self._finished_now(child)
        if self._queue and not self._starting:
            self._start_waiting()

    # -- starting -------------------------------------------------------

    def _start_waiting(self):
        """Start children waiting for a slot, in argument order, while
        slots are free."""
        queue = self._queue
        while queue and self._running < self._limit:
            self._start(queue.popleft())

    def _start(self, child):
        """Start a slot-taking child (a coroutine or another awaitable)."""
        self._running += 1
        try:
            if self._eager and child.kind == _CORO:
                fut = self._step_eagerly(child)
            elif child.kind == _CORO:
                arg = child.arg
                child.arg = None
                fut = self._loop.create_task(_GatherCoro(arg, self, child))
            else:
                arg = child.arg
                child.arg = None
                fut = tasks.ensure_future(arg, loop=self._loop)
        except (KeyboardInterrupt, SystemExit) as e:
            child.exc = e
            self._base_exit(child)
            raise
        except BaseException as e:
            if self._starting:
                raise  # out of gather(), as from the stdlib's
            # (from a completion callback: the child's outcome)
            child.exc = e
            fut = None
        if fut is None:
            self._finished_now(child)
        else:
            self._started(child, fut)

    def _step_eagerly(self, child):
        """Run a coroutine's first step now, in a copy of the caller's
        context; return the Task it continues as, or None if it finished
        (its outcome recorded on ``child``)."""
        coro = child.arg
        child.arg = None
        if self._starting:
            ctx = contextvars.copy_context()
        else:
            ctx = self._context.copy()
        try:
            yielded = ctx.run(coro.send, None)
        except StopIteration as e:
            child.result = e.value
            return None
        except _CancelledError as e:
            # Cancelled: the first retrieval gives the exception it raised,
            # later ones a new CancelledError with its message (as a future
            # cancelled with it; a duplicate reads it twice).
            child.cancelled = True
            child.cancelled_exc = e
            child.cancel_msg = e.args[0] if e.args else None
            return None
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:
            child.exc = e
            return None
        blocking = bool(getattr(yielded, "_asyncio_future_blocking", False))
        if blocking:
            # (reset as a Task step does, so that another eager child can
            # await the same future; set again when the Task takes it)
            yielded._asyncio_future_blocking = False
        wrapper = _GatherCoro(coro, self, child, yielded, blocking)
        try:
            if _eager_task_direct(self._loop):
                # What the loop's create_task() builds, started at once: it
                # takes what the first step yielded now, so the child
                # resumes in the iteration an eager Task's would (as the
                # native implementation does).
                return tasks.Task(wrapper, loop=self._loop, context=ctx,
                                   eager_start=True)
            return self._loop.create_task(wrapper, context=ctx)
        except BaseException:
            coro.close()
            raise

    def _started(self, child, fut):
        fut._log_destroy_pending = False
        if child.done or child.fut is not None:
            # (an eager task factory ran a coroutine child to its end
            # inside create_task: its wrapper already reported it)
            return
        child.fut = fut
        if child.kind == _CORO:
            return  # its wrapper reports the outcome
        self._by_fut[fut] = child
        if fut.done():
            # (an eager task factory ran it to the end)
            self._finished_now(child)
        else:
            fut.add_done_callback(self._on_child_done)

    def _finished_now(self, child):
        """A child finished inside its start: its slot is free at once; its
        outcome is reported now, or, inside the gather() call, once every
        child of the call has been started (in argument order)."""
        child.done = True
        if child.kind != _FUTURE:
            self._running -= 1
        if self._starting:
            self._finished_at_call.append(child)
        else:
            self._report(child)

    def _base_exit(self, child):
        """KeyboardInterrupt / SystemExit out of a child's start."""
        child.done = True
        if self._starting:
            # Out of gather() at once (gather() closes the coroutines not
            # started yet; the children already running go on).
            return
        # From a completion callback: the child's outcome is that
        # exception (as a Task's would be) and the never-started children
        # are closed, counting as cancelled; then it propagates (out of the
        # loop's run, as from a Task).
        self._running -= 1
        self._drop_queue(cancelled=True)
        self._report(child)

    # -- the deadline ---------------------------------------------------

    def _on_deadline(self):
        self._timer = None
        if self.done() or self._abandoned:
            return
        unfinished = [c for c in self._fw_children
                      if c.fut is not None and not c.fut.done()]
        if not unfinished and not self._queue:
            return
        self._timed_out = True
        for child in unfinished:
            if child.fut.cancel():
                child.deadline_cancelled = True
        self._drop_queue(cut=True)
        if self._nfinished == len(self._fw_children):
            self._complete()


#: 3.12+: Task(..., eager_start=True).
_HAS_EAGER_START = sys.version_info >= (3, 12)


def _eager_task_direct(loop):
    """May a suspended eager child's Task be built here, started eagerly?
    Only where ``loop.create_task()`` would build a plain Task: 3.12+ (its
    Task takes ``eager_start``), asyncio's own ``create_task`` (or
    uvloop's), no task factory, and the loop running."""
    if not _HAS_EAGER_START:
        return False
    create = getattr(type(loop), "create_task", None)
    if create is not _base_events.BaseEventLoop.create_task:
        uvloop = sys.modules.get("uvloop")
        uv_create = getattr(getattr(uvloop, "Loop", None), "create_task",
                            None)
        if uv_create is None or create is not uv_create:
            return False
    if loop.get_task_factory() is not None:
        return False
    return events._get_running_loop() is loop


def gather(*coros_or_futures, return_exceptions=False, limit=None,
           timeout=None, eager=False):
    """Run awaitables concurrently and return a future of their results.

    Without ``limit``, ``timeout`` and ``eager`` this is
    ``asyncio.gather(*coros_or_futures, return_exceptions=return_exceptions)`` (the
    stdlib's own future).  The new keyword-only arguments
    (docs/extras.md):

    ``limit``: None or an int >= 1: at most that many of the children
    gather itself starts (coroutines and other awaitables; futures and
    tasks passed in take no slot) run at once; the others are started in
    argument order as running ones finish.  A coroutine beyond the limit
    is not wrapped in a Task until its turn, and is closed unrun if the
    outer finishes first.

    ``timeout``: None or a number of seconds (relative to ``loop.time()``
    at the call; <= 0 has already expired, ``inf`` never expires).  When it
    passes, the unfinished children are cancelled (never-started ones
    closed) and, once they have finished, the outer raises
    ``TimeoutError`` -- or, with ``return_exceptions=True``, returns the
    results with a ``TimeoutError()`` in the place of each child the
    deadline cut short.

    ``eager``: True runs the first step of each coroutine inside the call,
    in a copy of the caller's context; a coroutine that finishes there
    never becomes a Task, one that suspends continues as a Task.
    """
    if limit is None and timeout is None and eager is False:
        return _stdlib_gather(*coros_or_futures, return_exceptions=return_exceptions)
    limit = _check_limit(limit)
    timeout = _check_timeout(timeout)
    _check_eager(eager)
    if not coros_or_futures:
        return _stdlib_gather(return_exceptions=return_exceptions)

    # The children (nothing is started yet), and the loop gather's would be.
    first = coros_or_futures[0]
    if futures.isfuture(first):
        loop = futures._get_loop(first)
    else:
        loop = None
    by_arg = {}
    positions = []
    children = []
    for arg in coros_or_futures:
        child = by_arg.get(arg)
        if child is None:
            if futures.isfuture(arg):
                kind = _FUTURE
            elif tasks.coroutines.iscoroutine(arg):
                kind = _CORO
            elif inspect.isawaitable(arg):
                kind = _AWAITABLE
            else:
                raise TypeError('An asyncio.Future, a coroutine or an '
                                'awaitable is required')
            child = by_arg[arg] = _Child(arg, kind)
            children.append(child)
        positions.append(child)
    del by_arg
    if loop is None:
        loop = events.get_event_loop()
    for child in children:
        if (child.kind == _FUTURE
                and futures._get_loop(child.arg) is not loop):
            raise ValueError('The future belongs to a different loop than '
                             'the one specified as the loop argument')

    when = None if timeout is None else loop.time() + timeout
    outer = _GatheringFuture(
        loop=loop, positions=positions, children=children,
        return_exceptions=bool(return_exceptions),  # read once
        limit=math.inf if limit is None else limit)
    outer._eager = eager
    queue = outer._queue
    try:
        for child in children:
            if child.kind == _FUTURE:
                fut = child.arg
                child.fut = fut
                child.arg = None
                outer._by_fut[fut] = child
                if fut.done():
                    child.done = True
                    outer._finished_at_call.append(child)
                else:
                    fut.add_done_callback(outer._on_child_done)
            elif queue or outer._running >= outer._limit:
                queue.append(child)
            else:
                outer._start(child)
    except BaseException:
        # A child's start raised (KeyboardInterrupt / SystemExit from an
        # eager first step, or the loop refusing a task): out of gather()
        # at once; the coroutines not started are closed, the children
        # already running go on (their outcomes retrieved and dropped).
        outer._abandoned = True
        queue.clear()
        for child in children:
            if child.kind != _FUTURE and child.arg is not None:
                child.drop()
        raise
    if eager and queue:
        outer._context = contextvars.copy_context()
    outer._starting = False
    finished, outer._finished_at_call = outer._finished_at_call, None
    for child in finished:
        outer._report(child)
    if when is not None and not outer.done():
        outer._timer = _schedule_deadline(loop, when, outer._on_deadline)
    return outer


def _retrieve(fut):
    """Done-callback marking a failed child Task's exception retrieved."""
    if not fut.cancelled():
        fut.exception()


def _frame_skipped_by_asyncio_warnings(func):
    """``func`` with globals whose ``__name__`` is in the asyncio package.

    asyncio attributes its "There is no current event loop" warning (3.12,
    3.13) to the first frame outside the asyncio package; gather() runs
    ``asyncio.gather`` or ``get_event_loop()`` from its own frame, where the
    native gather (a builtin) has none: so that the warning points at the
    caller's line in both, gather's frame reads as asyncio's.  The globals
    are a copy of this module's, taken once it is complete (it rebinds
    none of them at run time).
    """
    namespace = dict(globals())
    namespace["__name__"] = "asyncio.<fastwait._pyextras>"
    new = types.FunctionType(func.__code__, namespace, func.__name__,
                             func.__defaults__, func.__closure__)
    new.__kwdefaults__ = func.__kwdefaults__
    new.__doc__ = func.__doc__
    new.__qualname__ = func.__qualname__
    new.__module__ = func.__module__
    return new


# ---------------------------------------------------------------------------
# race()
# ---------------------------------------------------------------------------

class _Race:
    """The state of one race(): its children's done-callback."""

    __slots__ = ("children", "pending", "decided", "winner", "base_error",
                 "timed_out", "deadline_waits", "waiter")

    def __init__(self, children):
        self.children = children
        self.pending = len(children)
        self.decided = False
        self.winner = None
        self.base_error = None
        self.timed_out = False
        # At the deadline: how many children had finished whose callbacks
        # had not run yet (they decide first), else None.
        self.deadline_waits = None
        self.waiter = None

    def _wake(self):
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_done(self, fut):
        self.pending -= 1
        won = False
        if not fut.cancelled():
            exc = fut.exception()  # (retrieved, also for the losers)
            if exc is None:
                won = True
            elif isinstance(exc, (KeyboardInterrupt, SystemExit)):
                if self.base_error is None:
                    self.base_error = exc
                self.decided = True
        if not self.decided and (won or self.pending == 0):
            if won:
                self.winner = fut
            self.decided = True
        if self.deadline_waits is not None:
            self.deadline_waits -= 1
            if self.deadline_waits == 0 and not self.decided:
                self._time_out()
        if self.decided:
            self._wake()

    def on_deadline(self):
        if self.decided:
            return
        # Children that finished before the deadline count (the native
        # race sees each completion in the child's last step): their
        # callbacks, queued already, run first, in completion order.
        waits = (sum(fut.done() for fut in self.children)
                 - (len(self.children) - self.pending))
        if waits > 0:
            self.deadline_waits = waits
        else:
            self._time_out()

    def _time_out(self):
        self.timed_out = True
        self.decided = True
        self._wake()


def race(*aws, timeout=None):
    """Return the result of the first awaitable to finish successfully.

    Returns a coroutine; the race starts when it is awaited.  Each
    awaitable is wrapped as gather does (duplicates are one child).  The
    first child to return a result wins; the others are then cancelled and
    awaited, so that none outlives the call.  If every child fails, raises
    ``ExceptionGroup("all racers failed", [...])`` (a
    ``BaseExceptionGroup`` if one of the errors is not an ``Exception``),
    the errors in argument order.  A ``KeyboardInterrupt`` or
    ``SystemExit`` from a child is raised once the others are cancelled
    and awaited.  When the caller is cancelled, or ``timeout`` seconds (a
    number, or None for no deadline) pass first, every child is cancelled
    and awaited, then ``CancelledError`` / ``TimeoutError`` is raised.
    """
    timeout = _check_timeout(timeout)
    if not aws:
        raise TypeError("race() needs at least one awaitable")
    return _RaceCoro(_race(aws, timeout), aws)


class _RaceCoro(_CoroWrapper):
    """The coroutine ``race()`` returns: forwards to the racing coroutine.
    Closed or thrown into before its first step (e.g. the task awaiting
    it cancelled before it ran), it closes the coroutine arguments, which
    were never wrapped (no "never awaited" warning for them)."""

    __slots__ = ("_aws",)

    def __init__(self, coro, aws):
        self._coro = coro
        self._aws = aws

    def _close_arguments(self):
        aws, self._aws = self._aws, None
        if aws is not None:
            for arg in aws:
                if tasks.coroutines.iscoroutine(arg):
                    arg.close()

    def send(self, value):
        """Send ``value`` into the race (the first step starts it)."""
        self._aws = None
        return self._coro.send(value)

    def throw(self, typ, val=None, tb=None, /):
        """Raise an exception in the race."""
        args = (typ,) if val is None and tb is None else (typ, val, tb)
        if self._aws is not None:
            try:
                return self._coro.throw(*args)
            finally:
                self._close_arguments()
        return self._coro.throw(*args)

    def close(self):
        """Close the race (before its first step: its coroutine arguments
        too)."""
        try:
            return self._coro.close()
        finally:
            self._close_arguments()


async def _race(aws, timeout):
    loop = events.get_running_loop()
    when = None if timeout is None else loop.time() + timeout
    children = []
    by_arg = {}
    i = -1
    try:
        for i, arg in enumerate(aws):
            if arg in by_arg:
                continue
            fut = tasks.ensure_future(arg, loop=loop)
            if fut is not arg:
                fut._log_destroy_pending = False
            by_arg[arg] = fut
            children.append(fut)
    except BaseException:
        # A bad argument: the coroutines not wrapped yet are closed, the
        # children made so far cancelled and awaited.
        for arg in aws[i + 1:]:
            if tasks.coroutines.iscoroutine(arg) and arg not in by_arg:
                arg.close()
        state = _Race(children)
        state.decided = True
        for fut in children:
            fut.add_done_callback(state.on_done)
            fut.cancel()
        cancelled = await _drain(loop, state, None)
        if cancelled is not None:
            raise cancelled
        raise
    del by_arg
    state = _Race(children)
    for fut in children:
        fut.add_done_callback(state.on_done)
    timer = None
    if when is not None:
        timer = _schedule_deadline(loop, when, state.on_deadline)
    cancelled = None
    try:
        while not state.decided:
            state.waiter = loop.create_future()
            try:
                await state.waiter
            except _CancelledError as e:
                cancelled = e
                break
        # Decided (or the caller cancelled): cancel the unfinished children
        # and await them all.
        state.decided = True
        if timer is not None:
            timer.cancel()
        for fut in children:
            if not fut.done():
                fut.cancel()
        cancelled = await _drain(loop, state, cancelled)
    except GeneratorExit:
        # (the race coroutine closed while suspended: nothing can be
        # awaited any more)
        if timer is not None:
            timer.cancel()
        for fut in children:
            fut.cancel()
        raise
    if state.base_error is not None:
        raise state.base_error
    if cancelled is not None:
        raise cancelled
    if state.winner is not None:
        return state.winner.result()
    if state.timed_out:
        raise TimeoutError()
    errors = []
    for fut in children:
        if fut.cancelled():
            try:
                fut.result()
            except _CancelledError as e:
                errors.append(e)
        else:
            errors.append(fut.exception())
    raise BaseExceptionGroup("all racers failed", errors)


_race.__name__ = _race.__qualname__ = "race"


async def _drain(loop, state, cancelled):
    """Wait until every child's done-callback has run; a cancellation
    meanwhile does not interrupt the waiting: the first is returned (to
    be raised at the end), else ``cancelled``."""
    while state.pending:
        state.waiter = loop.create_future()
        try:
            await state.waiter
        except _CancelledError as e:
            if cancelled is None:
                cancelled = e
    state.waiter = None
    return cancelled


# ---------------------------------------------------------------------------
# TaskGroup(limit=)
# ---------------------------------------------------------------------------

_WAITING, _READY, _RUNNING, _FINISHED = range(4)


class _Slots:
    """The slots of a TaskGroup with a limit: how many are taken, and the
    wrappers waiting for one, in creation order."""

    __slots__ = ("limit", "taken", "queue")

    def __init__(self, limit):
        self.limit = limit
        self.taken = 0
        self.queue = collections.deque()

    def release(self):
        """A slot is free: hand it to the first waiting wrapper, if any."""
        queue = self.queue
        while queue:
            waiter = queue.popleft()
            # (skipping the ones cancelled or closed meanwhile)
            if waiter._state == _WAITING and (
                    waiter._fut is None or not waiter._fut.done()):
                waiter._grant()
                return
        self.taken -= 1


class _SlotWaiter(_CoroWrapper):
    """What a task of a ``TaskGroup(limit=N)`` runs: waits for a slot of
    the group, then runs the coroutine (forwarding every step to it) and
    frees the slot the moment the coroutine returns or ends cancelled (one
    loop callback later when it raises another exception).  Cancelled
    (or closed) before it has started the coroutine, it closes the
    coroutine unrun."""

    __slots__ = ("_slots", "_state", "_fut", "_loop")

    def __init__(self, coro, slots, loop):
        self._coro = coro
        self._slots = slots
        self._loop = loop
        self._fut = None
        if slots.taken < slots.limit and not slots.queue:
            slots.taken += 1
            self._state = _READY
        else:
            self._state = _WAITING
            slots.queue.append(self)

    def _grant(self):
        self._state = _READY
        fut = self._fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _abandon(self):
        """Give up the slot or the place in the queue, without closing the
        coroutine (the group refused the task)."""
        state = self._state
        self._state = _FINISHED
        if state == _READY or state == _RUNNING:
            self._slots.release()

    def _finished(self):
        self._state = _FINISHED
        self._slots.release()

    def _failed(self):
        """The coroutine raised (not a CancelledError): the slot is handed
        on one loop callback later, after the group's done-callback has
        seen the error (it is scheduled when the Task ends, right after
        this step; the granted task's step comes after both), so that the
        abort it starts cancels the waiting tasks before any of them
        starts its coroutine.  The slot counts as taken until then."""
        self._state = _FINISHED
        try:
            self._loop.call_soon(self._slots.release)
        except RuntimeError:
            self._slots.release()  # (a closed loop: at once, then)

    def _step(self, method, *args):
        try:
            return method(*args)
        except (StopIteration, _CancelledError):
            # Returned, or ended cancelled: the slot is handed on inside
            # this last step.
            self._finished()
            raise
        except BaseException:
            self._failed()
            raise

    def send(self, value):
        """Wait for a slot, then send ``value`` into the coroutine."""
        state = self._state
        if state == _RUNNING:
            return self._step(self._coro.send, value)
        if state == _WAITING:
            fut = self._fut
            if fut is None:
                # The first step: wait for a slot.
                fut = self._fut = self._loop.create_future()
            if not fut.done():
                fut._asyncio_future_blocking = True
                return fut
            # The future we waited on was cancelled (the task with it):
            # the coroutine is closed unrun, the task ends cancelled.
            self._state = _FINISHED
            self._coro.close()
            fut.result()  # raises its CancelledError
        if state == _READY:
            self._state = _RUNNING
            self._fut = None
            return self._step(self._coro.send, None)
        return self._coro.send(value)  # finished: as the coroutine does

    def throw(self, typ, val=None, tb=None, /):
        """Raise an exception in the coroutine; before it has started,
        close it unrun and raise the exception."""
        args = (typ,) if val is None and tb is None else (typ, val, tb)
        state = self._state
        if state == _RUNNING:
            return self._step(_throw, self._coro, args)
        if state == _WAITING or state == _READY:
            self._state = _FINISHED
            fut, self._fut = self._fut, None
            if fut is not None and not fut.done():
                fut.cancel()
            self._coro.close()
            if state == _READY:
                self._slots.release()
            _raise_thrown(*args)
        return _throw(self._coro, args)  # finished: as the coroutine does

    def close(self):
        """Close the coroutine (unrun if it has not started) and free its
        slot or its place in the queue."""
        state = self._state
        if state == _RUNNING:
            try:
                return self._coro.close()
            finally:
                self._finished()
        self._state = _FINISHED
        fut, self._fut = self._fut, None
        if fut is not None and not fut.done():
            fut.cancel()
        if state == _READY:
            self._slots.release()
        return self._coro.close()


class TaskGroup(_StdlibTaskGroup):
    """asyncio.TaskGroup with an optional concurrency limit.

    ``TaskGroup(limit=None)`` is the plain TaskGroup.  With ``limit=N`` (an
    int >= 1), ``create_task()`` still returns a Task at once, but at most
    N of the group's tasks have started their coroutine and not finished
    it: a task created when N are running waits for a slot before its
    coroutine's first step, slots being handed out in creation order (a
    free slot is taken at creation).  A coroutine that returns (or ends
    cancelled) hands its slot on inside its last step; one that raises
    another exception one loop callback later, once the group has seen
    the error (so no waiting task starts after the group was aborted by
    it).  Cancelling a waiting task closes its
    coroutine without running it; the group's rules for cancellation and
    errors are unchanged.  Such tasks run a wrapper of the coroutine
    (difference #1 of the README).
    """

    def __init__(self, *, limit=None):
        limit = _check_limit(limit)
        super().__init__()
        self._fw_slots = None if limit is None else _Slots(limit)

    @property
    def limit(self):
        """The limit given (None: unlimited)."""
        slots = self._fw_slots
        return None if slots is None else slots.limit

    def _fw_wrap(self, coro):
        slots = self._fw_slots
        if slots is None or not tasks.coroutines.iscoroutine(coro):
            return coro, None
        wrapper = _SlotWaiter(coro, slots, self._loop)
        return wrapper, wrapper

    if sys.version_info >= (3, 14):
        def create_task(self, coro, **kwargs):
            """Create a new task in this group and return it (see the
            class docstring for ``limit``)."""
            coro, wrapper = self._fw_wrap(coro)
            if wrapper is None:
                return super().create_task(coro, **kwargs)
            try:
                return super().create_task(coro, **kwargs)
            except BaseException:
                wrapper._abandon()
                raise
    else:
        def create_task(self, coro, *, name=None, context=None):
            """Create a new task in this group and return it (see the
            class docstring for ``limit``)."""
            coro, wrapper = self._fw_wrap(coro)
            if wrapper is None:
                return super().create_task(coro, name=name, context=context)
            try:
                return super().create_task(coro, name=name, context=context)
            except BaseException:
                wrapper._abandon()
                raise


gather = _frame_skipped_by_asyncio_warnings(gather)
