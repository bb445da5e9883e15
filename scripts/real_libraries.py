#!/usr/bin/env python3
"""Run real asyncio libraries' own test suites plain and with fastwait installed.

Usage (standard library only; as root for Debian's Pythons; needs PyPI):

    python3 scripts/real_libraries.py                        # 3.12.1 and debian:3.14
    python3 scripts/real_libraries.py --pythons 3.12.1 --libs aiojobs,quattro
    python3 scripts/real_libraries.py --work /work/scratch/reallibs --markdown

For each library in LIBRARIES (pinned releases whose PyPI sdists ship their
tests, and whose code calls asyncio's gather, wait, wait_for, shield,
timeout and TaskGroup) it downloads the sdist, builds the library's wheel and
extracts its tests into the work directory (default ``.reallibs/`` in the
repository, git-ignored).  For each interpreter (pyenv's 3.12.1 and Debian
unstable's python3.14 by default; ``debian:3.X`` comes from
scripts/debian_root.py's root, run under chroot as scripts/test_matrix.py
runs it) it makes one venv with fastwait built from the work tree, the
libraries and their pinned test dependencies (for the root, the host's pip
downloads the wheels).  Then each suite runs three times, under ``nice``:

    plain-1    pytest ...
    installed  pytest -p fastwait.pytest_plugin ...   (fastwait.install() first)
    plain-2    pytest ...

Each run writes JUnit XML; the per-test outcomes (pass, fail, error, skip)
are compared.  A test whose outcome differs between the two plain runs is
flaky; a test whose installed outcome differs from both plain runs'
(identical) outcome is a difference; each difference is run again alone
(``--recheck N``, default 3, times plain and installed) and the outcomes
printed beside it, to tell a race under load from a real difference.  The
installed run must print the plugin's header line ``fastwait X: installed;
native: ...`` and the plain runs must not; a run without it counts as broken, not as a result.

The table printed at the end (``--markdown`` for the README's form) has, per
library and interpreter: tests, outcomes plain and installed, flaky tests,
differences.  JUnit files, logs and ``results-<pythons>.json`` stay in the work
directory (``--report FILE ...`` prints their table again); the last line
is ``N passed, N failed`` (suites with and without differences).  Exit
status 0 when no suite has a difference, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import debian_root  # noqa: E402
import test_matrix  # noqa: E402
from test_matrix import Python, find_python  # noqa: E402

REPO = HERE.parent
DEFAULT_WORK = REPO / ".reallibs"
DEFAULT_PYTHONS = ("3.12.1", "debian:3.14")
HEADER = "fastwait "  # + version + ": installed; native: ..."
RUN_LIMIT = 900  # seconds for one run of one suite


class Library:
    def __init__(self, name, version, tests, deps, args=(), why=""):
        self.name = name
        self.version = version
        self.tests = tests  # path of the tests in the sdist
        self.deps = list(deps)  # pinned test dependencies
        self.args = list(args)  # pytest options for this suite
        self.why = why

    @property
    def dist(self):
        return self.name.replace("-", "_")

    @property
    def folder(self):
        return f"{self.dist}-{self.version}"


# The pinned releases.  ``-o addopts=`` drops the suites' own coverage
# options (pytest-cov is not installed); pytest-asyncio's auto mode and loop
# scope where the sdist lost the repository's pytest.ini.
LIBRARIES = [
    Library("aiojobs", "1.4.0", "tests",
            ["pytest-asyncio==1.5.0", "pytest-aiohttp==1.1.1", "aiohttp==3.14.5"],
            ["-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"],
            "job scheduler: asyncio.timeout around close(), shield, gather, wait_for; "
            "its aiohttp integration is tested against a real aiohttp server"),
    Library("aiotools", "2.2.4", "tests",
            ["pytest-asyncio==1.5.0"], [],
            "TaskGroup subclasses (PersistentTaskGroup, TaskScope), gather, "
            "as_completed, race, timeout, timeout_at, shield"),
    Library("async-lru", "2.4.0", "tests",
            ["pytest-asyncio==1.5.0", "pytest-timeout==2.4.0"],
            # Its filterwarnings=error turns pytest-asyncio's warning about
            # this unset option into an error.
            ["-o", "asyncio_default_fixture_loop_scope=function"],
            "alru_cache: shield around the cached call, tests full of gather"),
    Library("quattro", "26.1.0", "tests",
            ["pytest-asyncio==1.5.0", "attrs==26.1.0"], [],
            "structured concurrency helpers: subclasses asyncio.taskgroups.TaskGroup, "
            "gather over a TaskGroup, fail_after/move_on deadlines"),
    Library("aiostream", "0.8.1", "tests",
            ["pytest-asyncio==1.5.0"], [],
            "async iteration operators: asyncio.wait, wait_for, its own task "
            "groups over tasks"),
]
COMMON = ["pytest==9.2.0", "typing-extensions==4.16.0"]
PYTEST = ["-p", "no:cacheprovider", "-o", "addopts=", "-rN"]


def log(msg):
    print(f"real_libraries: {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


# --------------------------------------------------------------------------
# Downloads (the host's pip)


def fetch_libraries(work: Path, libs) -> Path:
    """sdists -> work/sdists, their wheels -> work/wheels/libs, their
    sources (with the tests) -> work/src/<name>-<version>."""
    sdists, wheels, src = work / "sdists", work / "wheels" / "libs", work / "src"
    for d in (sdists, wheels, src):
        d.mkdir(parents=True, exist_ok=True)
    for lib in libs:
        if not list(sdists.glob(f"{lib.folder}.tar.gz")):
            log(f"pip download {lib.name}=={lib.version} (sdist)")
            run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                 "--disable-pip-version-check", "--no-binary", ":all:",
                 f"{lib.name}=={lib.version}", "-d", str(sdists)])
        sdist = next(sdists.glob(f"{lib.folder}.tar.gz"))
        if not list(wheels.glob(f"{lib.dist}-{lib.version}-*.whl")):
            log(f"pip wheel {sdist.name}")
            run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                 "--disable-pip-version-check", "-w", str(wheels), str(sdist)])
        if not (src / lib.folder).exists():
            with tarfile.open(sdist) as tar:
                tar.extractall(src, filter="data") if hasattr(tarfile, "data_filter") \
                    else tar.extractall(src)
        if not (src / lib.folder / lib.tests).is_dir():
            raise SystemExit(f"real_libraries: {sdist.name} ships no {lib.tests}/")
    return wheels


def requirements(libs):
    reqs = list(COMMON)
    for lib in libs:
        reqs += [d for d in lib.deps if d not in reqs]
    return reqs


def download_wheels_for(py: Python, dest: Path, reqs) -> None:
    """The wheels a root interpreter installs (its pip cannot reach PyPI)."""
    tag = "cp" + py.minor.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
           "--only-binary", ":all:", "--python-version", py.minor, "--implementation", "cp",
           "--abi", tag, "--abi", "abi3", "--abi", "none"]
    for p in debian_root.PLATFORMS:
        cmd += ["--platform", p]
    log(f"wheels for {py.tag}: pip download {' '.join(reqs)}")
    run(cmd + ["-d", str(dest), *reqs])


# --------------------------------------------------------------------------
# One interpreter: a venv, the runs


class Env:
    """An interpreter's venv and paths, as it sees them (``py.host()`` for
    the host's view of a root path)."""

    def __init__(self, py: Python, work: Path):
        self.py = py
        if py.root is None:
            self.base = work / py.tag
        else:
            self.base = Path("/fastwait-reallibs") / py.tag  # inside the root
        self.venv = self.base / "venv"
        self.python = self.venv / "bin" / "python"
        self.src = self.base / "src"  # the libraries' sources
        self.logs = self.base / "logs"
        self.wheels = self.base / "wheels"

    def host(self, path: Path) -> Path:
        return self.py.host(path)

    def cmd(self, cmd, cwd, env=None):
        """cmd (and its cwd, env) as run for this interpreter: nice'd, and
        under chroot for a root interpreter."""
        env = dict(env or {})
        cmd = ["nice", "-n", "19", *map(str, cmd)]
        if self.py.root is None:
            return cmd, str(cwd), {**os.environ, **env}
        env["PIP_FIND_LINKS"] = f"/wheels/cp{self.py.minor.replace('.', '')} {self.wheels}"
        return self.py.wrap(cmd, cwd, env), "/", dict(os.environ)


def setup(e: Env, work: Path, libs, lib_wheels: Path, reuse: bool) -> None:
    py = e.py
    reqs = requirements(libs)
    if not (reuse and e.host(e.python).exists()):
        shutil.rmtree(e.host(e.venv), ignore_errors=True)
        e.host(e.base).mkdir(parents=True, exist_ok=True)
        c, cwd, env = e.cmd([py.exe, "-m", "venv", e.venv], "/")
        run(c, cwd=cwd, env=env)
    # The libraries' sources, fastwait's snapshot, the wheels.
    shutil.rmtree(e.host(e.src), ignore_errors=True)
    shutil.copytree(work / "src", e.host(e.src), symlinks=True)
    e.host(e.logs).mkdir(parents=True, exist_ok=True)
    e.host(e.wheels).mkdir(parents=True, exist_ok=True)
    for whl in lib_wheels.glob("*.whl"):
        shutil.copy2(whl, e.host(e.wheels))
    if py.root is not None:
        download_wheels_for(py, e.host(e.wheels), reqs)
    snap = e.base / "fastwait-src"
    shutil.rmtree(e.host(snap), ignore_errors=True)
    test_matrix.snapshot(e.host(snap))
    pip = [e.python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-input"]
    log(f"{py.tag}: pip install fastwait (from the work tree), "
        + ", ".join(f"{lib.name}=={lib.version}" for lib in libs) + ", " + " ".join(reqs))
    c, cwd, env = e.cmd(pip + [snap], "/")
    run(c, cwd=cwd, env=env)
    c, cwd, env = e.cmd(pip + ["--find-links", e.wheels, *reqs,
                               *(f"{lib.name}=={lib.version}" for lib in libs)], "/")
    run(c, cwd=cwd, env=env)
    shutil.rmtree(e.host(snap), ignore_errors=True)
    probe = ("import fastwait, asyncio, sys; assert fastwait.NATIVE, 'no C extension'; "
             "assert asyncio.gather is not fastwait.gather; fastwait.install(); "
             "assert asyncio.gather is fastwait.gather and asyncio.TaskGroup is "
             "fastwait.TaskGroup; print('fastwait', fastwait.__version__, 'on', "
             "sys.version.split()[0], 'native:', sorted(fastwait.NATIVE_NAMES))")
    c, cwd, env = e.cmd([e.python, "-c", probe], "/")
    out = run(c, cwd=cwd, env=env, capture_output=True, text=True)
    log(f"{py.tag}: {out.stdout.strip()}")
    c, cwd, env = e.cmd([e.python, "-m", "pip", "freeze", "--disable-pip-version-check"], "/")
    freeze = run(c, cwd=cwd, env=env, capture_output=True, text=True).stdout
    e.host(e.logs / "pip-freeze.txt").write_text(freeze)


def outcomes(path: Path) -> dict[str, str]:
    """test id -> pass | fail | error | skip | xfail, from a JUnit file."""
    root = ET.parse(path).getroot()
    result = {}
    for case in root.iter("testcase"):
        test = f"{case.get('classname', '')}::{case.get('name', '')}"
        kinds = {child.tag: child for child in case}
        if "error" in kinds:
            outcome = "error"
        elif "failure" in kinds:
            outcome = "fail"
        elif "skipped" in kinds:
            outcome = "xfail" if kinds["skipped"].get("type") == "pytest.xfail" else "skip"
        else:
            outcome = "pass"
        if test in result and result[test] != "pass":
            continue  # a test's teardown error after its failure: keep the first
        result[test] = outcome
    return result


def node_id(e: Env, lib: Library, test: str) -> str | None:
    """A JUnit test id (``tests.test_x.TestC::test_y[p]``) as a pytest node
    id (``tests/test_x.py::TestC::test_y[p]``), or None."""
    classname, _, name = test.partition("::")
    parts = classname.split(".")
    for i in range(len(parts), 0, -1):
        path = "/".join(parts[:i]) + ".py"
        if e.host(e.src / lib.folder / path).is_file():
            return "::".join([path, *parts[i:], name])
    return None


def recheck(e: Env, lib: Library, diffs, times: int) -> dict:
    """Run the differing tests alone ``times`` times plain and installed:
    test id -> {"plain": [outcomes], "installed": [outcomes]}."""
    nodes = {t: node_id(e, lib, t) for t, _, _ in diffs}
    args = [n for n in nodes.values() if n]
    found = {t: {"plain": [], "installed": []} for t in nodes}
    if not args:
        return found
    for k in range(times):
        for label, installed in (("plain", False), ("installed", True)):
            r = run_suite(e, lib, f"recheck{k + 1}-{label}", installed, args)
            for t in nodes:
                found[t][label].append(r["tests"].get(t, "missing"))
    return found


def run_suite(e: Env, lib: Library, label: str, installed: bool, select=None) -> dict:
    junit = e.logs / f"{lib.name}-{label}.xml"
    logf = e.host(e.logs / f"{lib.name}-{label}.log")
    e.host(junit).unlink(missing_ok=True)
    cmd = [str(e.python), "-m", "pytest", *PYTEST, *lib.args, f"--junitxml={junit}"]
    if installed:
        cmd[3:3] = ["-p", "fastwait.pytest_plugin"]
    cmd += select or [lib.tests]
    # The suite must see only what the venv has: no FASTWAIT_INSTALL from the
    # caller's environment in a plain run.
    env = {"FASTWAIT_INSTALL": "", "PYTHONDONTWRITEBYTECODE": "1"}
    c, cwd, full = e.cmd(cmd, e.src / lib.folder, env)
    t0 = time.monotonic()
    with open(logf, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        try:
            proc = subprocess.run(c, cwd=cwd, env=full, stdout=f, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=RUN_LIMIT)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = None
    seconds = time.monotonic() - t0
    text = logf.read_text(errors="replace")
    header = next((line for line in text.splitlines() if line.startswith(HEADER)
                   and ": installed; native:" in line), None)
    problems = []
    if rc is None:
        problems.append(f"killed after {RUN_LIMIT}s")
    if installed and header is None:
        problems.append("no 'fastwait ...: installed' header: fastwait was not installed")
    if not installed and header is not None:
        problems.append("fastwait installed in a plain run")
    try:
        tests = outcomes(e.host(junit))
    except (OSError, ET.ParseError) as exc:
        tests = {}
        problems.append(f"no JUnit report ({exc})")
    if not tests and not problems:
        problems.append("no test ran")
    counts = collections.Counter(tests.values())
    log(f"{e.py.tag} {lib.name} {label}: exit {rc}, {seconds:.0f}s, "
        + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        + (f"; {header}" if header and installed else "")
        + (f"; PROBLEM: {'; '.join(problems)}" if problems else ""))
    return {"label": label, "rc": rc, "seconds": seconds, "tests": tests,
            "header": header, "problems": problems, "log": str(logf)}


def compare(runs: dict) -> dict:
    p1, inst, p2 = (runs[k]["tests"] for k in ("plain-1", "installed", "plain-2"))
    ids = sorted(set(p1) | set(p2) | set(inst))
    flaky = [t for t in ids if p1.get(t) != p2.get(t)]
    diffs = [(t, p1.get(t, "missing"), inst.get(t, "missing")) for t in ids
             if t not in flaky and inst.get(t) != p1.get(t)]
    return {"tests": len(ids), "flaky": flaky, "differences": diffs,
            "problems": [f"{k}: {p}" for k, r in runs.items() for p in r["problems"]]}


def fmt_counts(tests: dict) -> str:
    c = collections.Counter(tests.values())
    s = f"{c['pass']}/{c['fail']}/{c['skip'] + c['xfail']}/{c['error']}"
    return s


def table(results, markdown: bool) -> str:
    head = ["library", "version", "Python", "tests", "plain p/f/s/e", "installed p/f/s/e",
            "flaky", "differences", "minutes"]
    rows = []
    for r in results:
        cmp = r["compare"]
        rows.append([r["library"], r["version"], r["python"], str(cmp["tests"]),
                     fmt_counts(r["runs"]["plain-1"]["tests"]),
                     fmt_counts(r["runs"]["installed"]["tests"]),
                     str(len(cmp["flaky"])),
                     (str(len(cmp["differences"])) if not cmp["problems"] else "BROKEN"),
                     f"{sum(x['seconds'] for x in r['runs'].values()) / 60:.1f}"])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(out)
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(head, widths)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(out)


def main(argv) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pythons", default=",".join(DEFAULT_PYTHONS),
                    help="pyenv versions, paths or debian:3.X (default: %(default)s)")
    ap.add_argument("--libs", default=",".join(lib.name for lib in LIBRARIES),
                    help="libraries to run (default: all: %(default)s)")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK,
                    help="scratch directory on the host (default: %(default)s)")
    ap.add_argument("--reuse", action="store_true", help="keep existing venvs")
    ap.add_argument("--recheck", type=int, default=3, metavar="N",
                    help="run each differing test alone N more times plain and N times "
                         "installed, to tell a race from a difference (default: %(default)s)")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    ap.add_argument("--report", metavar="JSON", nargs="+",
                    help="run nothing: print the table of earlier runs' results files")
    args = ap.parse_args(argv)
    if args.report:
        results = [r for f in args.report for r in json.loads(Path(f).read_text())]
        return report(results, args.markdown, None, None)
    names = [n for n in args.libs.split(",") if n]
    libs = [lib for lib in LIBRARIES if lib.name in names]
    if len(libs) != len(names):
        ap.error(f"unknown library in {args.libs!r}; known: "
                 + ", ".join(lib.name for lib in LIBRARIES))
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    lib_wheels = fetch_libraries(work, libs)
    pythons = [find_python(spec) for spec in args.pythons.split(",") if spec]
    results = []
    for py in pythons:
        e = Env(py, work)
        ctx = debian_root.mounted_proc() if py.root is not None else _null()
        with ctx:
            setup(e, work, libs, lib_wheels, args.reuse)
            for lib in libs:
                runs = {}
                for label, installed in (("plain-1", False), ("installed", True),
                                         ("plain-2", False)):
                    runs[label] = run_suite(e, lib, label, installed)
                cmp = compare(runs)
                if args.recheck and cmp["differences"] and not cmp["problems"]:
                    cmp["recheck"] = recheck(e, lib, cmp["differences"], args.recheck)
                results.append({"library": lib.name, "version": lib.version,
                                "python": f"{py.release}" + (" (Debian)" if py.root else ""),
                                "runs": runs, "compare": cmp})
    tags = "+".join(py.tag for py in pythons)
    out = work / f"results-{tags}.json"
    out.write_text(json.dumps(results, indent=1))
    return report(results, args.markdown, time.monotonic() - t0, out)


def report(results, markdown, seconds, where) -> int:
    print()
    print(table(results, markdown))
    bad = 0
    for r in results:
        cmp = r["compare"]
        name = f"{r['library']} {r['version']} on {r['python']}"
        for p in cmp["problems"]:
            print(f"BROKEN {name}: {p}")
        for t in cmp["flaky"]:
            print(f"flaky  {name}: {t}: {r['runs']['plain-1']['tests'].get(t, 'missing')} / "
                  f"{r['runs']['plain-2']['tests'].get(t, 'missing')}")
        for t, plain, inst in cmp["differences"]:
            again = cmp.get("recheck", {}).get(t)
            note = ""
            if again:
                note = (f" (run again alone: plain {','.join(again['plain'])}; installed "
                        f"{','.join(again['installed'])})")
            print(f"DIFF   {name}: {t}: plain {plain}, installed {inst}{note}")
        bad += bool(cmp["differences"] or cmp["problems"])
    if seconds is not None:
        print(f"wall time {seconds / 60:.1f} min; results in {where}")
    print(f"{len(results) - bad} passed, {bad} failed")
    return 1 if bad else 0


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
