# Type stubs for fastwait.
#
# fastwait.gather must type exactly like asyncio.gather: the overloads below
# give the same signatures as typeshed's stdlib/asyncio/tasks.pyi for
# Python 3.11+ (positional-only awaitables; one overload per arity 1..6
# returning a tuple, then a variadic one returning a list; first with
# return_exceptions: Literal[False], then with return_exceptions: bool, where
# every element may also be a BaseException).  Keep them in step when typeshed
# changes.  TaskGroup is declared here with typeshed's public signatures
# (its private attributes do not exist in the C class).  The other names are
# the stdlib's own objects, or native versions with the same signatures, so
# they are re-exported from asyncio's stubs.
# tests/typing/example.py checks these stubs with mypy --strict.

import sys
from asyncio import (
    ALL_COMPLETED as ALL_COMPLETED,
    AbstractEventLoop,
    FIRST_COMPLETED as FIRST_COMPLETED,
    FIRST_EXCEPTION as FIRST_EXCEPTION,
    Future,
    Task,
    Timeout as Timeout,
    as_completed as as_completed,
    timeout as timeout,
    timeout_at as timeout_at,
    wait as wait,
    wait_for as wait_for,
)
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Coroutine,
    Generator,
    Iterable,
)
from contextvars import Context
from types import TracebackType
from typing import Any, Final, Literal, TypeAlias, TypeVar, final, overload

from typing_extensions import Self, disjoint_base

__all__ = (
    "ALL_COMPLETED",
    "CompletionQueue",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "NATIVE",
    "TaskGroup",
    "Timeout",
    "as_completed",
    "gather",
    "install",
    "installed",
    "race",
    "shield",
    "timeout",
    "timeout_at",
    "uninstall",
    "wait",
    "wait_for",
)

__version__: Final[str]

#: True when the C extension is in use (False off CPython or with
#: FASTWAIT_NO_EXTENSIONS=1, where every name is the stdlib's object).
NATIVE: Final[bool]

#: The primitives implemented natively in this build.
NATIVE_NAMES: Final[frozenset[str]]

def install() -> bool: ...
def uninstall() -> None: ...
def installed() -> bool: ...

_T = TypeVar("_T")
_A = TypeVar("_A")
_B = TypeVar("_B")
_C = TypeVar("_C")
_D = TypeVar("_D")
_E = TypeVar("_E")
_F = TypeVar("_F")

# What gather accepts for one child: a future, a coroutine or any awaitable
# (before 3.12 also a generator-based coroutine).
if sys.version_info >= (3, 12):
    _Aw: TypeAlias = Future[_T] | Awaitable[_T]
else:
    _Aw: TypeAlias = Future[_T] | Generator[Any, None, _T] | Awaitable[_T]

# typeshed (stdlib/asyncio/tasks.pyi, 3.10+): _FutureLike[_T] is
# Future[_T] | Awaitable[_T].
def shield(arg: Future[_T] | Awaitable[_T]) -> Future[_T]: ...

# fastwait's own keyword arguments (docs/extras.md): limit=, timeout= and
# eager= on every overload; with timeout= and return_exceptions=True a child
# cut short by the deadline is a TimeoutError, covered by BaseException.
# return_exceptions=False (the default): the results themselves.
@overload
def gather(  # type: ignore[overload-overlap]
    aw1: _Aw[_A], /, *, return_exceptions: Literal[False] = False,
    limit: int | None = None, timeout: float | None = None, eager: bool = False
) -> Future[tuple[_A]]: ...
@overload
def gather(  # type: ignore[overload-overlap]
    aw1: _Aw[_A], aw2: _Aw[_B], /, *, return_exceptions: Literal[False] = False,
    limit: int | None = None, timeout: float | None = None, eager: bool = False
) -> Future[tuple[_A, _B]]: ...
@overload
def gather(  # type: ignore[overload-overlap]
    aw1: _Aw[_A], aw2: _Aw[_B], aw3: _Aw[_C], /, *,
    return_exceptions: Literal[False] = False,
    limit: int | None = None, timeout: float | None = None, eager: bool = False,
) -> Future[tuple[_A, _B, _C]]: ...
@overload
def gather(  # type: ignore[overload-overlap]
    aw1: _Aw[_A], aw2: _Aw[_B], aw3: _Aw[_C], aw4: _Aw[_D], /, *,
    return_exceptions: Literal[False] = False,
    limit: int | None = None, timeout: float | None = None, eager: bool = False,
) -> Future[tuple[_A, _B, _C, _D]]: ...
@overload
def gather(  # type: ignore[overload-overlap]
    aw1: _Aw[_A], aw2: _Aw[_B], aw3: _Aw[_C], aw4: _Aw[_D], aw5: _Aw[_E], /, *,
    return_exceptions: Literal[False] = False,
    limit: int | None = None, timeout: float | None = None, eager: bool = False,
) -> Future[tuple[_A, _B, _C, _D, _E]]: ...
@overload
def gather(  # type: ignore[overload-overlap]
    aw1: _Aw[_A], aw2: _Aw[_B], aw3: _Aw[_C], aw4: _Aw[_D], aw5: _Aw[_E], aw6: _Aw[_F], /, *,
    return_exceptions: Literal[False] = False,
    limit: int | None = None, timeout: float | None = None, eager: bool = False,
) -> Future[tuple[_A, _B, _C, _D, _E, _F]]: ...
@overload
def gather(  # type: ignore[overload-overlap]
    *coros_or_futures: _Aw[_T], return_exceptions: Literal[False] = False,
    limit: int | None = None, timeout: float | None = None, eager: bool = False
) -> Future[list[_T]]: ...

# return_exceptions=True (or a bool): each element may be an exception.
@overload
def gather(
    aw1: _Aw[_A], /, *, return_exceptions: bool,
    limit: int | None = None, timeout: float | None = None, eager: bool = False
) -> Future[tuple[_A | BaseException]]: ...
@overload
def gather(
    aw1: _Aw[_A], aw2: _Aw[_B], /, *, return_exceptions: bool,
    limit: int | None = None, timeout: float | None = None, eager: bool = False
) -> Future[tuple[_A | BaseException, _B | BaseException]]: ...
@overload
def gather(
    aw1: _Aw[_A], aw2: _Aw[_B], aw3: _Aw[_C], /, *, return_exceptions: bool,
    limit: int | None = None, timeout: float | None = None, eager: bool = False
) -> Future[tuple[_A | BaseException, _B | BaseException, _C | BaseException]]: ...
@overload
def gather(
    aw1: _Aw[_A], aw2: _Aw[_B], aw3: _Aw[_C], aw4: _Aw[_D], /, *, return_exceptions: bool,
    limit: int | None = None, timeout: float | None = None, eager: bool = False
) -> Future[
    tuple[_A | BaseException, _B | BaseException, _C | BaseException, _D | BaseException]
]: ...
@overload
def gather(
    aw1: _Aw[_A], aw2: _Aw[_B], aw3: _Aw[_C], aw4: _Aw[_D], aw5: _Aw[_E], /, *,
    return_exceptions: bool,
    limit: int | None = None, timeout: float | None = None, eager: bool = False,
) -> Future[
    tuple[
        _A | BaseException,
        _B | BaseException,
        _C | BaseException,
        _D | BaseException,
        _E | BaseException,
    ]
]: ...
@overload
def gather(
    aw1: _Aw[_A], aw2: _Aw[_B], aw3: _Aw[_C], aw4: _Aw[_D], aw5: _Aw[_E], aw6: _Aw[_F], /, *,
    return_exceptions: bool,
    limit: int | None = None, timeout: float | None = None, eager: bool = False,
) -> Future[
    tuple[
        _A | BaseException,
        _B | BaseException,
        _C | BaseException,
        _D | BaseException,
        _E | BaseException,
        _F | BaseException,
    ]
]: ...
@overload
def gather(
    *coros_or_futures: _Aw[_T], return_exceptions: bool,
    limit: int | None = None, timeout: float | None = None, eager: bool = False
) -> Future[list[_T | BaseException]]: ...

# race(): the first successful result; one overload per arity 1..4 giving
# the union of the children's result types, then a variadic one.
@overload
def race(aw1: _Aw[_A], /, *, timeout: float | None = None) -> Coroutine[Any, Any, _A]: ...
@overload
def race(
    aw1: _Aw[_A], aw2: _Aw[_B], /, *, timeout: float | None = None
) -> Coroutine[Any, Any, _A | _B]: ...
@overload
def race(
    aw1: _Aw[_A], aw2: _Aw[_B], aw3: _Aw[_C], /, *, timeout: float | None = None
) -> Coroutine[Any, Any, _A | _B | _C]: ...
@overload
def race(
    aw1: _Aw[_A], aw2: _Aw[_B], aw3: _Aw[_C], aw4: _Aw[_D], /, *,
    timeout: float | None = None,
) -> Coroutine[Any, Any, _A | _B | _C | _D]: ...
@overload
def race(*aws: _Aw[_T], timeout: float | None = None) -> Coroutine[Any, Any, _T]: ...

# typeshed's asyncio._CoroutineLike
if sys.version_info >= (3, 12):
    _CoroutineLike: TypeAlias = Coroutine[Any, Any, _T]
else:
    _CoroutineLike: TypeAlias = Generator[Any, None, _T] | Coroutine[Any, Any, _T]

# A C class with its own instance layout (PEP 800).
@disjoint_base
class TaskGroup:
    """Asynchronous context manager for managing groups of tasks."""

    # The private names typeshed declares for asyncio.TaskGroup (README:
    # "Private attributes provided for compatibility" lists all of them).
    _loop: AbstractEventLoop | None
    _tasks: set[Task[Any]]
    def _on_task_done(self, task: Task[object], /) -> None: ...
    def __init__(self, *, limit: int | None = None) -> None: ...
    @property
    def limit(self) -> int | None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        et: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    if sys.version_info >= (3, 14):
        def create_task(
            self,
            coro: _CoroutineLike[_T],
            *,
            name: str | None = None,
            context: Context | None = None,
            eager_start: bool | None = None,
        ) -> Task[_T]: ...
    else:
        def create_task(
            self,
            coro: _CoroutineLike[_T],
            *,
            name: str | None = None,
            context: Context | None = None,
        ) -> Task[_T]: ...
    # 3.15's TaskGroup.cancel() (gh-108951), on every version.
    def cancel(self) -> None: ...

@final
class CompletionQueue:
    """Hand out futures and tasks in the order they complete."""

    def __new__(cls, aws: Iterable[Future[Any] | Awaitable[Any]] = (), /) -> Self: ...
    def add(self, aw: Future[_T] | Awaitable[_T], /) -> Future[_T]: ...
    def poll(self) -> Future[Any] | None: ...
    async def next(self, timeout: float | None = None) -> Future[Any]: ...
    def cancel(self, msg: Any | None = None) -> int: ...
    def close(self) -> None: ...
    def __len__(self) -> int: ...
    def __aiter__(self) -> AsyncIterator[Future[Any]]: ...
    async def __anext__(self) -> Future[Any]: ...
    async def __aenter__(self) -> CompletionQueue: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...
    @property
    def pending(self) -> int: ...
    @property
    def ready(self) -> int: ...
    @property
    def closed(self) -> bool: ...
