"""fastwait.install(): fastwait's primitives in place of asyncio's.

asyncio's own modules look their primitives up at call time through module
attributes (``asyncio.runners`` calls ``tasks.gather`` to cancel what is left
at shutdown, ``tasks.wait_for`` enters ``timeouts.timeout`` on 3.12+, ...),
and so does code that writes ``asyncio.gather(...)``.  install() rebinds
those attributes, in every module of the asyncio package that binds a
primitive, to fastwait's object; uninstall() puts back exactly what it
replaced.  Neither touches an event loop or the event loop policy.

What install() cannot reach: a name bound before it ran (``from asyncio
import gather`` executed earlier keeps the stdlib's function).
``python -m fastwait``, ``FASTWAIT_INSTALL=1`` and the pytest plugin run
install() before the program's first import, which reaches those too.
"""

import sys as _sys
from types import ModuleType as _ModuleType
from typing import Any as _Any

#: The primitives install() rebinds (those of them that fastwait implements
#: natively in this build: ``fastwait.NATIVE_NAMES``).
NAMES = (
    "gather",
    "wait",
    "wait_for",
    "as_completed",
    "shield",
    "TaskGroup",
    "timeout",
    "timeout_at",
    "Timeout",
)

#: The modules where the stdlib defines or re-exports them.  Every other
#: module of the asyncio package that is imported when install() runs is
#: searched too (an ``asyncio.*`` module binding a primitive by name).
MODULES = {
    "asyncio": NAMES,
    "asyncio.tasks": ("gather", "wait", "wait_for", "as_completed", "shield"),
    "asyncio.taskgroups": ("TaskGroup",),
    "asyncio.timeouts": ("timeout", "timeout_at", "Timeout"),
}

# (module, attribute, the stdlib's object, fastwait's object) for each
# binding that install() replaced; empty when not installed.
_replaced: "list[tuple[_ModuleType, str, _Any, _Any]]" = []
# id -> (name, the stdlib's object), read from asyncio at the first install().
_originals: "dict[int, tuple[str, _Any]]" = {}


def _asyncio_modules() -> "list[_ModuleType]":
    import asyncio  # noqa: F401  (imports asyncio.tasks, .taskgroups, .timeouts)

    return [
        module
        for name, module in sorted(_sys.modules.items())
        if (name == "asyncio" or name.startswith("asyncio.")) and module is not None
    ]


def install() -> bool:
    """Put fastwait's primitives in place of asyncio's.

    Rebinds ``gather``, ``wait``, ``wait_for``, ``as_completed``,
    ``shield``, ``TaskGroup``, ``timeout``, ``timeout_at`` and ``Timeout``
    in ``asyncio``, ``asyncio.tasks``, ``asyncio.taskgroups``,
    ``asyncio.timeouts`` and any other imported ``asyncio.*`` module that
    binds the stdlib's object, so that code looking them up at call time
    (asyncio's own modules, libraries imported later) uses fastwait's.
    Idempotent (a second call also covers ``asyncio.*`` modules imported
    since the first); safe before or after an event loop exists; never
    touches a loop or the event loop policy.  Returns ``installed()``:
    without the C extension (``FASTWAIT_NO_EXTENSIONS=1``, or not CPython)
    it does nothing and returns False.
    """
    import fastwait

    if not fastwait.NATIVE:
        return False
    import asyncio

    ours = {name: getattr(fastwait, name)
            for name in NAMES if name in fastwait.NATIVE_NAMES}
    if not _originals:
        for name, replacement in ours.items():
            original = getattr(asyncio, name)
            if original is not replacement:
                _originals[id(original)] = (name, original)
    for module in _asyncio_modules():
        for attr, value in list(vars(module).items()):
            found = _originals.get(id(value))
            if found is None or found[1] is not value:
                continue
            replacement = ours[found[0]]
            setattr(module, attr, replacement)
            _replaced.append((module, attr, value, replacement))
    return installed()


def uninstall() -> None:
    """Restore asyncio's primitives where install() replaced them.

    Each binding install() changed gets the stdlib's object back, unless
    something else has rebound it since (then it is left as it is).
    Idempotent; returns None.
    """
    while _replaced:
        module, attr, original, replacement = _replaced.pop()
        if vars(module).get(attr) is replacement:
            setattr(module, attr, original)


def installed() -> bool:
    """Whether fastwait's primitives are in place of asyncio's: True after
    install() (until uninstall()), False without the C extension, where
    install() is a no-op."""
    if not _replaced:
        return False
    return all(vars(module).get(attr) is replacement
               for module, attr, _, replacement in _replaced)
