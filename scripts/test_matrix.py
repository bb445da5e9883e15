#!/usr/bin/env python3
"""Build fastwait on every supported Python and run the whole test matrix.

Usage (any Python 3.8+, standard library only; run from anywhere):

    python3 scripts/test_matrix.py                    # what CI runs (with CI=true)
    python3 scripts/test_matrix.py --quick --no-extras
    python3 scripts/test_matrix.py --pythons 3.12.1 --reuse -k cancel -- -x
    python3 scripts/test_matrix.py --pythons /path/to/python3.13

    python3 scripts/test_matrix.py --pythons debian:3.14 --quick --no-extras

Six interpreters by default: pyenv's 3.11.7, 3.12.1 and 3.13.0, and the
current releases, Debian unstable's python3.13, python3.14 and python3.15
(``debian:3.X``), which scripts/debian_root.py installs in a debootstrapped
root of the project's own (built once, cached, about a minute; needs root).
An interpreter this machine cannot provide (no pyenv build, not root, no
debootstrap, no network) is named in a NOT PROVIDED line and the rest runs;
only under CI=true does a missing interpreter fail the run.

For each interpreter it creates a fresh venv (``--reuse`` keeps an existing
one: ``.venv/py3.X`` for a host interpreter, ``/fastwait-matrix/<key>/`` in
the root for Debian's) and installs the package from a clean snapshot of the
work tree with ``pip install '.[test]'``: a real, non-editable install that
compiles the C extension; the tests then import the installed package (in the
root they run from that snapshot, under chroot, with /proc mounted for the
run and unmounted after).  It checks that ``fastwait`` imports from the venv
and that ``fastwait.NATIVE`` is True; with FASTWAIT_NO_EXTENSIONS=1 in the
environment no extension is built and ``NATIVE`` must be False instead.

Then pytest runs once per axis, selected with FASTWAIT_TEST_LOOP (asyncio,
uvloop) and FASTWAIT_TEST_TASKS (lazy; eager on 3.12+), and on pyenv's 3.12
once more in asyncio's debug mode (asyncio loop, lazy tasks,
PYTHONASYNCIODEBUG=1 and ``-X dev``; not with ``--quick``): 23 runs for the
six Pythons, ``--jobs`` (default 2) at a time, each with ``--junitxml``.  Unless
``--no-extras``, it also runs, on every Python, CPython's own test suites for
the primitives with fastwait patched in (scripts/cpython_suites.py, on
asyncio's loop and again on uvloop for the tests whose loop comes from the
policy), scripts/leakcheck.py and mypy
(``mypy --strict tests/typing/example.py``, ``mypy.stubtest fastwait``: the
stubs against that interpreter's runtime, and the example itself), and
scripts/asan.sh on pyenv's 3.12 and on Debian's 3.14.

The run fails if a build, a pytest run or an extra fails, if an axis ran no
test (pytest's exit 5 included), or, under CI=true, if any test was skipped
or an interpreter is missing.  Logs go to ``.venv/logs/`` (JUnit files of
the root's interpreters to its ``logs/``).  The interpreters, with their
exact versions, are listed before and after the run.  The last line printed
is ``N passed, N failed`` (tests; a failed run that has no failing test of its
own, such as a build, the leak check or a pytest run that collected nothing,
counts as one failed).  Exit status 0 on success, 1 on failure, 2 on a usage
error.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import debian_root  # noqa: E402  (scripts/debian_root.py)

DEFAULT_PYTHONS = ("3.11.7", "3.12.1", "3.13.0", "debian:3.13", "debian:3.14", "debian:3.15")
LOOPS = ("asyncio", "uvloop")
LOG_DIR = ROOT / ".venv" / "logs"
TAIL_LINES = 120  # log lines shown for each failed job

# Per-job time limits (seconds), so that a hang fails the job instead of CI.
TIMEOUT = {"setup": 900, "pytest": 1200, "leakcheck": 600, "mypy": 600, "asan": 2400,
           "cpython": 900}


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


CI = truthy(os.environ.get("CI"))
FALLBACK = truthy(os.environ.get("FASTWAIT_NO_EXTENSIONS"))


# --------------------------------------------------------------------------
# Interpreters and the package snapshot


class Python:
    """An interpreter of the matrix: a host one (pyenv, a path), or one of
    the Debian root's (``root`` set), whose commands run under chroot.

    Paths held here (``exe``, ``venv``, ``src``, ``logs``) are as the
    interpreter sees them; ``host()`` turns one into the host's path.
    """

    def __init__(self, spec: str, exe: Path, version: tuple[int, int, int],
                 root: Path | None = None):
        self.spec = spec
        self.exe = exe
        self.version = version
        self.root = root
        self.minor = f"{version[0]}.{version[1]}"
        self.release = ".".join(map(str, version))
        if root is None:
            self.tag = f"py{self.minor}"
            self.origin = str(exe)
            self.venv = ROOT / ".venv" / self.tag
            self.src = ROOT  # tests run from the work tree
            self.logs = LOG_DIR
        else:
            self.tag = f"deb{self.minor}"
            self.origin = f"Debian {debian_root.read_stamp(root).get('suite', '?')}, {exe} in {root}"
            # One folder per checkout, so that two checkouts (a work tree and
            # CI's fresh clone) never share a venv.
            key = hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
            work = Path("/fastwait-matrix") / key
            self.venv = work / f"venv-{self.tag}"
            self.src = work / f"src-{self.tag}"  # a snapshot: tests run from it
            self.logs = work / "logs"
        self.vpython = self.venv / "bin" / "python"

    @property
    def task_modes(self) -> tuple[str, ...]:
        return ("lazy", "eager") if self.version >= (3, 12) else ("lazy",)

    def host(self, path: Path) -> Path:
        return path if self.root is None else self.root / path.relative_to("/")

    def wrap(self, cmd: list[str], cwd: Path | str, env: dict) -> list[str]:
        """cmd as run in the root: chroot, a clean environment (the wheels
        fetched for this interpreter as pip's only index), cwd."""
        assert self.root is not None
        inner = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
                 "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                 "PIP_FIND_LINKS": f"/wheels/cp{self.minor.replace('.', '')}"}
        inner.update({k: v for k, v in os.environ.items()
                      if k == "CI" or k.startswith(("FASTWAIT_", "PYTHON", "HYPOTHESIS"))})
        inner.update(env)
        return ["chroot", str(self.root), "/usr/bin/env", "-i",
                *(f"{k}={v}" for k, v in inner.items()),
                "/bin/sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", str(cwd), *cmd]


def pyenv_root() -> Path:
    try:
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))


class NotProvided(Exception):
    """An interpreter of the matrix is not on this machine (the message says why)."""


def find_python(spec: str) -> Python:
    """spec: a pyenv version, an interpreter's path, or ``debian:3.X`` (the
    Debian root's, built or reused by scripts/debian_root.py)."""
    if spec.startswith("debian:"):
        minor = spec.split(":", 1)[1]
        if minor not in debian_root.MINORS:
            raise SystemExit(f"test_matrix: {spec!r}: the Debian root has "
                             + ", ".join(debian_root.MINORS))
        try:
            stamp = debian_root.provide()
        except debian_root.Unavailable as exc:
            raise NotProvided(f"{spec}: the Debian root cannot be provided here: {exc}") from None
        version = tuple(int(x) for x in stamp["versions"][minor].split("."))
        return Python(spec, Path(f"/usr/bin/python{minor}"), version,  # type: ignore[arg-type]
                      root=debian_root.ROOT)
    if os.sep in spec:
        exe = Path(spec)
    else:
        exe = pyenv_root() / "versions" / spec / "bin" / "python"
    if not exe.exists():
        raise NotProvided(f"{spec}: no interpreter ({exe} does not exist)")
    out = subprocess.run([str(exe), "-c", "import sys; print(*sys.version_info[:3])"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise NotProvided(f"{spec}: {exe} does not run: {out.stderr.strip()}")
    version = tuple(int(x) for x in out.stdout.split())
    if version < (3, 11):
        raise SystemExit(f"test_matrix: {exe} is Python {version}; fastwait needs 3.11+")
    return Python(spec, exe, version)  # type: ignore[arg-type]


def snapshot(dest: Path) -> None:
    """Copy the work tree's files (tracked and new, not ignored) to dest.

    Building from a copy keeps the work tree free of build/ and *.egg-info,
    lets builds for several Pythons run at once, and never reuses a stale
    object file (setup.py's build dir would otherwise be shared between the
    normal and the sanitizer build).
    """
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True)
        files = [f for f in out.stdout.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = None
    if files is None:  # not a git checkout
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "*.so",
            ".hypothesis", ".mypy_cache"), dirs_exist_ok=True)
        return
    for rel in files:
        src = ROOT / rel
        if not src.is_file():  # deleted in the work tree
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


# --------------------------------------------------------------------------
# Jobs


class Job:
    """One command (or a few) with a log file, a status and test counts."""

    def __init__(self, name: str, kind: str, deps: tuple[Job, ...] = ()):
        self.name = name
        self.kind = kind
        self.deps = deps
        self.log = LOG_DIR / f"{name}.log"
        self.state = "waiting"  # running, ok, failed
        self.reasons: list[str] = []
        self.seconds = 0.0
        self.passed = self.failed = self.errors = self.skipped = self.xfailed = 0
        self.excluded = 0
        self.counted = False  # has test counts
        self.note = ""

    # subclasses: run(runner) -> None, appending to self.reasons on failure

    @property
    def bad(self) -> int:
        """What this job adds to the final "failed" count."""
        if self.state == "ok":
            return 0
        return max(1, self.failed + self.errors)

    def fail(self, reason: str) -> None:
        self.reasons.append(reason)

    def read_junit(self, path: Path) -> None:
        try:
            root = ET.parse(path).getroot()
        except (OSError, ET.ParseError) as exc:
            self.fail(f"no JUnit report ({exc})")
            return
        suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
        tests = 0
        for case in (c for s in suites for c in s.iter("testcase")):
            tests += 1
            kinds = {child.tag: child for child in case}
            if "failure" in kinds:
                self.failed += 1
            elif "error" in kinds:
                self.errors += 1
            elif "skipped" in kinds:
                kind = kinds["skipped"].get("type")
                if kind == "pytest.xfail":
                    self.xfailed += 1
                elif kind in ("excluded", "cpython.skip"):
                    # CPython suites: an exclusion listed (with its reason) in
                    # scripts/cpython_suites.py, or CPython's own skip
                    # decorator; both are in that script's report.
                    self.excluded += 1
                else:
                    self.skipped += 1
            else:
                self.passed += 1
        self.counted = True
        if tests == 0:
            self.fail("no test ran")
        if self.failed or self.errors:
            self.fail(f"{self.failed} failed, {self.errors} errors")
        if self.skipped and CI:
            self.fail(f"{self.skipped} skipped (skips are failures under CI=true)")


class SetupJob(Job):
    def __init__(self, py: Python, reuse: bool):
        super().__init__(f"setup-{py.tag}", "setup")
        self.py = py
        self.reuse = reuse

    def run(self, r: Runner) -> None:
        py = self.py
        if not (self.reuse and py.host(py.vpython).exists()):
            shutil.rmtree(py.host(py.venv), ignore_errors=True)
            if not r.call(self, [str(py.exe), "-m", "venv", str(py.venv)], py=py):
                return
        if py.root is not None:
            # The tests run from a snapshot inside the root (nothing of the
            # host is mounted there); the build uses it too.
            shutil.rmtree(py.host(py.src), ignore_errors=True)
            snapshot(py.host(py.src))
            py.host(py.logs).mkdir(parents=True, exist_ok=True)
            # pip builds and reinstalls a project given as a directory even
            # when the same version is installed (a reused venv gets the
            # current code).
            if not r.call(self, [str(py.vpython), "-m", "pip", "install", "--no-input",
                                 f"{py.src}[test]"], py=py, cwd="/"):
                return
        else:
            src = Path(tempfile.mkdtemp(prefix=f"fastwait-{py.tag}-"))
            try:
                snapshot(src)
                if not r.call(self, [str(py.vpython), "-m", "pip", "install", "--no-input",
                                     f"{src}[test]"]):
                    return
            finally:
                shutil.rmtree(src, ignore_errors=True)
        check = (
            "import os, sys, fastwait\n"
            "print('fastwait', fastwait.__version__, 'from', fastwait.__file__)\n"
            "print('NATIVE', fastwait.NATIVE, sorted(fastwait.NATIVE_NAMES))\n"
            "assert os.path.realpath(fastwait.__file__).startswith("
            "os.path.realpath(sys.prefix)), 'fastwait not imported from the venv'\n"
            "fallback = os.environ.get('FASTWAIT_NO_EXTENSIONS', '') not in ('', '0')\n"
            "if fallback:\n"
            "    assert not fastwait.NATIVE, 'FASTWAIT_NO_EXTENSIONS=1 but NATIVE is True'\n"
            "else:\n"
            "    import fastwait._fastwait as ext\n"
            "    print('extension', ext.__file__)\n"
            "    assert fastwait.NATIVE, 'the C extension is not in use'\n"
        )
        # Run from an empty directory so that nothing but the venv is importable.
        with tempfile.TemporaryDirectory() as cwd:
            r.call(self, [str(py.vpython), "-c", check], cwd="/" if py.root else cwd, py=py)
        if not self.reasons:
            self.note = (f"built for Python {py.release}"
                         + (" (no extension: FASTWAIT_NO_EXTENSIONS=1)" if FALLBACK else ""))


class PytestJob(Job):
    """One pytest axis; ``debug``: asyncio's debug mode (PYTHONASYNCIODEBUG=1
    and ``-X dev``), whose source tracebacks, coroutine origins and extra
    checks take other paths in asyncio."""

    def __init__(self, py: Python, setup: SetupJob, loop: str, tasks: str, extra: list[str],
                 debug: bool = False):
        axis = f"{loop}-{tasks}" + ("-debug" if debug else "")
        super().__init__(f"pytest-{py.tag}-{axis}", "pytest", (setup,))
        self.py, self.loop, self.tasks, self.extra = py, loop, tasks, extra
        self.debug, self.axis = debug, axis

    def run(self, r: Runner) -> None:
        py = self.py
        junit = py.logs / f"junit-{py.tag}-{self.axis}.xml"
        py.host(junit).unlink(missing_ok=True)
        env = {"FASTWAIT_TEST_LOOP": self.loop, "FASTWAIT_TEST_TASKS": self.tasks}
        flags = []
        if self.debug:
            env["PYTHONASYNCIODEBUG"] = "1"
            flags = ["-X", "dev"]
        cmd = [str(py.vpython), *flags, "-m", "pytest", "-ra", f"--junitxml={junit}",
               *self.extra]
        rc = r.call(self, cmd, env=env, cwd=py.src, check=False, py=py)
        if rc is None:
            return
        if rc == 5:
            self.fail("pytest collected no test (exit 5)")
        elif rc != 0:
            self.fail(f"pytest exited {rc}")
        self.read_junit(py.host(junit))


class CPythonSuitesJob(Job):
    """The interpreter's own test.test_asyncio suites for the primitives,
    with fastwait patched in (scripts/cpython_suites.py), on asyncio's loop
    and again on uvloop for the tests whose loop comes from the policy."""

    def __init__(self, py: Python, setup: SetupJob):
        super().__init__(f"cpython-{py.tag}", "cpython", (setup,))
        self.py = py

    def run(self, r: Runner) -> None:
        py = self.py
        junit = py.logs / f"junit-cpython-{py.tag}.xml"
        py.host(junit).unlink(missing_ok=True)
        cmd = [str(py.vpython), str(py.src / "scripts" / "cpython_suites.py"), "--uvloop",
               f"--junitxml={junit}"]
        rc = r.call(self, cmd, cwd=py.src, check=False, py=py)
        if rc is None:
            return
        if rc != 0:
            self.fail(f"cpython_suites.py exited {rc}")
        self.read_junit(py.host(junit))


class CommandJob(Job):
    """A check with no test counts: leakcheck and mypy."""

    def __init__(self, name: str, kind: str, deps: tuple[Job, ...], cmds: list[list[str]],
                 py: Python):
        super().__init__(name, kind, deps)
        self.cmds = cmds
        self.py = py

    def run(self, r: Runner) -> None:
        for cmd in self.cmds:
            if not r.call(self, cmd, cwd=self.py.src, py=self.py):
                return


class AsanJob(Job):
    def __init__(self, py: Python, reuse: bool, extra: list[str], deps: tuple[Job, ...] = ()):
        super().__init__(f"asan-{py.tag}", "asan", deps)
        self.py, self.reuse, self.extra = py, reuse, extra

    def run(self, r: Runner) -> None:
        py = self.py
        junit_dir = py.logs / f"asan-junit-{py.tag}"
        shutil.rmtree(py.host(junit_dir), ignore_errors=True)
        cmd = ["bash", str(py.src / "scripts" / "asan.sh"), "--junit-dir", str(junit_dir)]
        if self.reuse:
            cmd.append("--reuse")
        cmd += [str(py.exe), "--", *self.extra]
        rc = r.call(self, cmd, cwd=py.src, check=False, py=py)
        if rc is None:
            return
        if rc != 0:
            self.fail(f"asan.sh exited {rc}")
        junit_dir = py.host(junit_dir)
        reports = sorted(junit_dir.glob("*.xml")) if junit_dir.is_dir() else []
        for xml in reports:
            self.read_junit(xml)
        if not reports:
            self.fail("asan.sh wrote no JUnit report")


# --------------------------------------------------------------------------
# Scheduler


class Runner:
    def __init__(self, jobs: list[Job], workers: int, deadline: float):
        self.jobs = jobs
        self.workers = workers
        self.deadline = deadline
        self.t0 = time.monotonic()
        self.cv = threading.Condition()
        self.procs: set[subprocess.Popen] = set()
        self.stopping = False

    def say(self, text: str) -> None:
        with self.cv:
            print(f"[{time.monotonic() - self.t0:7.1f}s] {text}", flush=True)

    def call(self, job: Job, cmd: list[str], env: dict | None = None, cwd: Path | str = ROOT,
             check: bool = True, py: Python | None = None):
        """Run cmd, output appended to the job's log (in the Debian root when
        py is one of its interpreters).  Returns the exit code (check=False)
        or whether it succeeded (check=True); None if it could not finish
        (time limit, interrupted)."""
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        if py is not None and py.root is not None:
            inner_cwd = "/" if Path(cwd) == ROOT else cwd  # the work tree is not in the root
            cmd = py.wrap(cmd, inner_cwd, {**(env or {}), "PYTHONUNBUFFERED": "1"})
            cwd = ROOT
        limit = min(TIMEOUT[job.kind], max(1.0, self.deadline - time.monotonic()))
        with open(job.log, "a") as log:
            log.write(f"\n$ {' '.join(cmd)}\n")
            for k, v in (env or {}).items():
                log.write(f"  {k}={v}\n")
            log.flush()
            with self.cv:
                if self.stopping:
                    job.fail("interrupted")
                    return None
                proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
                self.procs.add(proc)
            try:
                rc = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                kill(proc)
                job.fail(f"time limit of {limit:.0f}s reached: {' '.join(cmd[:4])} ...")
                log.write(f"\n*** killed after {limit:.0f}s\n")
                return None
            finally:
                with self.cv:
                    self.procs.discard(proc)
            if self.stopping:
                job.fail("interrupted")
                return None
        if check:
            if rc != 0:
                job.fail(f"{Path(cmd[0]).name} {' '.join(cmd[1:3])} ... exited {rc}")
            return rc == 0
        return rc

    def next_job(self) -> Job | None:
        """Under self.cv: the first job whose dependencies are done, or None
        when nothing is left; waits while jobs are blocked on running ones."""
        while True:
            waiting = [j for j in self.jobs if j.state == "waiting"]
            if not waiting:
                return None
            for job in waiting:
                if any(d.state == "failed" for d in job.deps):
                    job.state = "failed"
                    job.fail("not run: " + ", ".join(d.name for d in job.deps
                                                      if d.state == "failed") + " failed")
                    continue
                if self.stopping or time.monotonic() > self.deadline:
                    job.state = "failed"
                    job.fail("not run: interrupted or out of time")
                    continue
                if all(d.state == "ok" for d in job.deps):
                    job.state = "running"
                    return job
            if any(j.state == "waiting" for j in self.jobs):
                self.cv.wait(1.0)

    def worker(self) -> None:
        while True:
            with self.cv:
                job = self.next_job()
            if job is None:
                return
            self.say(f"start {job.name}")
            t = time.monotonic()
            job.log.write_text("")
            try:
                job.run(self)
            except Exception as exc:  # a bug here must not hang the matrix
                job.fail(f"driver error: {type(exc).__name__}: {exc}")
            job.seconds = time.monotonic() - t
            with self.cv:
                job.state = "failed" if job.reasons else "ok"
                self.cv.notify_all()
            self.say(f"{'ok  ' if job.state == 'ok' else 'FAIL'}  {job.name} "
                     f"({job.seconds:.0f}s){': ' + describe(job) if describe(job) else ''}")

    def run(self) -> None:
        threads = [threading.Thread(target=self.worker, daemon=True)
                   for _ in range(self.workers)]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.5)
        except KeyboardInterrupt:
            with self.cv:
                self.stopping = True
                procs = list(self.procs)
            for p in procs:
                kill(p)
            for t in threads:
                t.join()
            raise


def kill(proc: subprocess.Popen) -> None:
    """End a job's process group (it was started in a session of its own)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def describe(job: Job) -> str:
    parts = []
    if job.counted:
        parts.append(f"{job.passed} passed, {job.failed + job.errors} failed, "
                     f"{job.skipped} skipped" + (f", {job.xfailed} xfailed" if job.xfailed else "")
                     + (f", {job.excluded} excluded or skipped by CPython" if job.excluded else ""))
    if job.note and job.state == "ok":
        parts.append(job.note)
    parts += job.reasons
    return "; ".join(parts)


# --------------------------------------------------------------------------
# Main


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """(our options, the arguments after ``--`` that are passed on)."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def script_parser(doc: str, usage: str) -> argparse.ArgumentParser:
    """An argument parser whose help is the script's docstring."""
    return argparse.ArgumentParser(
        description=doc.split("\n\n")[0], epilog=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter, usage=usage)


def parse_args(argv: list[str]) -> argparse.Namespace:
    argv, passthrough = split_passthrough(argv)
    p = script_parser(__doc__, "%(prog)s [options] [-- PYTEST_ARGS...]")
    p.add_argument("--pythons", default=",".join(DEFAULT_PYTHONS),
                   help="comma-separated pyenv versions or interpreter paths "
                        "(default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="one axis per Python (asyncio loop, lazy tasks)")
    p.add_argument("--loops", default=",".join(LOOPS), help="loops to run (default: %(default)s)")
    p.add_argument("--tasks", default="lazy,eager",
                   help="task modes to run; eager only on 3.12+ (default: %(default)s)")
    p.add_argument("-k", dest="keyword", help="pytest -k expression (for every pytest run)")
    p.add_argument("--jobs", type=int, default=2, help="jobs at a time (default: 2)")
    p.add_argument("--reuse", action="store_true",
                   help="keep existing venvs (the package itself is always rebuilt)")
    p.add_argument("--no-extras", action="store_true",
                   help="skip the leak check, the sanitizer run and mypy")
    p.add_argument("--max-minutes", type=float, default=80.0,
                   help="start no job after this, stop running ones (default: %(default)s)")
    args = p.parse_args(argv)
    args.pytest_args = (["-k", args.keyword] if args.keyword else []) + passthrough
    args.loops = [x for x in args.loops.split(",") if x]
    args.task_modes = [x for x in args.tasks.split(",") if x]
    for loop in args.loops:
        if loop not in LOOPS:
            p.error(f"unknown loop {loop!r}")
    for mode in args.task_modes:
        if mode not in ("lazy", "eager"):
            p.error(f"unknown task mode {mode!r}")
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    return args


def plan(args: argparse.Namespace, pythons: list[Python]) -> list[Job]:
    jobs: list[Job] = []
    setups = {py.tag: SetupJob(py, args.reuse) for py in pythons}
    py312 = next((py for py in pythons if py.version[:2] == (3, 12) and py.root is None), None)
    debian = [py for py in pythons if py.root is not None]
    # The sanitizer runs on pyenv's 3.12 and on one of Debian's Pythons (the
    # newest release but the pre-release-like last one: 3.14).
    asan_debian = next((py for py in debian if py.minor == "3.14"), debian[-1] if debian else None)
    # Order = priority: the long sanitizer runs start first, the 3.12 build
    # (which the stub check also needs) first among the builds.
    if not args.no_extras:
        if py312 is not None:
            jobs.append(AsanJob(py312, args.reuse, args.pytest_args))
        if asan_debian is not None:  # needs the snapshot its setup makes in the root
            jobs.append(AsanJob(asan_debian, args.reuse, args.pytest_args,
                                (setups[asan_debian.tag],)))
    jobs[len(jobs):] = sorted(setups.values(), key=lambda j: j.py is not py312)
    for py in pythons:
        if args.quick:
            axes = [("asyncio", "lazy")]
        else:
            axes = [(loop, mode) for loop in args.loops for mode in args.task_modes
                    if mode in py.task_modes]
        for loop, mode in axes:
            jobs.append(PytestJob(py, setups[py.tag], loop, mode, args.pytest_args))
        if py is py312 and not args.quick and "asyncio" in args.loops \
                and "lazy" in args.task_modes:
            # asyncio's debug mode, on one interpreter (its cost: one more axis).
            jobs.append(PytestJob(py, setups[py.tag], "asyncio", "lazy", args.pytest_args,
                                  debug=True))
    if not args.no_extras:
        for py in pythons:
            jobs.append(CPythonSuitesJob(py, setups[py.tag]))
        for py in pythons:
            modes = ",".join(py.task_modes)
            vpy = str(py.vpython)
            jobs.append(CommandJob(
                f"leakcheck-{py.tag}", "leakcheck", (setups[py.tag],),
                [[vpy, str(py.src / "scripts" / "leakcheck.py"), "--tasks", modes]], py))
            # The typing example against this interpreter's own typeshed view,
            # the stubs against this interpreter's runtime, and the example run.
            cmds = [[vpy, "-m", "mypy", "--strict", "--no-incremental",
                     "tests/typing/example.py"],
                    [vpy, "-m", "mypy.stubtest", "fastwait", "--allowlist",
                     "tests/typing/stubtest-allowlist.txt"],
                    [vpy, "tests/typing/example.py"]]
            if py is (py312 or pythons[0]):
                cmds.insert(1, [vpy, "-m", "mypy", "--strict", "--no-incremental",
                                "python/fastwait/__init__.pyi"])  # the stubs themselves
                # pyright too (strict, an unneeded ignore is an error): it
                # needs node, which the host has and the Debian root has not.
                cmds.insert(2, [vpy, "-m", "pyright", "--pythonpath", vpy,
                                "-p", "tests/typing/pyrightconfig.json"])
            jobs.append(CommandJob(f"mypy-{py.tag}", "mypy", (setups[py.tag],), cmds, py))
    return jobs


def summary(jobs: list[Job], wall: float) -> tuple[int, int]:
    rows = [("job", "result", "passed", "failed", "skipped", "seconds")]
    for j in jobs:
        if j.counted:
            counts = (str(j.passed), str(j.failed + j.errors), str(j.skipped))
        else:
            counts = ("-", "-", "-")
        rows.append((j.name, "ok" if j.state == "ok" else "FAIL", *counts, f"{j.seconds:.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for n, r in enumerate(rows):
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print(f"wall time {wall / 60:.1f} min on {os.cpu_count()} cores"
          f"{' (CI=true)' if CI else ''}{' (FASTWAIT_NO_EXTENSIONS=1)' if FALLBACK else ''}")
    passed = sum(j.passed for j in jobs if j.counted)
    failed = sum(j.bad for j in jobs)
    return passed, failed


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not FALLBACK and not list((ROOT / "src" / "_fastwait").glob("*.c")):
        print("test_matrix: no C sources in src/_fastwait/ and FASTWAIT_NO_EXTENSIONS is not "
              "set: the C extension is expected (set FASTWAIT_NO_EXTENSIONS=1 to test the "
              "pure-asyncio fallback)", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    if (ROOT / "fastwait").exists():
        print("test_matrix: a fastwait/ directory at the repository root would shadow the "
              "installed package", file=sys.stderr)
        return 2
    seen = set()
    pythons = []
    missing = []  # interpreters of the matrix this machine could not provide
    for spec in (s for s in args.pythons.split(",") if s):
        try:
            py = find_python(spec)
        except NotProvided as exc:
            missing.append(str(exc))
            print(f"test_matrix: NOT PROVIDED: {exc}", flush=True)
            continue
        if py.tag in seen:
            raise SystemExit(f"test_matrix: two interpreters for {py.tag}")
        seen.add(py.tag)
        pythons.append(py)
    if not pythons:
        print("test_matrix: no interpreter could be provided", file=sys.stderr)
        print("0 passed, 1 failed")
        return 1
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    jobs = plan(args, pythons)
    print(f"test_matrix: {len(jobs)} jobs, {args.jobs} at a time; logs in {LOG_DIR}"
          + ("; CI=true" if CI else "")
          + ("; FASTWAIT_NO_EXTENSIONS=1: testing the stdlib fallback, NO C extension"
             if FALLBACK else ""), flush=True)
    print_interpreters(pythons, missing)
    if args.no_extras:
        print("test_matrix: --no-extras: no leak check, sanitizer run or mypy")
    elif not any(j.kind == "asan" for j in jobs):
        print("test_matrix: no pyenv 3.12 and no Debian Python selected: no sanitizer run")

    runner = Runner(jobs, args.jobs, time.monotonic() + 60 * args.max_minutes)
    try:
        with contextlib.ExitStack() as stack:
            if any(py.root is not None for py in pythons):
                # /proc in the root while its commands run, unmounted after.
                stack.enter_context(debian_root.mounted_proc())
            runner.run()
    except KeyboardInterrupt:
        print("\ntest_matrix: interrupted", file=sys.stderr)
        return 1
    wall = time.monotonic() - runner.t0

    failed_jobs = [j for j in jobs if j.state != "ok"]
    for j in failed_jobs:
        print(f"\n===== FAILED: {j.name}: {'; '.join(j.reasons)}")
        if j.log.exists() and j.log.stat().st_size:
            lines = j.log.read_text(errors="replace").splitlines()
            if len(lines) > TAIL_LINES:
                print(f"... ({len(lines) - TAIL_LINES} earlier lines in {j.log})")
            print("\n".join(lines[-TAIL_LINES:]))
    passed, failed = summary(jobs, wall)
    assert failed or not failed_jobs
    print_interpreters(pythons, missing)
    if missing and CI:
        print(f"test_matrix: {len(missing)} interpreter(s) of the matrix missing: "
              "a failure under CI=true")
        failed += len(missing)
    elif missing:
        print(f"test_matrix: {len(missing)} interpreter(s) not provided here (not run; "
              "a failure only under CI=true)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed_jobs or (missing and CI) else 0


def print_interpreters(pythons: list[Python], missing: list[str]) -> None:
    print("interpreters:")
    for py in pythons:
        print(f"  {py.tag:8} Python {py.release:8} {py.origin}")
    for reason in missing:
        print(f"  NOT PROVIDED  {reason}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
