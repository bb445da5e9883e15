"""fastwait: native (C) drop-in replacements for asyncio's waiting primitives.

``fastwait.gather``, ``fastwait.wait``, ``fastwait.as_completed``,
``fastwait.shield``, ``fastwait.TaskGroup``, the timeouts and
``fastwait.wait_for`` are implemented in C (``fastwait._fastwait``); they
behave exactly like their :mod:`asyncio` namesakes of the running
interpreter, only faster (``as_completed`` also offers 3.13's ``async for``
on 3.11 and 3.12).  ``fastwait.CompletionQueue`` goes beyond the stdlib: it hands
out futures and tasks as they complete, O(1) per addition and per
completion (the fix for the quadratic ``wait(FIRST_COMPLETED)`` loop).

Beyond asyncio too (docs/extras.md): ``gather()``'s keyword-only
``limit=``, ``timeout=`` and ``eager=``, ``TaskGroup(limit=)``, and
``fastwait.race()``.  A call without them is exactly the drop-in.

``fastwait.install()`` puts the native primitives in place of asyncio's
everywhere the stdlib binds them, so that asyncio's own modules and
libraries use them too (``uninstall()`` restores the originals,
``installed()`` tells); ``python -m fastwait``, ``FASTWAIT_INSTALL=1`` and
``pytest --fastwait`` install them before a program's first import.

``fastwait.NATIVE`` is True when the C extension is in use.  Off CPython, or
with ``FASTWAIT_NO_EXTENSIONS=1`` in the environment, ``NATIVE`` is False
and the primitives are the stdlib's own objects, except where fastwait goes
beyond the stdlib: ``gather`` and ``TaskGroup`` come from
``fastwait._pyextras`` (a call without the new arguments is the stdlib's
``asyncio.gather``; ``TaskGroup`` is a subclass of ``asyncio.TaskGroup``
that, without a limit, behaves exactly as it), and so does ``race``;
``CompletionQueue`` comes from ``fastwait._pycompletion``.  On CPython a
failed import of the extension is an error, never a silent fallback.

(PYTEST_DONT_REWRITE: with FASTWAIT_INSTALL=1 the package is imported at
start-up, before pytest could rewrite it; it has no assertions to rewrite.)
"""

import os as _os
import sys as _sys
from asyncio import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
)

__version__ = "0.1.0"

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

if (
    _sys.implementation.name != "cpython"
    or _os.environ.get("FASTWAIT_NO_EXTENSIONS", "") not in ("", "0")
):
    from asyncio import (
        Timeout,
        as_completed,
        shield,
        timeout,
        timeout_at,
        wait,
        wait_for,
    )

    from ._pycompletion import CompletionQueue
    from ._pyextras import TaskGroup, gather, race

    NATIVE = False
    _NATIVE_RACE = False
else:
    from ._fastwait import (
        CompletionQueue,
        TaskGroup,
        Timeout,
        as_completed,
        gather,
        shield,
        timeout,
        timeout_at,
        wait,
        wait_for,
    )
    from . import _fastwait as _ext

    # Temporary, until the native race() lands in the extension: the
    # pure-Python one (fastwait._pyextras), on top of the native primitives.
    _NATIVE_RACE = hasattr(_ext, "race")
    if _NATIVE_RACE:
        race = _ext.race
    else:
        from ._pyextras import race
    del _ext

    NATIVE = True

#: The primitives implemented natively in this build (the rest are the
#: stdlib's own objects, re-exported, or fastwait's pure-Python ones).
NATIVE_NAMES = (
    frozenset({
        "gather", "wait", "as_completed", "CompletionQueue",
        "Timeout", "timeout", "timeout_at", "wait_for", "shield",
        "TaskGroup",
    } | ({"race"} if _NATIVE_RACE else set()))
    if NATIVE
    else frozenset()
)

from ._install import install, installed, uninstall  # noqa: E402

del _os, _sys, _NATIVE_RACE
