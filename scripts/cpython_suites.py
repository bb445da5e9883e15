#!/usr/bin/env python3
"""Run the running interpreter's own CPython asyncio tests against fastwait.

Usage (with the Python of a venv where fastwait is installed):

    .venv/py3.13/bin/python scripts/cpython_suites.py
    .venv/py3.13/bin/python scripts/cpython_suites.py --uvloop --junitxml out.xml
    .venv/py3.13/bin/python scripts/cpython_suites.py --no-patch      # the baseline
    .venv/py3.13/bin/python scripts/cpython_suites.py -m test_timeouts -k reschedule -v
    /work/tools/droot-py NAME 3.14 scripts/cpython_suites.py          # Debian's Pythons

What runs: the modules ``test.test_asyncio.test_tasks``, ``test_waitfor``,
``test_taskgroups``, ``test_timeouts``, ``test_eager_task_factory`` (3.12+)
and ``test_graph`` (3.14+) of the *running* interpreter's ``test`` package
(whichever of them exist), loaded and run with unittest's own machinery: each
module is one top-level suite, so its setUpModule/tearDownModule and class
fixtures run as under ``python -m unittest``; each test keeps the loop it
makes for itself (test_asyncio's ``TestLoop`` with its virtual clock,
``asyncio.new_event_loop()``, ``IsolatedAsyncioTestCase``'s runner).  The
harness adds no sleep and no loop of its own.  Output that a test writes is
buffered and shown only with its failure.  A test still running after
``--timeout`` seconds (30) gets a ``TestTimeout`` raised in it from SIGALRM
(an error: a hang), and the run goes on; at four times that, faulthandler
dumps the stacks and ends the process.  All modules take 30-75 s of wall
time per interpreter, most of it the tests' own sleeps (5-10 s of CPU).

What is patched: before any test module is imported, fastwait's ``gather``,
``wait``, ``wait_for``, ``as_completed``, ``shield``, ``TaskGroup``,
``timeout``, ``timeout_at`` and ``Timeout`` -- only those that
``fastwait.NATIVE_NAMES`` names -- replace the stdlib's objects wherever a
module of the ``asyncio`` package binds them (``asyncio``,
``asyncio.tasks``, ``asyncio.taskgroups``, ``asyncio.timeouts``: every
binding found by identity is replaced and listed).  So the tests'
``asyncio.gather(...)``, ``tasks.wait(...)``, ``taskgroups.TaskGroup()`` and
the stdlib's own internal callers (``asyncio.run()`` cancelling the leftover
tasks with ``tasks.gather``) run fastwait.  After the import the runner checks
that the test modules see fastwait's objects (``tasks.gather is
fastwait.gather`` ...) and that no test module bound an original; it stops with
exit status 2 otherwise.  Code that a test runs in a child interpreter
(``assert_python_ok``) is not patched.  ``--no-patch`` runs the same tests
without importing fastwait: every test must pass that way, so that a failure
with the patch is fastwait's, not the harness's.

test_tasks runs most of its tests once per Task/Future pair (C and
pure-Python ``Task``/``Future`` and subclasses: ``CTask_CFuture_Tests``,
``PyTask_PyFuture_Tests``, ...); with the patch all of them run fastwait, so
fastwait must work with the pure-Python Task and Future too.

``--uvloop``: after the run on asyncio's loop, the tests that took their
loop from the event-loop policy in that run (``asyncio.new_event_loop()``,
``asyncio.run()``, an ``IsolatedAsyncioTestCase`` without a ``loop_factory``;
noticed by counting the loops the default policy made during each test) run
again with uvloop's policy installed before each test
(``asyncio.set_event_loop_policy`` on 3.11-3.13; on 3.14+ the same through
``asyncio.events._set_event_loop_policy``, as CPython's own tests do, and
uvloop's deprecated ``EventLoopPolicy`` is read with its warning silenced, so
the run has no deprecation noise).  Only ``IsolatedAsyncioTestCase`` tests
qualify: test_asyncio's own ``TestCase`` cleans its loops up with
``close_loop()``, which reads asyncio's private ``loop._default_executor``, so
its tests fail on uvloop whatever the primitives (they are counted in the
report, not run); tests on test_asyncio's ``TestLoop`` (a virtual-clock
``BaseEventLoop``) or on a ``loop_factory`` of their own (3.13.18+'s
TaskGroup tests: ``asyncio.EventLoop``) never come from the policy.  The
uvloop pass is reported separately; a test in it that made no uvloop loop is
an error.  It skips the exclusions and the rows of UVLOOP_STDLIB_FAILURES:
tests that fail (or are flaky) on uvloop with asyncio's own primitives.

Report: the interpreter's exact version, fastwait's build, the loop, what was
patched; per module and per primitive the tests passed / failed / errors /
skipped (by CPython's own skip decorators) / excluded; the exclusions that
apply on this interpreter; the failing tests grouped by primitive with the
first line of each failure (``--failures PATH`` writes the full tracebacks);
the slowest tests; last line ``N passed, N failed`` (both passes; failed
counts failures, errors and unexpected successes).  Exit status 0 when nothing failed, 1 on a
failure or error, 2 on a harness error.  ``--junitxml PATH`` writes one
``<testcase>`` per test and pass (``name[uvloop]`` for the uvloop pass) with
``<failure>``/``<error>``/``<skipped>``; an excluded test is a ``<skipped
type="excluded">``, a CPython skip a ``<skipped type="cpython.skip">``.

A test is mapped to a primitive by its module (test_waitfor: wait_for,
test_taskgroups: TaskGroup, test_timeouts: timeout), else by its class (the
Gather test classes: gather), else by the first primitive its method name
mentions (``test_wait_for*``, ``test_shield_gather``: shield,
``test_stack_tgroup``: TaskGroup, ``test_wait_with_timeout``: wait, ...),
else "other".

Exclusion policy: a test may be excluded ONLY if it reads a private attribute
of the stdlib's own primitive (``TaskGroup._tasks``, the ``_children`` of
gather's future, ``Timeout._state``, ...) or otherwise tests the
implementation rather than behaviour in a way that the parity policy in
README.md ("Differences from asyncio") explicitly allows; the reason names
the difference.  Every exclusion is one row of EXCLUSIONS below (test id
pattern, interpreters, reason) and is printed in the report.  Every other
test must pass.  ``--run-excluded`` runs the excluded tests too (their
outcome is reported, not counted), to check that an exclusion is still needed.
"""

from __future__ import annotations

import argparse
import collections
import faulthandler
import fnmatch
import importlib
import os
import re
import signal
import sys
import time
import traceback
import unittest
import warnings
import xml.etree.ElementTree as ET

MODULES = (
    "test_tasks",
    "test_waitfor",
    "test_taskgroups",
    "test_timeouts",
    "test_eager_task_factory",
    "test_graph",
)
PACKAGE = "test.test_asyncio"

#: The names put in place of asyncio's (if fastwait.NATIVE_NAMES has them).
PATCH_NAMES = (
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
#: The modules of the asyncio package that must hold a patched binding.
EXPECTED_BINDINGS = {
    "asyncio": PATCH_NAMES,
    "asyncio.tasks": ("gather", "wait", "wait_for", "as_completed", "shield"),
    "asyncio.taskgroups": ("TaskGroup",),
    "asyncio.timeouts": ("timeout", "timeout_at", "Timeout"),
}

PRIMITIVES = (
    "gather",
    "wait",
    "wait_for",
    "as_completed",
    "shield",
    "TaskGroup",
    "timeout",
    "other",
)
MODULE_PRIMITIVE = {
    "test_waitfor": "wait_for",
    "test_taskgroups": "TaskGroup",
    "test_timeouts": "timeout",
}
CLASS_PRIMITIVE = {
    "FutureGatherTests": "gather",
    "CoroutineGatherTests": "gather",
    # run_coroutine_threadsafe(...).result(timeout): no fastwait primitive
    "RunCoroutineThreadsafeTests": "other",
}
_KEYWORD = re.compile(
    r"_(wait_for|as_completed|gather|shield|taskgroups?|task_group|tgroup"
    r"|timeout_at|timeout|wait)(?=_|$)"
)
_KEYWORD_PRIMITIVE = {
    "taskgroup": "TaskGroup",
    "taskgroups": "TaskGroup",
    "task_group": "TaskGroup",
    "tgroup": "TaskGroup",
    "timeout_at": "timeout",
}

# ---------------------------------------------------------------------------
# Exclusions: (test id pattern, interpreters, reason).
#
# The pattern is an fnmatch pattern on the test id without the
# "test.test_asyncio." prefix ("test_tasks.*.test_gather_x" covers every
# Task/Future class).  The interpreters are "all" or versions: "3.12" matches
# every 3.12.x, "3.13.0" only that release.  Only a test that reads a private
# attribute of the stdlib's own primitive, or that tests the implementation
# in a way README.md "Differences from asyncio" explicitly allows, may be
# listed; the reason names the attribute or the numbered difference.

_NO_FRAMES = (
    "asyncio.capture_call_graph() lists the frames of the coroutines a task "
    "awaits through; fastwait's {what} {verb} a native coroutine object whose "
    "cr_frame is None (README 'Differences from asyncio' 2, and 'Stacks ... "
    "have no frames of asyncio/tasks.py'), so the expected {frames} frames "
    "cannot appear (the awaited-by links this test also checks are not "
    "excused: test_stack_gather/_shield/_timeout/_future check them)"
)

EXCLUSIONS: tuple[tuple[str, str, str], ...] = (
    ("test_graph.*.test_stack_wait", "3.14 3.15",
     _NO_FRAMES.format(what="wait()", verb="returns", frames="'a _wait', 'a wait'")),
    ("test_graph.*.test_stack_as_completed", "3.14 3.15",
     _NO_FRAMES.format(what="as_completed()", verb="yields",
                       frames="'a get', 'a _wait_for_one'")),
    ("test_graph.*.test_stack_as_completed_timeout", "3.14 3.15",
     _NO_FRAMES.format(what="as_completed()", verb="yields",
                       frames="'a get', 'a _wait_for_one'")),
    ("test_graph.*.test_stack_wait_for_non_positive_timeout", "3.14 3.15",
     _NO_FRAMES.format(what="wait_for()", verb="returns",
                       frames="'a _cancel_and_wait', 'a wait_for'")),
    ("test_graph.*.test_stack_tgroup", "3.14 3.15",
     _NO_FRAMES.format(what="TaskGroup.__aexit__()", verb="returns",
                       frames="'a _aexit', 'a __aexit__'")),
)

#: The uvloop pass (--uvloop) skips, in the same format, the tests that fail
#: on uvloop with asyncio's own primitives too (``--no-patch --uvloop
#: --run-excluded`` shows that they still do): differences between uvloop's
#: loop and asyncio's, not fastwait's.
UVLOOP_STDLIB_FAILURES: tuple[tuple[str, str, str], ...] = (
    ("test_timeouts.*.test_nested_timeouts", "all",
     "flaky on uvloop with asyncio's own timeout_at(): two scopes share one "
     "loop.time() deadline, uvloop's millisecond timers can put the two "
     "TimerHandles in different milliseconds, and then the inner scope has "
     "not expired when the outer one's cancellation arrives (cm2.expired() "
     "is False; about 1 run in 15 on 3.12.1)"),
    ("test_graph.TestCallStackPy.*", "3.14 3.15",
     "the class puts the pure-Python Task and current_task() in asyncio's "
     "place, but uvloop's create_task() makes C Tasks (uvloop binds "
     "asyncio.Task when it is imported), which the pure-Python "
     "current_task() and call-graph functions do not know"),
)

# ---------------------------------------------------------------------------


def version_string() -> str:
    v = sys.version_info
    s = f"{v.major}.{v.minor}.{v.micro}"
    if v.releaselevel != "final":
        s += f"{v.releaselevel[0]}{v.serial}"
    return s


def applies(versions: str, running: str) -> bool:
    if versions.strip() == "all":
        return True
    for spec in versions.replace(",", " ").split():
        if running == spec or running.startswith(spec + "."):
            return True
    return False


def short_id(test_id: str) -> str:
    prefix = PACKAGE + "."
    return test_id[len(prefix):] if test_id.startswith(prefix) else test_id


def exclusion_for(sid: str, running: str, table=None) -> tuple[str, str, str] | None:
    for row in EXCLUSIONS if table is None else table:
        pattern, versions, _reason = row
        if fnmatch.fnmatchcase(sid, pattern) and applies(versions, running):
            return row
    return None


def primitive_of(module: str, cls: str, method: str) -> str:
    if module in MODULE_PRIMITIVE:
        return MODULE_PRIMITIVE[module]
    if cls in CLASS_PRIMITIVE:
        return CLASS_PRIMITIVE[cls]
    m = _KEYWORD.search(method)
    if m:
        word = m.group(1)
        return _KEYWORD_PRIMITIVE.get(word, word)
    return "other"


def split_id(sid: str) -> tuple[str, str, str]:
    """'test_tasks.Cls.test_x' -> (module, class, method); other ids (a
    setUpClass error) -> (module or '?', '', sid)."""
    m = re.match(r"^(\w+)\.(\w+)\.(\w+)$", sid)
    if m:
        return m.group(1), m.group(2), m.group(3)
    m = re.search(r"\((?:%s\.)?(\w+)" % re.escape(PACKAGE), sid)
    return (m.group(1) if m else "?"), "", sid


# ---------------------------------------------------------------------------
# Patching


class HarnessError(Exception):
    pass


def patch_asyncio(fastwait) -> tuple[list[str], dict]:
    """Replace asyncio's primitives by fastwait's in every module of the
    asyncio package that binds them.  Returns (bindings, originals)."""
    import asyncio  # noqa: F401  (imports the whole package)
    import asyncio.taskgroups  # noqa: F401
    import asyncio.tasks  # noqa: F401
    import asyncio.timeouts  # noqa: F401

    names = [n for n in PATCH_NAMES if n in fastwait.NATIVE_NAMES]
    originals = {n: getattr(sys.modules["asyncio"], n) for n in names}
    # fastwait.install() is the patch: what users get is what is tested.
    if not fastwait.install():
        raise HarnessError("fastwait.install() did not install (no C extension?)")
    from fastwait import _install

    bindings = [f"{module.__name__}.{attr}" for module, attr, _, _ in _install._replaced]
    for modname, expected in EXPECTED_BINDINGS.items():
        mod = sys.modules[modname]
        for name in expected:
            if name in originals and getattr(mod, name) is not getattr(fastwait, name):
                raise HarnessError(f"{modname}.{name} is not fastwait.{name}")
    return bindings, originals


def verify_patch(fastwait, originals: dict, modules: dict) -> list[str]:
    """Check that the imported test modules see fastwait's objects."""
    problems = []
    import asyncio

    for modname, names in EXPECTED_BINDINGS.items():
        mod = sys.modules[modname]
        for name in names:
            if name in originals and getattr(mod, name) is not getattr(fastwait, name):
                problems.append(f"{modname}.{name} is not fastwait.{name}")
    orig_ids = {id(v): n for n, v in originals.items()}
    seen = {}
    for mod in list(modules.values()) + [m for n, m in sorted(sys.modules.items())
                                         if n.startswith(PACKAGE + ".")]:
        seen[id(mod)] = mod
    for mod in seen.values():
        for attr, value in vars(mod).items():
            n = orig_ids.get(id(value))
            if n is not None and value is originals[n]:
                problems.append(f"{mod.__name__}.{attr} is the stdlib's {n}")
        for sub, names in EXPECTED_BINDINGS.items():
            short = sub.rpartition(".")[2]
            bound = vars(mod).get(short)
            if bound is sys.modules[sub]:
                for name in names:
                    if name in originals and getattr(bound, name) is not getattr(fastwait, name):
                        problems.append(f"{mod.__name__}: {short}.{name} is not fastwait.{name}")
        if vars(mod).get("asyncio") not in (None, asyncio):
            problems.append(f"{mod.__name__}.asyncio is not the asyncio package")
    return problems


# ---------------------------------------------------------------------------
# Loops


def _policy_base():
    import asyncio.events as events

    base = getattr(events, "_BaseDefaultEventLoopPolicy", None)  # 3.14+
    return base or events.BaseDefaultEventLoopPolicy


def _set_policy(policy) -> None:
    import asyncio.events as events

    setter = getattr(events, "_set_event_loop_policy", None)
    if setter is None:  # 3.11-3.13: the public function, not deprecated there
        import asyncio

        setter = asyncio.set_event_loop_policy
    setter(policy)


class LoopCounter:
    """Records the loops the event-loop policy makes during each test."""

    def __init__(self) -> None:
        self.current: list[str] | None = None

    def note(self, loop) -> None:
        if self.current is not None:
            cls = type(loop)
            self.current.append(f"{cls.__module__}.{cls.__qualname__}")

    def install_default(self) -> None:
        base = _policy_base()
        original = base.new_event_loop
        counter = self

        def new_event_loop(self):
            loop = original(self)
            counter.note(loop)
            return loop

        new_event_loop.__wrapped__ = original
        base.new_event_loop = new_event_loop

    def uvloop_policy_factory(self):
        import uvloop

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            base = uvloop.EventLoopPolicy
        counter = self

        class CountingUVLoopPolicy(base):
            def new_event_loop(self):
                loop = super().new_event_loop()
                counter.note(loop)
                return loop

        return CountingUVLoopPolicy


# ---------------------------------------------------------------------------
# Running


class Record:
    __slots__ = ("sid", "module", "cls", "method", "primitive", "outcome", "detail",
                 "first_line", "seconds", "loops", "excluded")

    def __init__(self, sid: str):
        self.sid = sid
        self.module, self.cls, self.method = split_id(sid)
        self.primitive = primitive_of(self.module, self.cls, self.method)
        self.outcome = "passed"  # passed failed error skipped excluded
        self.detail = ""
        self.first_line = ""
        self.seconds = 0.0
        self.loops: list[str] = []
        self.excluded: tuple[str, str, str] | None = None


_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


class TestTimeout(Exception):
    """Raised in the main thread when a test runs longer than --timeout."""


def _on_alarm(signum, frame):
    # Interrupt the test again if its cleanup hangs too; faulthandler ends
    # the process if even that does not return.
    raise TestTimeout("the test did not finish in time (--timeout); a hang?")


def first_line(err) -> str:
    exc_type, value = err[0], err[1]
    try:
        lines = traceback.format_exception_only(exc_type, value)
    except Exception:  # pragma: no cover
        return exc_type.__name__
    text = "".join(lines).strip().splitlines()
    return text[0] if text else exc_type.__name__


class RecordingResult(unittest.TestResult):
    """A TestResult that keeps one Record per test id."""

    def __init__(self, counter: LoopCounter, policy_factory=None, timeout: float = 0.0,
                 verbose: bool = False):
        super().__init__()
        self.buffer = True
        self.records: dict[str, Record] = {}
        self.counter = counter
        self.policy_factory = policy_factory
        self.timeout = timeout
        self.verbose = verbose
        self._started = 0.0

    def _record(self, test) -> Record:
        sid = short_id(test.id())
        rec = self.records.get(sid)
        if rec is None:
            rec = self.records[sid] = Record(sid)
        return rec

    def _set(self, test, outcome: str, detail: str = "", line: str = "") -> None:
        rec = self._record(test)
        if _RANK[outcome] >= _RANK[rec.outcome]:
            if _RANK[outcome] > _RANK[rec.outcome] or not rec.detail:
                rec.outcome, rec.detail, rec.first_line = outcome, detail, line
            else:
                rec.detail += "\n" + detail

    def startTest(self, test) -> None:
        if self.policy_factory is not None:
            _set_policy(self.policy_factory())
        super().startTest(test)
        rec = self._record(test)
        self.counter.current = rec.loops
        if self.verbose:
            print(f"  {rec.sid} ...", end=" ", file=sys.__stderr__, flush=True)
        if self.timeout:
            signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, self.timeout, self.timeout)
            faulthandler.dump_traceback_later(self.timeout * 4, exit=True, file=sys.__stderr__)
        self._started = time.perf_counter()

    def stopTest(self, test) -> None:
        elapsed = time.perf_counter() - self._started
        if self.timeout:
            signal.setitimer(signal.ITIMER_REAL, 0)
            faulthandler.cancel_dump_traceback_later()
        super().stopTest(test)
        self.counter.current = None
        rec = self._record(test)
        rec.seconds += elapsed
        if self.policy_factory is not None:
            _set_policy(None)
        if self.verbose:
            print(rec.outcome, file=sys.__stderr__, flush=True)

    def addSuccess(self, test) -> None:
        super().addSuccess(test)
        self._record(test)

    def addFailure(self, test, err) -> None:
        super().addFailure(test, err)
        self._set(test, "failed", self.failures[-1][1], first_line(err))

    def addError(self, test, err) -> None:
        super().addError(test, err)
        self._set(test, "error", self.errors[-1][1], first_line(err))

    def addSkip(self, test, reason) -> None:
        super().addSkip(test, reason)
        self._set(test, "skipped", reason, reason)

    def addExpectedFailure(self, test, err) -> None:
        super().addExpectedFailure(test, err)
        self._record(test)  # passes, as under unittest

    def addUnexpectedSuccess(self, test) -> None:
        super().addUnexpectedSuccess(test)
        self._set(test, "failed", "unexpected success", "unexpected success")

    def addSubTest(self, test, subtest, err) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "failed" if issubclass(err[0], test.failureException) else "error"
            text = (self.failures if kind == "failed" else self.errors)[-1][1]
            self._set(test, kind, f"{subtest.id()}\n{text}",
                      f"{subtest.id()[len(test.id()):].strip()}: {first_line(err)}")


def selected(sid: str, keywords: list[str]) -> bool:
    if not keywords:
        return True
    return any(fnmatch.fnmatchcase(sid, k) if any(c in k for c in "*?[") else k in sid
               for k in keywords)


def iter_tests(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from iter_tests(item)
        else:
            yield item


def run_module(mod, result: RecordingResult, running: str, keep,
               run_excluded: bool, excluded_out: list[Record], table=None) -> int:
    """Run one module's tests as one top-level suite; return how many ran.

    keep(test, sid) selects the tests; an excluded test (a row of `table`,
    EXCLUSIONS by default) is recorded in excluded_out and not run."""
    suite = unittest.defaultTestLoader.loadTestsFromModule(mod)
    tests = []
    for test in iter_tests(suite):
        sid = short_id(test.id())
        if not keep(test, sid):
            continue
        row = exclusion_for(sid, running, table)
        if row is not None:
            rec = Record(sid)
            rec.outcome = "excluded"
            rec.excluded = row
            excluded_out.append(rec)
            if not run_excluded:
                continue
        tests.append(test)
    if not tests:
        return 0
    with warnings.catch_warnings():
        if not sys.warnoptions:
            warnings.simplefilter("default")  # as python -m unittest
        unittest.TestSuite(tests).run(result)
    return len(tests)


# ---------------------------------------------------------------------------
# Report


class Pass:
    def __init__(self, name: str, loop: str):
        self.name = name  # "asyncio" or "uvloop"
        self.loop = loop
        self.records: dict[str, Record] = {}
        self.excluded: list[Record] = []
        self.module_seconds: dict[str, float] = {}
        self.modules: list[str] = []
        self.note = ""

    def counted(self) -> list[Record]:
        """Records that count (an excluded test run with --run-excluded does not)."""
        skip = {r.sid for r in self.excluded}
        return [r for r in self.records.values() if r.sid not in skip]

    def failures(self) -> list[Record]:
        return [r for r in self.counted() if r.outcome in ("failed", "error")]


def table(rows: list[tuple], header: tuple) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    out = []
    for i, row in enumerate([header] + rows):
        cells = [str(c).ljust(w) if j == 0 else str(c).rjust(w)
                 for j, (c, w) in enumerate(zip(row, widths))]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def counts_table(records: list[Record], excluded: list[Record]) -> list[str]:
    cols = ("passed", "failed", "error", "skipped", "excluded")
    per = collections.defaultdict(collections.Counter)
    for r in records:
        per[r.primitive][r.outcome] += 1
    for r in excluded:
        per[r.primitive]["excluded"] += 1
    rows = []
    total = collections.Counter()
    for prim in PRIMITIVES:
        if prim in per:
            rows.append((prim,) + tuple(per[prim][c] for c in cols))
            total.update(per[prim])
    rows.append(("total",) + tuple(total[c] for c in cols))
    return table(rows, ("primitive", "passed", "failed", "errors", "skipped", "excluded"))


def report_pass(p: Pass, out: list[str]) -> None:
    out.append("")
    out.append(f"=== loop: {p.loop}")
    if p.note:
        out.append(f"  ({p.note})")
    recs = p.counted()
    for module in p.modules:
        mrecs = [r for r in recs if r.module == module]
        mexcl = [r for r in p.excluded if r.module == module]
        out.append(f"--- {module}: {len(mrecs)} tests run, {len(mexcl)} excluded, "
                   f"{p.module_seconds.get(module, 0.0):.1f}s")
        out.extend(counts_table(mrecs, mexcl))
    out.append("--- all modules, per primitive")
    out.extend(counts_table(recs, p.excluded))
    if p.name == "uvloop":
        off = [r for r in recs if r.loops and not all("uvloop" in x for x in r.loops)]
        for r in off:
            out.append(f"  NOTE {r.sid} made a non-uvloop loop: {r.loops}")


def report_failures(p: Pass, out: list[str], tag: str) -> None:
    fails = p.failures()
    if not fails:
        return
    out.append("")
    out.append(f"=== failing tests{tag}, by primitive ({len(fails)})")
    by = collections.defaultdict(list)
    for r in fails:
        by[r.primitive].append(r)
    for prim in PRIMITIVES:
        if prim not in by:
            continue
        out.append(f"--- {prim} ({len(by[prim])})")
        for r in sorted(by[prim], key=lambda r: r.sid):
            kind = "ERROR " if r.outcome == "error" else ""
            out.append(f"  {r.sid}: {kind}{r.first_line}")


def write_junit(path: str, passes: list[Pass], header: str) -> None:
    root = ET.Element("testsuites", name="cpython_suites")
    for p in passes:
        for module in p.modules:
            recs = [r for r in p.records.values() if r.module == module]
            excl_ids = {r.sid for r in p.excluded}
            recs += [r for r in p.excluded if r.module == module and r.sid not in p.records]
            suite = ET.SubElement(root, "testsuite", name=f"{module}[{p.name}]")
            props = ET.SubElement(suite, "properties")
            ET.SubElement(props, "property", name="python", value=header)
            ET.SubElement(props, "property", name="loop", value=p.loop)
            counts = collections.Counter()
            for r in sorted(recs, key=lambda r: r.sid):
                name = r.method if p.name == "asyncio" else f"{r.method}[{p.name}]"
                classname = f"{PACKAGE}.{r.module}.{r.cls}" if r.cls else f"{PACKAGE}.{r.module}"
                case = ET.SubElement(suite, "testcase", classname=classname, name=name,
                                     time=f"{r.seconds:.3f}")
                counts["tests"] += 1
                if r.sid in excl_ids:
                    row = r.excluded or exclusion_for(r.sid, version_string())
                    el = ET.SubElement(case, "skipped", type="excluded",
                                       message=f"excluded: {row[2] if row else ''}")
                    if r.outcome not in ("passed", "excluded"):
                        el.text = f"(ran with --run-excluded: {r.outcome})\n{r.detail}"
                    counts["skipped"] += 1
                elif r.outcome == "failed":
                    el = ET.SubElement(case, "failure", message=r.first_line)
                    el.text = r.detail
                    counts["failures"] += 1
                elif r.outcome == "error":
                    el = ET.SubElement(case, "error", message=r.first_line)
                    el.text = r.detail
                    counts["errors"] += 1
                elif r.outcome == "skipped":
                    ET.SubElement(case, "skipped", type="cpython.skip", message=r.detail)
                    counts["skipped"] += 1
            for key in ("tests", "failures", "errors", "skipped"):
                suite.set(key, str(counts[key]))
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


# ---------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-m", "--module", action="append", default=[],
                   help="run only this module (test_tasks, ...); repeatable")
    p.add_argument("-k", "--keyword", action="append", default=[],
                   help="run only tests whose id contains this substring "
                        "(or matches it, with * ? [); repeatable")
    p.add_argument("--no-patch", action="store_true",
                   help="run the tests on the stdlib's own primitives (fastwait not imported)")
    p.add_argument("--uvloop", action="store_true",
                   help="also run the tests whose loop comes from the policy on uvloop")
    p.add_argument("--junitxml", metavar="PATH", help="write a JUnit XML report")
    p.add_argument("--failures", metavar="PATH",
                   help="write every failure's full traceback to PATH")
    p.add_argument("--run-excluded", action="store_true",
                   help="run excluded tests too (reported, not counted)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="a test that runs longer gets a TestTimeout exception raised in "
                        "it (an error); at 4 times as long the stacks are dumped and the "
                        "run ends (s, 0: never; default %(default)s)")
    p.add_argument("--slow", type=float, default=1.0,
                   help="list tests slower than this (s; default %(default)s)")
    p.add_argument("-v", "--verbose", action="store_true", help="print each test as it runs")
    args = p.parse_args(argv)
    for m in args.module:
        if m not in MODULES:
            p.error(f"unknown module {m!r} (one of {', '.join(MODULES)})")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    running = version_string()
    wall = time.perf_counter()
    out: list[str] = []

    fastwait = None
    bindings: list[str] = []
    originals: dict = {}
    if not args.no_patch:
        import fastwait

        if not fastwait.NATIVE:
            print("cpython_suites: fastwait.NATIVE is False (no C extension): nothing to test",
                  file=sys.stderr)
            return 2
        try:
            bindings, originals = patch_asyncio(fastwait)
        except HarnessError as exc:
            print(f"cpython_suites: patching failed: {exc}", file=sys.stderr)
            return 2

    counter = LoopCounter()
    counter.install_default()

    modules = {}
    missing = []
    for name in args.module or MODULES:
        try:
            modules[name] = importlib.import_module(f"{PACKAGE}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{PACKAGE}.{name}":
                raise
            missing.append(name)

    if fastwait is not None:
        problems = verify_patch(fastwait, originals, modules)
        if problems:
            print("cpython_suites: the test modules do not see fastwait's objects:",
                  file=sys.stderr)
            for line in problems:
                print(f"  {line}", file=sys.stderr)
            return 2

    header = [
        f"interpreter: Python {sys.version.splitlines()[0]} ({sys.executable})",
    ]
    if fastwait is None:
        header.append("fastwait: not imported (--no-patch): the stdlib's own primitives")
    else:
        header.append(f"fastwait {fastwait.__version__} native, from "
                      f"{os.path.dirname(fastwait.__file__)}")
        header.append("patched: " + ", ".join(bindings))
        header.append("verified after import: the test modules see fastwait's objects "
                      "(asyncio.X, tasks.X, taskgroups.X, timeouts.X) and bind no original")
        names = [n for n in PATCH_NAMES if n in originals]
        if len(names) < len(PATCH_NAMES):
            header.append("not native, left alone: "
                          + ", ".join(n for n in PATCH_NAMES if n not in names))
    header.append("modules: " + ", ".join(
        f"{n} ({os.path.dirname(m.__file__)})" if i == 0 else n
        for i, (n, m) in enumerate(modules.items())))
    if missing:
        header.append("absent on this interpreter: " + ", ".join(missing))
    out.append("cpython_suites: CPython's own asyncio tests "
               + ("without fastwait (--no-patch)" if fastwait is None else "on fastwait"))
    out.extend(header)

    passes = []
    # Pass 1: asyncio's loops.
    p1 = Pass("asyncio", "asyncio (the tests' own loops; policy loops: the default policy)")
    result = RecordingResult(counter, timeout=args.timeout, verbose=args.verbose)
    for name, mod in modules.items():
        t0 = time.perf_counter()
        n = run_module(mod, result, running, lambda test, sid: selected(sid, args.keyword),
                       args.run_excluded, p1.excluded)
        p1.module_seconds[name] = time.perf_counter() - t0
        if n or any(r.module == name for r in p1.excluded):
            p1.modules.append(name)
    p1.records = result.records
    kinds = collections.Counter(x for r in p1.records.values() for x in set(r.loops))
    p1.note = (f"{sum(1 for r in p1.records.values() if r.loops)} tests took a loop from "
               f"the policy ({', '.join(f'{k}: {v}' for k, v in sorted(kinds.items()))}); "
               "the others run on test_asyncio's TestLoop or a loop they make themselves")
    passes.append(p1)

    # Pass 2: uvloop, for the tests whose loop came from the policy.
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            print("cpython_suites: --uvloop: uvloop is not installed", file=sys.stderr)
            return 2
        policy_cls = counter.uvloop_policy_factory()
        p2 = Pass("uvloop", f"uvloop {uvloop.__version__} (its policy, set before each "
                            "test whose loop came from the policy)")
        from_policy = {r.sid for r in p1.records.values() if r.loops}
        not_isolated = set()

        def keep(test, sid):
            if sid not in from_policy:
                return False
            if not isinstance(test, unittest.IsolatedAsyncioTestCase):
                not_isolated.add(sid)
                return False
            return True

        result2 = RecordingResult(counter, policy_factory=policy_cls, timeout=args.timeout,
                                  verbose=args.verbose)
        for name, mod in modules.items():
            t0 = time.perf_counter()
            ran = run_module(mod, result2, running, keep, args.run_excluded, p2.excluded,
                             EXCLUSIONS + UVLOOP_STDLIB_FAILURES)
            p2.module_seconds[name] = time.perf_counter() - t0
            if ran or any(r.module == name for r in p2.excluded):
                p2.modules.append(name)
        p2.note = (f"{len(not_isolated)} more tests took their loop from the policy but use "
                   "test_asyncio's TestCase, whose loop cleanup (close_loop) reads asyncio's "
                   "loop._default_executor: not run on uvloop")
        p2.records = result2.records
        for r in p2.records.values():
            if r.outcome in ("passed",) and not any("uvloop" in x for x in r.loops):
                r.outcome = "error"
                r.first_line = "harness: the test made no uvloop loop in the uvloop pass"
                r.detail = r.first_line + f" (loops: {r.loops})"
        passes.append(p2)

    for p in passes:
        report_pass(p, out)

    tables = [(EXCLUSIONS, "exclusions", p1)]
    if len(passes) > 1:
        tables.append((UVLOOP_STDLIB_FAILURES,
                       "uvloop pass: tests that fail on uvloop with asyncio's own primitives "
                       "(and the exclusions above)",
                       passes[1]))
    for rows_all, title, p in tables:
        rows = [row for row in rows_all if applies(row[1], running)]
        out.append("")
        out.append(f"=== {title} on Python {running}: {len(rows)} rows, "
                   f"{len(p.excluded)} tests (the table has {len(rows_all)} rows)")
        for row in rows + [x for x in EXCLUSIONS if x not in rows_all]:
            hits = [r for r in p.excluded if r.excluded == row]
            if row in rows or hits:
                out.append(f"  {row[0]}  [{row[1]}; {len(hits)} tests]  {row[2]}")
        if args.run_excluded and p.excluded:
            out.append("  run anyway (--run-excluded):")
            for r in p.excluded:
                ran = p.records.get(r.sid)
                out.append(f"    {r.sid}: {ran.outcome if ran else 'not run'}"
                           + (f": {ran.first_line}" if ran and ran.first_line else ""))

    for p in passes:
        report_failures(p, out, "" if p.name == "asyncio" else f" on {p.name}")

    slow = sorted((r for p in passes for r in p.records.values() if r.seconds >= args.slow),
                  key=lambda r: -r.seconds)
    out.append("")
    total_test_time = sum(r.seconds for p in passes for r in p.records.values())
    out.append(f"=== time: {time.perf_counter() - wall:.1f}s wall, "
               f"{total_test_time:.1f}s in tests; "
               f"{len(slow)} tests took {args.slow:g}s or more")
    for r in slow[:15]:
        out.append(f"  {r.seconds:6.2f}s  {r.sid}")

    out.append("")
    for p in passes:
        c = collections.Counter(r.outcome for r in p.counted())
        out.append(f"{p.name}: {c['passed']} passed, {c['failed']} failed, "
                   f"{c['error']} errors, {c['skipped']} skipped, {len(p.excluded)} excluded")
    passed = sum(1 for p in passes for r in p.counted() if r.outcome == "passed")
    failed = sum(len(p.failures()) for p in passes)
    out.append(f"{passed} passed, {failed} failed")
    print("\n".join(out), flush=True)

    if args.failures:
        with open(args.failures, "w", encoding="utf-8") as f:
            f.write("\n".join(header) + "\n")
            for p in passes:
                order = sorted(p.failures(),
                               key=lambda r: (PRIMITIVES.index(r.primitive), r.sid))
                for r in order:
                    f.write(f"\n{'=' * 70}\n[{p.name}] [{r.primitive}] {r.sid}: {r.outcome}\n"
                            f"{'-' * 70}\n{r.detail}\n")
    if args.junitxml:
        write_junit(args.junitxml, passes, " | ".join(header))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
