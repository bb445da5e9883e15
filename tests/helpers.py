"""Helpers shared by several test modules.

conftest.py holds the harness itself (loops, VirtualClock, Tracer,
trace_scenario, parity); this module holds what the test modules used to
repeat on top of it:

* ``Boom``, ``BaseBoom`` and ``MyCancelled``, the exceptions the
  scenarios raise;
* the child model of the differential tests of gather(), wait() and
  as_completed(): the ``Child`` description, the hypothesis strategies for
  a child's outcome and a future's resolution, ``AwaitableChild``, the
  exception a child raises itself, the driver's gate futures and external
  cancellations, running the main task and recording the children's final
  states;
* ``note_first_difference`` for the differential properties;
* ``worker_outcome``, how the scripted workers of the gather, wait and
  shield tests end (record, then raise or return);
* debug mode (``PYTHONASYNCIODEBUG=1``, ``-X dev``): ``ASYNCIO_DEBUG``,
  ``strip_origin``, ``creation_site`` and ``origin_frames`` for the
  "Coroutine created at" traceback that coroutine origin tracking adds to a
  "never awaited" warning, ``strip_created_at`` for the " created at
  file:line" of a future's repr;
* the TaskGroup trace helpers of test_taskgroup.py and
  test_taskgroup_differential.py: ``norm``, ``canon``, ``TASKS_N``,
  ``JumpClock``, ``per_jump`` and ``install_factory``.
"""

import asyncio
import bisect
import os
import re
import sys
import warnings
from dataclasses import dataclass
from typing import Tuple

from hypothesis import note
from hypothesis import strategies as st

from conftest import TASKS_KIND, VirtualClock, normalize_addresses


class Boom(Exception):
    pass


# 3.14 records call-graph edges (asyncio.capture_call_graph), raises from
# get_event_loop() without a current loop and deprecates the policy API.
PY314 = sys.version_info >= (3, 14)


def reset_event_loop_policy():
    """asyncio.set_event_loop_policy(None), without 3.14's
    DeprecationWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(None)


def unhashable_message(obj, role):
    """The running interpreter's TypeError text for hashing ``obj`` as
    ``role``: "a dict key" or "a set element" (3.14 names both;
    "unhashable type: 'X'" before)."""
    try:
        if role == "a dict key":
            {obj: None}
        else:
            {obj}
    except TypeError as e:
        return str(e)
    raise AssertionError(f"{obj!r} is hashable")


class GraphWatch:
    """Snapshots of the 3.14 call graph: for each tracked future, the
    labels of the tracked futures that ``asyncio.capture_call_graph()``
    shows awaiting it (sorted; "?" for an untracked one).  Before 3.14 a
    snapshot reads None for every future (there is no call graph).

    ``each_iteration(n)`` takes a snapshot from a plain loop callback once
    per loop iteration, for ``n`` iterations: it runs where the callbacks
    scheduled before it in the previous iteration have run, so it also
    sees the moment between a child finishing and the done-callback that
    removes its edge."""

    def __init__(self, loop):
        self.loop = loop
        self.tracked = []
        self.log = []

    def track(self, label, fut):
        self.tracked.append((label, fut))
        return fut

    def label(self, fut):
        for label, f in self.tracked:
            if f is fut:
                return label
        return "?"

    def edges(self, fut):
        if not PY314:
            return None
        if not isinstance(fut, asyncio.Future):
            # a pure-Python future: capture_call_graph() rejects it; its own
            # set stays empty (asyncio's C functions ignore it)
            return sorted(self.label(w)
                          for w in fut._asyncio_awaited_by or ())
        graph = asyncio.capture_call_graph(fut, limit=0)
        return sorted(self.label(g.future) for g in graph.awaited_by)

    def snap(self, point):
        self.log.append((point, [(label, self.edges(f))
                                 for label, f in self.tracked]))

    def each_iteration(self, n, tag="tick"):
        def tick(i):
            self.snap((tag, i))
            if i + 1 < n:
                self.loop.call_soon(tick, i + 1)

        self.loop.call_soon(tick, 0)

    def at(self, point):
        """The edges of the snapshot taken at ``point``: {label: edges}."""
        for p, edges in self.log:
            if p == point:
                return dict(edges)
        raise KeyError(point)

    def release(self):
        """Drop the tracked futures (the log keeps only labels)."""
        self.tracked = []


def policy_loop():
    """The loop the default policy holds for this thread (or None), read
    without 3.14's DeprecationWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return getattr(asyncio.get_event_loop_policy()._local, "_loop", None)


class BaseBoom(BaseException):
    """A BaseException that Task treats like any other exception."""


class MyCancelled(asyncio.CancelledError):
    """A CancelledError subclass (the timeout tests raise it from a
    cancelled body)."""


# ---------------------------------------------------------------------------
# The child model of the gather / wait / as_completed differential tests
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Child:
    """One distinct child of a differential scenario.

    ``kind``: gather: coro | task | awaitable | future | pyfuture;
    as_completed: the same; wait: task | pytask | future | pyfuture | coro.
    """

    kind: str
    # coroutine-like children: ("sleep",) and the suspensions of the module
    # (gather, as_completed: ("future", step); as_completed: ("timed",
    # delay) on a virtual clock; wait: ("gate", step), ("sleep_t", seconds))
    suspend: Tuple[Tuple, ...] = ()
    # ("return",) ("raise",) ("raise_base",) ("self_cancel", msg)
    # ("ext_cancel", step, msg)
    outcome: Tuple = ("return",)
    catch_cancel: bool = False
    # futures: ("result", step) ("exception", step) ("cancel", step, msg)
    # and, in wait(), ("never",); step -1 resolves the future before the
    # call under test
    resolve: Tuple = ("result", 0)


def child_outcomes(steps, messages, *, raise_twice=False):
    """Strategy for ``Child.outcome``; ``raise_twice`` draws ("raise",)
    twice as often (wait())."""
    options = [st.just(("return",)), st.just(("raise",))]
    if raise_twice:
        options.append(st.just(("raise",)))
    options += [
        st.just(("raise_base",)),
        st.tuples(st.just("self_cancel"), messages),
        st.tuples(st.just("ext_cancel"), steps, messages),
    ]
    return st.one_of(*options)


def future_resolutions(steps, messages, *, never=False):
    """Strategy for ``Child.resolve``: half of the resolutions at step -1
    (done before the call); with ``never``, also ("never",)."""
    resolve_steps = st.one_of(st.just(-1), steps)
    options = [
        st.tuples(st.just("result"), resolve_steps),
        st.tuples(st.just("exception"), resolve_steps),
        st.tuples(st.just("cancel"), resolve_steps, messages),
    ]
    if never:
        options.append(st.just(("never",)))
    return st.one_of(*options)


class AwaitableChild:
    """A non-coroutine awaitable; its body coroutine is created only when
    awaited (so a wrapper cancelled before it starts leaves nothing
    un-awaited)."""

    def __init__(self, make_body):
        self.make_body = make_body

    def __await__(self):
        return self.make_body().__await__()


def cancelled_error(msg):
    """CancelledError(msg), or CancelledError() when ``msg`` is None."""
    return asyncio.CancelledError(*(() if msg is None else (msg,)))


def numbered_message(i, msg):
    """A cancellation message that names child ``i`` ("m" -> "m3"), or
    None."""
    return None if msg is None else f"{msg}{i}"


def own_exception(sc, i, outcome, *, numbered=False):
    """The exception child ``i`` raises itself for ``outcome`` (a
    ``Child.outcome``): ("raise",) Boom, ("raise_base",) BaseBoom,
    ("self_cancel", msg) CancelledError(msg) -- with ``numbered``,
    CancelledError(numbered_message(i, msg)) --, labelled ``c<i>.exc``
    and recorded as ``c<i>:raise``; None for the other outcomes."""
    kind = outcome[0]
    if kind == "raise":
        exc = Boom(f"c{i}")
    elif kind == "raise_base":
        exc = BaseBoom(f"c{i}")
    elif kind == "self_cancel":
        msg = outcome[1]
        exc = cancelled_error(numbered_message(i, msg) if numbered else msg)
    else:
        return None
    sc.label(exc, f"c{i}.exc")
    sc(f"c{i}:raise", exc)
    return exc


def add_gates(loop, at, gates, i, child, kind):
    """For child ``i``'s suspensions of ``kind`` (("future", step) or
    ("gate", step)): a future in ``gates[i, j]`` that the driver resolves
    at that step (``at(step, action)``)."""
    for j, how in enumerate(child.suspend):
        if how[0] == kind:
            g = loop.create_future()
            gates[i, j] = g
            at(how[1], (lambda g=g, i=i, j=j:
                        g.done() or g.set_result((i, j))))


def add_ext_cancel(sc, at, tasks, i, step, msg):
    """At driver ``step``, cancel child ``i``'s task (``tasks[i]``, once
    known) with ``msg``, recording ``c<i>:ext-cancel``."""

    def ext_cancel():
        t = tasks.get(i)
        if t is None:
            sc(f"c{i}:ext-cancel", "not-started")
        elif not t.done():
            sc(f"c{i}:ext-cancel", t.cancel(msg), t.cancelling())

    at(step, ext_cancel)


def run_main(sc, coro):
    """Run ``coro`` as the scenario's main task to completion; record
    ``run:raised`` if the run itself raised, then ``main:state``."""
    main_task = sc.loop.create_task(coro)
    try:
        sc.run(main_task)
    except BaseException as e:  # noqa: B902 - recorded
        sc("run:raised", e)
    finally:
        # The probe of record_graph_edges() goes with the run: it must not
        # keep the children alive (their "never retrieved" reports).
        probe = getattr(sc, "fw_graph_probe", None)
        if probe is not None:
            sc.loop.fw_probes.remove(probe)
            sc.fw_graph_probe = None
    sc("main:state", sc.state(main_task))


def record_final_states(sc, n, futures, tasks):
    """Record ``c<i>:final`` for children 0..n-1: the state of the future
    child, or of the task that ran it (and whether it would log being
    destroyed while pending), or "no-task"."""
    for i in range(n):
        if i in futures:
            sc(f"c{i}:final", sc.state(futures[i]))
        elif i in tasks:
            sc(f"c{i}:final", sc.state(tasks[i]),
               tasks[i]._log_destroy_pending)
        else:
            sc(f"c{i}:final", "no-task")


def record_graph_edges(sc, futures, tasks):
    """3.14+: after every loop iteration, record ``graph`` -- which
    children (``futures``/``tasks``: key -> future, filled as they become
    known) the call graph shows awaited by which tasks -- whenever it
    changed, until run_main() returns.  Nothing before 3.14 (no call
    graph)."""
    if not PY314:
        return
    last = []

    def probe():
        snap = []
        for kind, d in (("f", futures), ("t", tasks)):
            for key, fut in sorted(d.items(), key=lambda kv: str(kv[0])):
                by = getattr(fut, "_asyncio_awaited_by", None)
                if by:
                    snap.append((kind, key, sorted(sc.label(w) for w in by)))
        if not last or snap != last[0]:
            last[:] = [snap]
            sc("graph", snap)

    sc.loop.fw_probes.append(probe)
    sc.fw_graph_probe = probe  # removed by run_main() when the run ends


def note_first_difference(got, want):
    """Note (hypothesis) the first entry where the fastwait trace ``got``
    and the stdlib trace ``want`` differ, if any."""
    if got != want:
        for a, b in zip(got, want):
            if a != b:
                note(f"first difference: fastwait {a!r} vs stdlib {b!r}")
                break


# ---------------------------------------------------------------------------
# Debug mode
# ---------------------------------------------------------------------------

#: asyncio's debug mode as new loops start in it (asyncio.coroutines'
#: _is_debug_mode(): -X dev or PYTHONASYNCIODEBUG).  A loop running in debug
#: mode turns coroutine origin tracking on (depth 10) and futures record a
#: source traceback.
ASYNCIO_DEBUG = bool(sys.flags.dev_mode or (
    not sys.flags.ignore_environment and os.environ.get("PYTHONASYNCIODEBUG")))

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
ASYNCIO_DIR = os.path.dirname(asyncio.__file__)
_ORIGIN_HEAD = "\nCoroutine created at (most recent call last)\n"
_ORIGIN_FRAME = re.compile(
    r'  File "([^"]*)", line (\d+), in (\S+)(?:\n    [^\n]*)?(?:\n|$)')


def origin_frames(text):
    """The frames of a "never awaited" warning's "Coroutine created at"
    traceback, outermost first, as (filename, lineno, funcname); None
    without one (origin tracking off when the coroutine was made)."""
    head, sep, origin = text.partition(_ORIGIN_HEAD)
    if not sep:
        return None
    # (conftest's cut_origin_at_harness)
    origin = origin.removeprefix("  [the harness]\n")
    frames = [(f, int(n), fn) for f, n, fn in _ORIGIN_FRAME.findall(origin)]
    assert frames and "".join(
        m.group(0) for m in _ORIGIN_FRAME.finditer(origin)) == origin, text
    return frames


def strip_origin(text, *, made_by_tests=True):
    """A "never awaited" message without the origin traceback debug mode
    adds to it.  Where there is one, its innermost frame -- the frame that
    created the coroutine -- must be the test suite's own (with
    ``made_by_tests``): the warning names the program's line, as asyncio's
    does for a coroutine the program made."""
    frames = origin_frames(text)
    if frames is not None and made_by_tests:
        assert frames[-1][0].startswith(TESTS_DIR + os.sep), text
    # (also what creation_site() made of it)
    return text.partition(_ORIGIN_HEAD)[0].partition(_SITE_HEAD)[0]


def creation_site(text):
    """A "never awaited" message with its origin traceback cut to the frame
    of the program that made the coroutine: the innermost frame not of
    asyncio/*.py.  For comparing fastwait's warning with asyncio's:
    fastwait, being C, puts no asyncio frames there (README, "Consequences
    of being C code"), and the frames further out (the test's harness, one
    call per implementation) are not the primitive's."""
    frames = origin_frames(text)
    if frames is None:
        return text
    site = [f for f in frames if not f[0].startswith(ASYNCIO_DIR + os.sep)]
    return (text.partition(_ORIGIN_HEAD)[0] + _SITE_HEAD
            + "%r]" % (site[-1:],))


_SITE_HEAD = " [created at "


_CREATED_AT = re.compile(r" created at (\S+):(\d+)>$")


def strip_created_at(text):
    """(repr without debug mode's " created at file:line" suffix, the file
    and line or None)."""
    m = _CREATED_AT.search(text)
    if m is None:
        return text, None
    return text[:m.start()] + ">", (m.group(1), int(m.group(2)))


# TaskGroup traces
# ---------------------------------------------------------------------------

_TASK_NAME = re.compile(r"Task-\d+")


def norm(text):
    """Addresses and the global Task-N counter removed from a text."""
    return _TASK_NAME.sub("Task-N", normalize_addresses(text))


def canon(trace):
    """A trace as a multiset per loop iteration (Task-N names, which come
    from a process-wide counter, normalized)."""
    return sorted((e[0], norm(repr(e[1:]))) for e in trace)


#: The task and error counts in a TaskGroup's repr() (README difference
#: #6: the native group's may lag asyncio's while the group exits).
TASKS_N = re.compile(r" (?:tasks|errors)=\d+")


class JumpClock(VirtualClock):
    """A VirtualClock that remembers the loop iteration of every jump and
    the time it jumped to."""

    def __init__(self):
        super().__init__()
        self.jumps = []
        self.times = []
        self.start = self.now

    def advance(self, dt):
        super().advance(dt)
        self.jumps.append(asyncio.get_running_loop().fw_iteration)
        self.times.append(self.now)


def per_jump(trace, clock):
    """Iteration numbers made relative to the last clock jump: (the time
    it jumped to -- the start time before the first jump --, iterations
    since).  README's allowed difference #4: where the stdlib runs a
    done-callback that changes nothing in an iteration of its own just
    before the idle loop jumps to its next timer, fastwait jumps one
    iteration sooner; and #5: a stale deadline
    of fastwait's one loop timer wakes an idle loop once, a jump after
    which nothing happens.  Every event keeps its place relative to the
    jumps that lead to it (and its virtual time)."""
    out = []
    for e in trace:
        j = bisect.bisect_right(clock.jumps, e[0])
        at_ = (clock.times[j - 1], e[0] - clock.jumps[j - 1]) if j else (
            clock.start, e[0])
        out.append((at_,) + e[1:])
    return out


def install_factory(loop, kind):
    """Give ``loop`` a task factory of its own (``kind``: "task" for
    asyncio.Task, "pytask" for the pure-Python Task, None: leave the
    axis's factory), eager on the eager axis.  A factory that is not
    asyncio's own makes fastwait watch its children with done-callbacks
    (its "callback" mode)."""
    if kind is None:
        return
    cls = asyncio.Task if kind == "task" else asyncio.tasks._PyTask
    if TASKS_KIND == "eager":
        base = asyncio.create_eager_task_factory(cls)
    else:
        def base(loop, coro, **kwargs):
            return cls(coro, loop=loop, **kwargs)

    def factory(loop, coro, *, eager_start=None, **kwargs):
        # uvloop on 3.13 passes eager_start=None.
        assert eager_start is None
        return base(loop, coro, **kwargs)

    loop.set_task_factory(factory)


async def stepping_child(n, exc=None):
    """A child that suspends n times (asyncio.sleep(0)), then raises exc or
    returns n (the call-graph tests' child)."""
    for _ in range(n):
        await asyncio.sleep(0)
    if exc is not None:
        raise exc
    return n


def worker_outcome(sc, name, exc, result):
    """The end of a scripted worker: record ``{name}:raise`` and raise
    ``exc`` (labelled ``{name}.exc``), or record ``{name}:return`` and
    return ``result``."""
    if exc is not None:
        sc.label(exc, f"{name}.exc")
        sc(f"{name}:raise", exc)
        raise exc
    sc(f"{name}:return", result)
    return result
