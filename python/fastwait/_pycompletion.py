"""CompletionQueue in pure Python, on the stdlib.

The reference for the C implementation (``fastwait._fastwait.CompletionQueue``,
see src/_fastwait/completion.c) and the implementation used without the
extension (``FASTWAIT_NO_EXTENSIONS=1``, or off CPython).  Same API, same
errors; the one difference is when the completion of a coroutine that the
queue turned into a task is seen: the C queue learns it inside the child
task's last step, this one through a done-callback in the next loop
iteration (as both do for futures and tasks added from outside).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
from asyncio import futures


class CompletionQueue:
    """Hand out futures and tasks in the order they complete.

    ``add()`` takes futures, tasks, coroutines (which become tasks) and
    other awaitables at any time, in O(1); each completion costs O(1).
    ``next()`` waits for the next completed one (optionally with a
    timeout), ``poll()`` returns it without waiting, ``async for`` iterates
    until nothing is left, ``len()`` counts what is pending or ready.  As an
    async context manager, the exit cancels what is still pending and waits
    for it.
    """

    def __init__(self, aws=(), /):
        self._loop = None
        self._pending = set()
        self._ready = collections.deque()
        self._ready_set = set()  # the same, for O(1) membership
        self._waiters = collections.deque()
        self._drainers = collections.deque()
        self._closed = False
        for aw in aws:
            self.add(aw)

    # -- adding ---------------------------------------------------------

    def _bind(self, loop):
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise ValueError(
                "The awaitable belongs to a different loop than the one the "
                "CompletionQueue is bound to")

    def add(self, aw, /):
        """Add an awaitable; return the future or task that stands for it."""
        if self._closed:
            if inspect.iscoroutine(aw):
                aw.close()
            raise RuntimeError("add() on a closed CompletionQueue")
        if futures.isfuture(aw):
            self._bind(futures._get_loop(aw))
            if aw in self._pending or aw in self._ready_set:
                raise ValueError(f"{aw!r} is already in the CompletionQueue")
            fut = aw
        else:
            # Coroutines and other awaitables run on the running loop,
            # which must be the queue's.
            try:
                loop = asyncio.get_running_loop()
                self._bind(loop)
            except BaseException:
                if inspect.iscoroutine(aw):
                    aw.close()
                raise
            fut = asyncio.ensure_future(aw, loop=loop)
        if fut.done():
            self._push_ready(fut)
        else:
            self._pending.add(fut)
            fut.add_done_callback(self._on_completion)
        return fut

    def _on_completion(self, fut):
        try:
            self._pending.remove(fut)
        except KeyError:
            return
        self._push_ready(fut)
        if not self._pending:
            while self._drainers:
                waiter = self._drainers.popleft()
                if not waiter.done():
                    waiter.set_result(None)

    def _push_ready(self, fut):
        self._ready.append(fut)
        self._ready_set.add(fut)
        self._wake_one()

    def _wake_one(self):
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # -- taking ---------------------------------------------------------

    def poll(self):
        """The next completed future or task, or None when none is ready."""
        return self._pop_ready() if self._ready else None

    def _pop_ready(self):
        fut = self._ready.popleft()
        self._ready_set.discard(fut)
        if not self._pending and not self._ready:
            # Run dry: every waiting consumer must end (QueueEmpty /
            # StopAsyncIteration), not wait for ever.
            while self._waiters:
                self._wake_one()
        return fut

    async def next(self, timeout=None):
        """Wait for the next completed future or task and return it."""
        return await self._next(timeout, anext=False)

    async def _next(self, timeout, anext):
        self._bind(asyncio.get_running_loop())
        timed_out = False
        handle = None

        def on_timeout():
            nonlocal timed_out
            timed_out = True
            if not waiter.done():
                waiter.set_result(None)

        try:
            while True:
                if self._ready:
                    return self._pop_ready()
                if timed_out:
                    raise TimeoutError
                if not self._pending:
                    if anext:
                        raise StopAsyncIteration
                    raise asyncio.QueueEmpty(
                        "next() on a CompletionQueue with nothing pending "
                        "or ready")
                waiter = self._loop.create_future()
                self._waiters.append(waiter)
                if timeout is not None and handle is None:
                    handle = self._loop.call_later(timeout, on_timeout)
                try:
                    await waiter
                except BaseException:
                    try:
                        self._waiters.remove(waiter)
                    except ValueError:
                        pass
                    # A wake-up this waiter got (a result) goes to the
                    # next; one cancelled while waiting took none.
                    if self._ready and waiter.done() and not waiter.cancelled():
                        self._wake_one()
                    raise
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
        finally:
            if handle is not None:
                handle.cancel()

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await self._next(None, anext=True)

    # -- ending ---------------------------------------------------------

    def cancel(self, msg=None):
        """Cancel every pending future and task; return how many accepted."""
        return sum(bool(f.cancel(msg=msg)) for f in list(self._pending))

    def close(self):
        """Refuse further add() calls; what was added stays."""
        self._closed = True

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        self._closed = True
        self.cancel()
        while self._pending:
            waiter = self._loop.create_future()
            self._drainers.append(waiter)
            await waiter
        return False

    # -- looking --------------------------------------------------------

    def __len__(self):
        return len(self._pending) + len(self._ready)

    @property
    def pending(self):
        """How many added awaitables are not done yet."""
        return len(self._pending)

    @property
    def ready(self):
        """How many are done and not yet handed out."""
        return len(self._ready)

    @property
    def closed(self):
        """True after close() or __aexit__."""
        return self._closed

    def __repr__(self):
        closed = " closed" if self._closed else ""
        return (f"<CompletionQueue pending={len(self._pending)} "
                f"ready={len(self._ready)}{closed}>")
