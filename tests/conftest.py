"""Test harness for the fastwait parity suite.

Axes (environment):
  FASTWAIT_TEST_LOOP   asyncio (default) | uvloop
  FASTWAIT_TEST_TASKS  lazy (default)    | eager   (eager_task_factory, 3.12+)
  PYTHONASYNCIODEBUG=1 with python -X dev   asyncio's debug mode (source
                       tracebacks, coroutine origins, slow-callback reports;
                       the matrix's pytest-py3.12-asyncio-lazy-debug axis)
  CI=true              uvloop must be importable when asked for, any
                       skipped test fails the session, and hypothesis uses
                       the fixed "ci" profile (else "dev"; override with
                       FASTWAIT_HYPOTHESIS_PROFILE).
  FASTWAIT_HYPOTHESIS_PROFILE=long  the long profile for the differential
                       tests before an issue is resolved: random, many
                       examples (FASTWAIT_HYPOTHESIS_EXAMPLES, default
                       20000 per test).
  FASTWAIT_PRINT_TRACES=1  print the traces ``parity`` (and the other
                       parity helpers) compare (use -s).

Every behavioural test takes the ``impl`` fixture (``asyncio`` or
``fastwait``) and calls ``impl.gather(...)``.  Scenario tests usually go
through ``parity(impl, scenario)``: the scenario runs once with
``impl.gather`` and once with ``asyncio.gather``, each on a fresh loop of the
active axis, and the two traces must be equal.  A trace entry is
``(loop iteration, event, *details)``; objects are replaced by labels so that
identity relations ("the outer raised the child's own exception") are part
of the comparison.

Loop iterations are counted exactly on the default loop (a test-only
subclass overriding ``_run_once``).  On uvloop a ticker callback that stays
first in the ready queue counts them; that is exact for callbacks and close
enough for timers (uvloop runs timers before the ready queue).
"""

import asyncio
import gc
import inspect
import itertools
import os
import re
import selectors
import sys
import warnings
import weakref

import pytest

try:  # pragma: no cover - depends on the environment
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover
    settings = None


# ---------------------------------------------------------------------------
# Axes
# ---------------------------------------------------------------------------

CI = os.environ.get("CI", "") == "true"
LOOP_KIND = os.environ.get("FASTWAIT_TEST_LOOP", "asyncio") or "asyncio"
TASKS_KIND = os.environ.get("FASTWAIT_TEST_TASKS", "lazy") or "lazy"
PY = sys.version_info[:3]
HAS_EAGER = hasattr(asyncio, "eager_task_factory")

#: Iterations a single run of the loop may take before the harness calls it
#: a runaway (a deterministic test needs a handful).
RUNAWAY_LIMIT = 100_000


def _usage_error(msg):
    pytest.exit(msg, returncode=pytest.ExitCode.USAGE_ERROR)


def pytest_configure(config):
    _register_markers(config)
    if LOOP_KIND not in ("asyncio", "uvloop"):
        _usage_error(
            f"FASTWAIT_TEST_LOOP={LOOP_KIND!r}: expected 'asyncio' or 'uvloop'"
        )
    if TASKS_KIND not in ("lazy", "eager"):
        _usage_error(
            f"FASTWAIT_TEST_TASKS={TASKS_KIND!r}: expected 'lazy' or 'eager'"
        )
    if TASKS_KIND == "eager" and not HAS_EAGER:
        _usage_error(
            "FASTWAIT_TEST_TASKS=eager needs asyncio.eager_task_factory "
            f"(Python 3.12+); this is Python {'.'.join(map(str, PY))}"
        )
    if LOOP_KIND == "uvloop" and uvloop is None and CI:
        _usage_error(
            "FASTWAIT_TEST_LOOP=uvloop but uvloop is not importable "
            "(CI=true makes this a hard failure)"
        )


# ---------------------------------------------------------------------------
# Hypothesis profiles
# ---------------------------------------------------------------------------

if settings is not None:
    settings.register_profile(
        "ci",
        derandomize=True,
        max_examples=150,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile(
        "dev",
        max_examples=1000,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile(
        "long",
        max_examples=int(os.environ.get("FASTWAIT_HYPOTHESIS_EXAMPLES", "20000")),
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    HYPOTHESIS_PROFILE = os.environ.get(
        "FASTWAIT_HYPOTHESIS_PROFILE", "ci" if CI else "dev"
    )
    settings.load_profile(HYPOTHESIS_PROFILE)
else:  # pragma: no cover
    HYPOTHESIS_PROFILE = None


# ---------------------------------------------------------------------------
# Header and skip accounting
# ---------------------------------------------------------------------------

def pytest_report_header(config):
    try:
        import fastwait

        native = repr(fastwait.NATIVE)
    except Exception as exc:  # pragma: no cover - shown, tests then fail
        native = f"<import failed: {exc!r}>"
    loop = LOOP_KIND
    if LOOP_KIND == "uvloop":
        loop += f" {uvloop.__version__}" if uvloop else " (NOT INSTALLED)"
    return [
        f"fastwait axes: python={'.'.join(map(str, PY))} loop={loop} "
        f"tasks={TASKS_KIND} fastwait.NATIVE={native} CI={CI} "
        f"hypothesis-profile={HYPOTHESIS_PROFILE}",
        "fastwait: virtual-clock tests always use the default asyncio loop",
    ]


_SKIPPED = []
#: Tests marked ``axis_independent`` (subprocess tests of the package's
#: entry points, which start their own interpreter and no loop of the
#: axis) run once per interpreter, on the first axis (asyncio, lazy); on
#: the others they are deselected, and the header says how many.
FIRST_AXIS = LOOP_KIND == "asyncio" and TASKS_KIND == "lazy"
_DESELECTED_ELSEWHERE = []


#: Tests marked ``needs_eager_factory`` exercise asyncio.eager_task_factory,
#: which 3.12 added: on 3.11 they are deselected, and the summary says how
#: many (never a silent skip).
_DESELECTED_NO_EAGER = []


def _register_markers(config):
    config.addinivalue_line(
        "markers",
        "axis_independent: runs on the asyncio/lazy axis only (deselected, "
        "and counted in the summary, on the others)")
    config.addinivalue_line(
        "markers",
        "needs_eager_factory: uses asyncio.eager_task_factory (3.12+); "
        "deselected, and counted in the summary, on 3.11")


def pytest_collection_modifyitems(session, config, items):
    keep = []
    for item in items:
        if not FIRST_AXIS and item.get_closest_marker("axis_independent"):
            _DESELECTED_ELSEWHERE.append(item)
        elif not HAS_EAGER and item.get_closest_marker("needs_eager_factory"):
            _DESELECTED_NO_EAGER.append(item)
        else:
            keep.append(item)
    dropped = _DESELECTED_ELSEWHERE + _DESELECTED_NO_EAGER
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_collection_finish(session):
    # Tests call gc.collect() a lot (finalizers are what log "exception was
    # never retrieved" / "destroyed but pending"); keep the long-lived
    # objects of the session out of those collections.
    _register_hypothesis_random()
    gc.collect()
    gc.freeze()


def _register_hypothesis_random():
    """Run one hypothesis example before gc.freeze(): its first run
    registers hypothesis' global Random, and checks with
    gc.get_referrers() that something holds it; from 3.14 on frozen
    objects are not searched, so registered after the freeze the check
    fails with a HypothesisWarning (an error here) in the first
    hypothesis test of the session."""
    if settings is None:  # pragma: no cover
        return
    from hypothesis import given, strategies

    @settings(max_examples=1, database=None)
    @given(strategies.none())
    def warm_up(_):
        pass

    warm_up()


def pytest_collectreport(report):
    if report.skipped:
        _SKIPPED.append(report.nodeid or "<collection>")


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append(report.nodeid)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    tr = terminalreporter
    if _DESELECTED_ELSEWHERE:
        tr.line(f"fastwait: {len(_DESELECTED_ELSEWHERE)} axis-independent tests "
                "deselected on this axis; they run on the asyncio/lazy axis")
    if _DESELECTED_NO_EAGER:
        tr.line(f"fastwait: {len(_DESELECTED_NO_EAGER)} tests of "
                "asyncio.eager_task_factory deselected: Python 3.11 has none")
    if not _SKIPPED:
        return
    tr.section("fastwait: skipped tests", sep="=", red=CI, yellow=not CI)
    for nodeid in _SKIPPED:
        tr.line(f"SKIPPED {nodeid}")
    if CI:
        tr.line("CI=true: skipped tests fail the session", red=True)


def pytest_sessionfinish(session, exitstatus):
    if CI and _SKIPPED and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ---------------------------------------------------------------------------
# Loops
# ---------------------------------------------------------------------------

class DeadlockError(RuntimeError):
    """The loop would block forever: nothing ready, no timer, no I/O."""


class RunawayLoopError(RuntimeError):
    """A single run took more than RUNAWAY_LIMIT iterations."""


class _TestSelector(selectors.DefaultSelector):
    """Selector that never sleeps in a test.

    * while ``run_briefly`` steps the loop, every poll is non-blocking;
    * on a virtual-clock loop, a wait for a timer advances the clock instead
      of sleeping (when ``autojump`` is on);
    * a poll that would block forever with nothing registered but the
      loop's own self-pipe raises DeadlockError instead of hanging.
    """

    loop = None

    def select(self, timeout=None):
        loop = self.loop
        if loop is not None and timeout != 0:
            if loop._fw_nonblocking:
                timeout = 0
            elif timeout is None:
                if (
                    len(self.get_map()) <= 1
                    and getattr(loop, "_default_executor", None) is None
                ):
                    raise DeadlockError(
                        "the event loop would block forever: no callback is "
                        "ready, no timer is scheduled and no I/O is registered"
                    )
            elif loop.clock is not None:
                if loop.clock.autojump:
                    loop.clock.advance(timeout)
                timeout = 0
        return super().select(timeout)


class VirtualClock:
    """Virtual time for a test loop: ``loop.time()`` returns ``now``.

    With ``autojump`` (the default) an idle loop jumps straight to its next
    timer instead of sleeping; with ``autojump=False`` time moves only
    through ``advance()``.
    """

    def __init__(self, start=1000.0, autojump=True):
        self.now = float(start)
        self.autojump = autojump

    def advance(self, dt):
        if dt < 0:
            raise ValueError("cannot move a clock backwards")
        self.now += dt


class TracingEventLoop(asyncio.SelectorEventLoop):
    """The default selector loop, instrumented for tests.

    ``fw_iteration`` counts ``_run_once`` calls (exact), ``fw_probes`` are
    called after every iteration, ``clock`` is a VirtualClock or None.
    """

    def __init__(self, clock=None):
        selector = _TestSelector()
        self.clock = clock
        self.fw_iteration = 0
        self.fw_probes = []
        self._fw_nonblocking = False
        self._fw_stop_at = None
        self._fw_run_start = 0
        super().__init__(selector)
        selector.loop = self

    def time(self):
        if self.clock is not None:
            return self.clock.now
        return super().time()

    def run_forever(self):
        self._fw_run_start = self.fw_iteration
        return super().run_forever()

    def _run_once(self):
        self.fw_iteration += 1
        if self.fw_iteration - self._fw_run_start > RUNAWAY_LIMIT:
            raise RunawayLoopError(
                f"more than {RUNAWAY_LIMIT} loop iterations in one run"
            )
        super()._run_once()
        for probe in list(self.fw_probes):
            probe()
        if self._fw_stop_at is not None and self.fw_iteration >= self._fw_stop_at:
            self.stop()


if uvloop is not None:

    class TracingUVLoop(uvloop.Loop):
        """uvloop, with iterations counted by a ticker.

        The ticker is scheduled before anything else and reschedules itself,
        so it is the first ready callback of every iteration: an event seen
        by a callback of iteration k reads ``fw_iteration == k``.  Probes
        run at the start of the next iteration (the state after iteration k
        is attributed to k).  uvloop's ``stop()`` takes effect one iteration
        late, which ``run_briefly`` accounts for.
        """

        clock = None

        def __init__(self):
            super().__init__()
            self.fw_iteration = 0
            self.fw_probes = []
            self._fw_stop_at = None
            self._fw_run_start = 0
            self.fw_runaway = False
            self.call_soon(self._fw_tick)

        def run_forever(self):
            self._fw_run_start = self.fw_iteration
            return super().run_forever()

        def _fw_tick(self):
            for probe in list(self.fw_probes):
                probe()
            self.fw_iteration += 1
            if self.fw_iteration - self._fw_run_start > RUNAWAY_LIMIT:
                self.fw_runaway = True
                self.stop()
            if self._fw_stop_at is not None and self.fw_iteration >= self._fw_stop_at:
                self._fw_stop_at = None
                self.stop()
            if not self.is_closed():
                self.call_soon(self._fw_tick)

else:  # pragma: no cover
    TracingUVLoop = None


def _eager_factory_for(loop):
    factory = asyncio.eager_task_factory
    if (uvloop is not None and isinstance(loop, uvloop.Loop)
            and sys.version_info >= (3, 13)):
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):  # pragma: no cover
            params = {}
        accepts_eager_start = "eager_start" in params or any(
            p.kind is p.VAR_KEYWORD for p in params.values()
        )
        if not accepts_eager_start:
            # uvloop >= 0.22 passes ``eager_start=None`` to the task factory
            # on 3.13, which 3.13.0's eager_task_factory does not accept.
            def factory(loop, coro, *, eager_start=None, **kwargs):
                assert eager_start is None, eager_start
                return asyncio.eager_task_factory(loop, coro, **kwargs)

        else:
            # 3.14+: uvloop passes its own default ``eager_start=None``,
            # which overrides eager_task_factory's ``eager_start=True``
            # (the task then starts lazily): leave it out when None, so
            # that the eager axis is eager on uvloop too.
            def factory(loop, coro, *, eager_start=None, **kwargs):
                if eager_start is not None:
                    kwargs["eager_start"] = eager_start
                return asyncio.eager_task_factory(loop, coro, **kwargs)

    return factory


class ExceptionRecorder:
    """``loop.set_exception_handler`` target that keeps every context."""

    def __init__(self):
        self.records = []

    def __call__(self, loop, context):
        self.records.append(dict(context))

    def take(self, collect=True):
        """gc.collect() (so that finalizers log), then hand over and clear."""
        if collect:
            gc.collect()
        records, self.records = self.records, []
        return records


def new_loop(*, clock=None, tasks=None, kind=None):
    """A fresh loop for the active axes (or the given ``kind``/``tasks``).

    ``clock`` (a VirtualClock) forces the default asyncio loop.  The loop
    gets an ExceptionRecorder as ``loop.fw_exceptions``.
    """
    kind = kind or LOOP_KIND
    tasks = tasks or TASKS_KIND
    if clock is not None:
        kind = "asyncio"
    if kind == "uvloop":
        if uvloop is None:
            pytest.skip("FASTWAIT_TEST_LOOP=uvloop but uvloop is not installed")
        loop = TracingUVLoop()
    else:
        loop = TracingEventLoop(clock=clock)
    if tasks == "eager":
        if not HAS_EAGER:  # pragma: no cover - caught in pytest_configure
            raise RuntimeError("eager tasks need Python 3.12+")
        loop.set_task_factory(_eager_factory_for(loop))
    loop.fw_exceptions = ExceptionRecorder()
    loop.set_exception_handler(loop.fw_exceptions)
    return loop


def iteration(loop):
    """The loop iteration in progress (or the last one run)."""
    return loop.fw_iteration


def run(loop, main):
    """Run a coroutine (or a coroutine function) to completion on ``loop``."""
    coro = main() if callable(main) and not inspect.isawaitable(main) else main
    try:
        return loop.run_until_complete(coro)
    except BaseException:
        if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == (
            inspect.CORO_CREATED
        ):
            coro.close()
        raise
    finally:
        if getattr(loop, "fw_runaway", False):
            loop.fw_runaway = False
            raise RunawayLoopError(
                f"more than {RUNAWAY_LIMIT} loop iterations in one run"
            )


def run_briefly(loop, n=1):
    """Run exactly ``n`` iterations of ``loop`` (never blocking)."""
    if n < 1:
        raise ValueError("n must be >= 1")
    start = loop.fw_iteration
    if isinstance(loop, TracingEventLoop):
        loop._fw_stop_at = start + n
        loop._fw_nonblocking = True
        try:
            loop.run_forever()
        finally:
            loop._fw_stop_at = None
            loop._fw_nonblocking = False
    else:
        # uvloop: stop() is honoured at the end of the *next* iteration.
        if n == 1:
            loop.stop()
        else:
            loop._fw_stop_at = start + n - 1
        try:
            loop.run_forever()
        finally:
            loop._fw_stop_at = None
    ran = loop.fw_iteration - start
    if ran != n:
        raise AssertionError(f"run_briefly({n}) ran {ran} iterations")


def close_loop(loop, *, check_exceptions=True, collect=True):
    """Cancel leftover tasks, shut async generators down, close ``loop``.

    With ``check_exceptions``, exception-handler calls that nobody took
    (``loop.fw_exceptions.take()``, after gc.collect() unless ``collect`` is
    false and there were no leftover tasks) fail the test.
    """
    if loop.is_closed():
        return
    leftovers = None
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            collect = True
            loop.run_until_complete(
                asyncio.gather(*pending, return_exceptions=True)
            )
        loop.run_until_complete(loop.shutdown_asyncgens())
        del pending
        if check_exceptions:
            leftovers = loop.fw_exceptions.take(collect=collect)
    finally:
        loop.close()
    if leftovers:
        pytest.fail(
            "unexpected exception-handler calls: "
            + "; ".join(repr(describe_context(c)) for c in leftovers),
            pytrace=False,
        )


# ---------------------------------------------------------------------------
# Traces
# ---------------------------------------------------------------------------

_ADDR = re.compile(r"0x[0-9a-fA-F]+")
_PRIMITIVES = (type(None), bool, int, float, str, bytes)


def normalize_addresses(text):
    return _ADDR.sub("0x?", text)


class _StrongRef:
    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __call__(self):
        return self.obj


class Tracer:
    """Records ``(iteration, event, *details)`` entries for a loop.

    Non-primitive details are replaced by labels: objects registered with
    ``label(obj, name)`` keep their name; any other object gets ``#n`` in
    the order of first appearance, so two traces agree exactly when the
    same relations hold between the objects.  Exceptions are described as
    ``(type name, args, label, __context__ label, __cause__ label)``.
    """

    def __init__(self, loop):
        self.loop = loop
        self.events = []
        # id -> (ref, label).  Weakly referenced where possible, so that the
        # tracer does not keep futures alive (their "never retrieved" and
        # "destroyed but pending" logs must still happen); exceptions are
        # held strongly (their tracebacks are dropped before collecting).
        self._labels = {}
        self._anon = itertools.count()

    def _forget(self, key):
        self._labels.pop(key, None)

    def label(self, obj, name=None):
        key = id(obj)
        entry = self._labels.get(key)
        if entry is not None and entry[0]() is obj:
            return entry[1]
        if name is None:
            name = f"#{next(self._anon)}"
        if isinstance(obj, BaseException):
            # Strongly: a gc pass clears weak references to cyclic garbage
            # before finalizers resurrect it (a Future logging its
            # exception), and the exception must keep its label there.
            ref = _StrongRef(obj)
        else:
            try:
                ref = weakref.ref(obj, lambda _, key=key: self._forget(key))
            except TypeError:
                ref = _StrongRef(obj)
        self._labels[key] = (ref, name)
        return name

    def release_tracebacks(self):
        """Drop the tracebacks of the exceptions the tracer holds, so that
        their frames no longer keep futures alive (as they would not be
        outside a test)."""
        for ref, _ in list(self._labels.values()):
            obj = ref()
            if isinstance(obj, BaseException):
                obj.__traceback__ = None

    def describe(self, value):
        if isinstance(value, _PRIMITIVES):
            return value
        if isinstance(value, BaseException):
            return self.describe_exc(value)
        if isinstance(value, (list, tuple)):
            return type(value)(self.describe(v) for v in value)
        if isinstance(value, dict):
            return tuple(
                sorted((k, self.describe(v)) for k, v in value.items())
            )
        return self.label(value)

    def describe_exc(self, exc):
        if exc is None:
            return None
        ctx = exc.__context__
        cause = exc.__cause__
        return (
            type(exc).__name__,
            self.describe(exc.args),
            self.label(exc),
            None if ctx is None else self.label(ctx),
            None if cause is None else self.label(cause),
        )

    def state(self, fut):
        """A future's state, read without side effects.

        Uses the private attributes the stdlib itself reads (``_state``,
        ``_result``, ``_exception``, ``_log_traceback``), so no exception
        is marked retrieved and no stored CancelledError is consumed.
        """
        state = fut._state
        if state == "PENDING":
            out = ("pending",)
        elif state == "CANCELLED":
            out = ("cancelled",)
        elif fut._exception is not None:
            out = (
                "exception",
                self.describe_exc(fut._exception),
                "unretrieved" if fut._log_traceback else "retrieved",
            )
        else:
            out = ("result", self.describe(fut._result))
        if hasattr(fut, "cancelling"):
            out += (("cancelling", fut.cancelling()),)
        return out

    def __call__(self, event, *details):
        entry = (self.loop.fw_iteration, event) + tuple(
            self.describe(d) for d in details
        )
        self.events.append(entry)
        return entry

    def watch(self, fut, name):
        """Record when ``fut`` completes (by a probe: the iteration in which
        it became done) and what its done callbacks see (``name:cb``)."""
        self.label(fut, name)
        if fut.done():
            self(f"{name}:done-at-watch", self.state(fut))
            return fut
        ref = weakref.ref(fut)
        probes = self.loop.fw_probes

        def probe():
            f = ref()
            if f is None:
                probes.remove(probe)
            elif f.done():
                probes.remove(probe)
                self(f"{name}:done", self.state(f))

        def callback(f):
            self(f"{name}:cb", self.state(f))

        probes.append(probe)
        fut.add_done_callback(callback)
        return fut

    def record_exceptions(self):
        """gc.collect(), then record every exception-handler call."""
        # A context can be what keeps further garbage alive (a task holds
        # its exception's traceback, whose frames hold more objects):
        # collect again after dropping each batch, until nothing new comes.
        # First what was logged before (in the scenario, or freed by
        # reference counting as the tracebacks go), in its order.
        self.release_tracebacks()
        records = self.loop.fw_exceptions.take(collect=False)
        for desc in [describe_context(ctx, self) for ctx in records]:
            self("exception-handler", *desc)
        del records
        for _ in range(4):
            self.release_tracebacks()
            records = self.loop.fw_exceptions.take()
            if not records:
                break
            # One batch is what one gc.collect() released: its order is the
            # collector's list order, which depends on when the automatic
            # collections ran before (README, "when the cyclic GC runs";
            # debug mode's source tracebacks allocate enough to make it vary
            # from run to run), so a batch is compared as a multiset.
            batch = [describe_context(ctx, self) for ctx in records]
            for desc in sorted(batch, key=repr):
                self("exception-handler", *desc)
            del records, batch

    def record_warnings(self, caught):
        for w in caught:
            self("warning", w.category.__name__,
                 cut_origin_at_harness(str(w.message)))


_ORIGIN_HEAD = "\nCoroutine created at (most recent call last)\n"
_ORIGIN_FRAME = re.compile(
    r'  File "([^"]*)", line (\d+), in (\S+)(?:\n    [^\n]*)?(?:\n|$)')


def cut_origin_at_harness(text):
    """A "never awaited" warning with its debug-mode origin traceback (see
    helpers.origin_frames) cut below the innermost frame of this file: the
    frames from there out are the harness's, called from one line per
    implementation (on uvloop, which has no Python frames, they fall within
    the traceback's depth)."""
    head, sep, origin = text.partition(_ORIGIN_HEAD)
    if not sep:
        return text
    here = os.path.abspath(__file__)
    cut = None
    for m in _ORIGIN_FRAME.finditer(origin):
        if m.group(1) == here:
            cut = m.end()
    if cut is None:
        return text
    return head + sep + "  [the harness]\n" + origin[cut:]


_CREATED_AT = re.compile(r" created at [^\s>]+:\d+>")
_CREATED_AT_TAIL = re.compile(r"\.\.\.[^\s()<>]*:\d+>")


def describe_context(ctx, tracer=None):
    """An exception-handler context as plain data.

    A future or task in the context is described by its type, its
    coroutine's name and its state rather than by label: whether a label
    survives depends on how the object died (refcount or gc), which is not
    what the tests compare.
    """
    # Debug mode: a task's repr in the message ends with " created at
    # file:line", the last frame of its source traceback.  For a task that
    # asyncio's primitive makes that is asyncio/*.py (taskgroups.py's
    # create_task, tasks.py's gather); fastwait's C makes it on the
    # program's line (README, "Consequences of being C code";
    # test_differences.py's test_debug_mode_source_locations pins both).
    # A handle's arguments are shortened by reprlib ("<Task finishe...
    # tasks.py:695>"): then only the end of that location shows.
    message = _CREATED_AT.sub(" created at <source>>", normalize_addresses(
        str(ctx.get("message"))))
    if "source_traceback" in ctx:  # debug mode
        message = _CREATED_AT_TAIL.sub("...<source>>", message)
    out = [message]
    exc = ctx.get("exception")
    if exc is not None:
        out.append(
            tracer.describe_exc(exc)
            if tracer
            else (type(exc).__name__, exc.args)
        )
    for key in ("future", "task"):
        if key in ctx:
            fut = ctx[key]
            desc = [key, type(fut).__name__]
            get_coro = getattr(fut, "get_coro", None)
            # Only while pending: 3.12.1's Task.get_coro() crashes on a task
            # that finished during an eager start (3.13.0 returns None).
            if get_coro is not None and not fut.done():
                desc.append(getattr(get_coro(), "__qualname__", None))
            if tracer is not None:
                desc.append(tracer.state(fut))
            out.append(tuple(desc))
    out.append(("keys", tuple(sorted(ctx))))
    return tuple(out)


class Scenario:
    """What a scenario function receives: ``gather`` under test, a fresh
    ``loop``, a Tracer ``tr`` (call it to record), and helpers."""

    def __init__(self, gather, loop):
        self.gather = gather
        self.loop = loop
        self.tr = Tracer(loop)

    def __call__(self, event, *details):
        return self.tr(event, *details)

    def run(self, main):
        return run(self.loop, main)

    def run_briefly(self, n=1):
        return run_briefly(self.loop, n)

    def label(self, obj, name=None):
        return self.tr.label(obj, name)

    def state(self, fut):
        return self.tr.state(fut)

    def watch(self, fut, name):
        return self.tr.watch(fut, name)


def trace_scenario(gather, scenario, *, tasks=None, clock=None):
    """Run ``scenario(sc)`` with ``gather`` on a fresh loop; return the trace.

    After the scenario, unhandled exception-handler calls (after
    gc.collect()) and RuntimeWarnings are part of the trace.
    """
    loop = new_loop(tasks=tasks, clock=clock)
    sc = Scenario(gather, loop)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                scenario(sc)
            except BaseException as exc:
                sc("scenario-raised", exc)
                del exc
            del scenario
            sc.tr.record_exceptions()
        sc.tr.record_warnings(caught)
        trace = sc.tr.events
    finally:
        # record_exceptions() has just collected garbage.
        close_loop(loop, collect=False)
    return trace


def settle_garbage():
    """Collect garbage, then freeze the survivors, so that later
    collections only walk objects created after this call.

    For loops that run many scenarios (hypothesis), whose own long-lived
    objects would otherwise make every gc.collect() of the harness slow.
    Anything finalized here escaped its own trace; a warning it raises
    (filterwarnings=error) surfaces as an unraisable-exception error.
    """
    gc.collect()
    gc.freeze()


def print_traces(got, want, got_name, want_name):
    """Debugging aid (FASTWAIT_PRINT_TRACES=1, use -s): print the trace
    ``got`` of ``got_name``, and ``want`` of ``want_name`` too when they
    differ.  The parity helpers call it before comparing."""
    if os.environ.get("FASTWAIT_PRINT_TRACES"):
        print(f"\n--- trace ({got_name})")
        for e in got:
            print("   ", e)
        if got != want:
            print(f"--- trace ({want_name})")
            for e in want:
                print("   ", e)


def parity(impl, scenario, **kwargs):
    """Trace ``scenario`` with ``impl.gather`` and ``asyncio.gather`` and
    assert the traces are equal; return the trace."""
    got = trace_scenario(impl.gather, scenario, **kwargs)
    want = trace_scenario(asyncio.gather, scenario, **kwargs)
    print_traces(got, want, f"{impl.__name__}.gather", "asyncio.gather")
    assert got == want
    return got


def events(trace, prefix=None):
    """The trace without iteration numbers (optionally filtered by event
    name prefix)."""
    return [
        e[1:] for e in trace if prefix is None or e[1].startswith(prefix)
    ]


def when(trace, event):
    """Iteration of the single entry named ``event``."""
    found = [e[0] for e in trace if e[1] == event]
    assert len(found) == 1, (event, found)
    return found[0]


def entry(trace, event):
    """Details of the single entry named ``event``."""
    found = [e[2:] for e in trace if e[1] == event]
    assert len(found) == 1, (event, trace)
    return found[0]


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------

@pytest.fixture(params=["asyncio", "fastwait"], ids=["asyncio", "fastwait"],
                scope="session")
def impl(request):
    if request.param == "asyncio":
        return asyncio
    import fastwait

    return fastwait


@pytest.fixture(autouse=True)
def _asyncio_is_the_stdlib():
    """Parity tests compare fastwait with the stdlib: a fastwait.install()
    left in place by a test (tests/test_install.py) would compare fastwait
    with itself from then on."""
    yield
    import fastwait

    if fastwait.installed():
        fastwait.uninstall()
        pytest.fail("the test left fastwait.install() in place")


@pytest.fixture
def loop_factory():
    """``loop_factory(**kw)`` -> a fresh loop (see new_loop), closed at
    teardown."""
    loops = []

    def factory(**kwargs):
        loop = new_loop(**kwargs)
        loops.append(loop)
        return loop

    yield factory
    errors = []
    for loop in reversed(loops):
        try:
            close_loop(loop)
        except BaseException as exc:  # keep closing the others
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def loop(loop_factory):
    """A fresh loop of the active axes, closed at teardown."""
    return loop_factory()


@pytest.fixture
def vloop(loop_factory):
    """A default asyncio loop with a VirtualClock (``vloop.clock``)."""
    return loop_factory(clock=VirtualClock())


@pytest.fixture
def exc_recorder(loop):
    """The ExceptionRecorder installed on ``loop``."""
    return loop.fw_exceptions


@pytest.fixture
def event_loop_policy_guard():
    """Isolate tests that touch the global event loop (policy)."""
    with warnings.catch_warnings():
        # Reading the policy's current loop must not warn in setup/teardown.
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(None)
    try:
        yield
    finally:
        with warnings.catch_warnings():
            # 3.14 deprecates the policy functions.
            warnings.simplefilter("ignore", DeprecationWarning)
            policy = asyncio.get_event_loop_policy()
            current = getattr(policy._local, "_loop", None)
            asyncio.set_event_loop_policy(None)
        # A loop the policy made implicitly is ours to close; test loops are
        # closed by their own fixture.
        if (
            current is not None
            and not hasattr(current, "fw_iteration")
            and not current.is_closed()
        ):
            current.close()


def fastwait_wraps_children(impl, loop):
    """Does ``impl.gather`` run coroutine children in fastwait's wrapper on
    ``loop``?  (Native fastwait, and the loop creates plain tasks or uses
    asyncio's own eager_task_factory.)"""
    import fastwait

    if impl is not fastwait or not fastwait.NATIVE:
        return False
    return loop.get_task_factory() in (
        None, getattr(asyncio, "eager_task_factory", None))


# ---------------------------------------------------------------------------
# Issue 11's extras (tests/test_extras*.py) -- added with those tests
# ---------------------------------------------------------------------------

#: The implementations of docs/extras.md the ``ximpl`` fixture gives:
#: fastwait's two, and the tests' own pure-asyncio reference
#: (tests/extras_reference.py), which documents that the tests hold for a
#: straightforward implementation of the spec.
XIMPLS = ("native", "python", "reference")


def pytest_generate_tests(metafunc):
    """Parametrize ``ximpl`` over XIMPLS, leaving out "reference" for the
    tests its module lists in ``REFERENCE_CANNOT`` (name -> why the
    reference cannot satisfy that spec detail by construction): an
    explicit deselection, not a skip."""
    if "ximpl" not in metafunc.fixturenames:
        return
    cannot = getattr(metafunc.module, "REFERENCE_CANNOT", {})
    params = [p for p in XIMPLS
              if not (p == "reference"
                      and metafunc.function.__name__ in cannot)]
    metafunc.parametrize("ximpl", params, indirect=True)


@pytest.fixture(scope="session")
def ximpl(request):
    """``gather``, ``race`` and ``TaskGroup`` of one implementation of
    docs/extras.md: "native" (fastwait._fastwait), "python"
    (fastwait._pyextras) or "reference".  Never skips: a missing module or
    name fails the test."""
    import importlib
    import types

    kind = request.param
    if kind == "native":
        mod = importlib.import_module("fastwait._fastwait")
    elif kind == "python":
        mod = importlib.import_module("fastwait._pyextras")
    else:
        mod = importlib.import_module("extras_reference")
    return types.SimpleNamespace(
        name=kind, gather=mod.gather, race=mod.race, TaskGroup=mod.TaskGroup)
