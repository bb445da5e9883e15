#!/usr/bin/env python3
"""Build fastwait on several Pythons and run the benchmarks on each, one after the other.

Usage (any Python 3.8+, standard library only; run from anywhere):

    python3 scripts/bench_matrix.py                          # every Python, full mode, --gc both
    python3 scripts/bench_matrix.py --pythons debian:3.14,debian:3.15 -- --loop both
    python3 scripts/bench_matrix.py --pythons 3.12.1 -- --quick --gc on --no-save
    python3 scripts/bench_matrix.py --pythons 3.12.1 --module benchmarks.gc_census

Interpreters (``--pythons``, comma-separated, in this order by default):
pyenv's 3.11.7, 3.12.1 and 3.13.0, and Debian unstable's python3.14 and
python3.15 (``debian:3.X``), which scripts/debian_root.py provides in a root of
the project's own; the interpreters are found and described by
scripts/test_matrix.py's ``find_python()`` / ``Python`` (imported, not copied).

For each interpreter, strictly one after the other (two benchmark processes
on the 2-core machine would measure each other):

1. a venv (``.venv/bench-py3.X`` in the work tree for a host interpreter,
   ``/fastwait-bench/<key>/venv-deb3.X`` in the Debian root; ``--reuse`` keeps
   an existing one), and a snapshot of the work tree (tracked and new files,
   as test_matrix.py takes it) from which the package is built and installed
   with ``pip install '<snapshot>[bench]'`` (non-editable; in the root pip's
   only index is the wheels fetched for that interpreter, ``/wheels/cp3XY``);
2. a check that ``fastwait`` imports from the venv with ``NATIVE`` True (with
   FASTWAIT_NO_EXTENSIONS=1 in the environment: False);
3. ``python -m benchmarks ARGS --out-dir <tmp>`` run from the snapshot (in the
   root: under chroot, /proc mounted for the run and unmounted after), with
   the work tree's commit passed in FASTWAIT_BENCH_GIT (the snapshot has no
   .git); the JSON files it wrote are copied to ``benchmarks/results/``.

ARGS are what follows ``--`` (default: none, i.e. full mode, asyncio loop,
``--gc both``; add ``--loop both`` for the committed files).  ``--module``
runs another module of the package instead (e.g. ``benchmarks.gc_census``).
Exit status: 0 if every interpreter was provided, built and ran, else 1.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "scripts"))
import debian_root  # noqa: E402  (scripts/debian_root.py)
import test_matrix  # noqa: E402  (scripts/test_matrix.py: Python, find_python, snapshot)

DEFAULT_PYTHONS = ("3.11.7", "3.12.1", "3.13.0", "debian:3.14", "debian:3.15")
FALLBACK = test_matrix.FALLBACK

CHECK = (
    "import os, sys, fastwait\n"
    "print('fastwait', fastwait.__version__, 'NATIVE', fastwait.NATIVE, 'from', fastwait.__file__)\n"
    "assert os.path.realpath(fastwait.__file__).startswith(os.path.realpath(sys.prefix)), "
    "'fastwait not imported from the venv'\n"
    "fallback = os.environ.get('FASTWAIT_NO_EXTENSIONS', '') not in ('', '0')\n"
    "assert fastwait.NATIVE is (not fallback), 'NATIVE is %r' % fastwait.NATIVE\n"
)


def say(msg: str) -> None:
    print(f"bench_matrix: {msg}", file=sys.stderr, flush=True)


def git_state() -> dict:
    """The work tree's commit, and whether the built code differs from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "python",
             "setup.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def place(py: test_matrix.Python) -> None:
    """The benchmarks' own venv and snapshot, apart from test_matrix.py's
    (a test run may be using those at the same time)."""
    if py.root is None:
        py.venv = ROOT / ".venv" / f"bench-{py.tag}"
        py.src = Path(tempfile.mkdtemp(prefix=f"fastwait-bench-{py.tag}-"))
    else:
        key = hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
        work = Path("/fastwait-bench") / key
        py.venv = work / f"venv-{py.tag}"
        py.src = work / f"src-{py.tag}"
    py.vpython = py.venv / "bin" / "python"


def call(py: test_matrix.Python, cmd: list[str], cwd: Path | str, env: dict | None = None) -> int:
    env = dict(env or {}, PYTHONUNBUFFERED="1")
    if py.root is not None:
        full = py.wrap(cmd, cwd, env)
        say("$ chroot " + " ".join(cmd))
        return subprocess.run(full, cwd=ROOT, stdin=subprocess.DEVNULL).returncode
    say("$ " + " ".join(cmd))
    return subprocess.run(cmd, cwd=cwd, env={**os.environ, **env},
                          stdin=subprocess.DEVNULL).returncode


def setup(py: test_matrix.Python, reuse: bool) -> bool:
    if not (reuse and py.host(py.vpython).exists()):
        shutil.rmtree(py.host(py.venv), ignore_errors=True)
        py.host(py.venv).parent.mkdir(parents=True, exist_ok=True)
        if call(py, [str(py.exe), "-m", "venv", str(py.venv)], cwd="/") != 0:
            return False
    src = py.host(py.src)
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    test_matrix.snapshot(src)
    # A directory is always rebuilt and reinstalled, even at the same version.
    if call(py, [str(py.vpython), "-m", "pip", "install", "--quiet", "--no-input",
                 f"{py.src}[bench]"], cwd="/") != 0:
        return False
    return call(py, [str(py.vpython), "-c", CHECK], cwd="/") == 0


def bench(py: test_matrix.Python, module: str, args: list[str], results: Path,
          git: dict) -> list[Path]:
    out = py.src / "bench-out"
    shutil.rmtree(py.host(out), ignore_errors=True)
    py.host(out).mkdir(parents=True)
    cmd = [str(py.vpython), "-m", module, *args]
    if module == "benchmarks":
        cmd += ["--out-dir", str(out)]
    rc = call(py, cmd, cwd=py.src, env={"FASTWAIT_BENCH_GIT": json.dumps(git)})
    copied = []
    for f in sorted(py.host(out).glob("*.json")):
        results.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, results / f.name)
        copied.append(results / f.name)
    if rc != 0:
        raise RuntimeError(f"python -m {module} exited {rc}")
    return copied


def main(argv: list[str]) -> int:
    argv, passthrough = test_matrix.split_passthrough(argv)
    p = test_matrix.script_parser(__doc__, "%(prog)s [options] [-- BENCHMARK_ARGS...]")
    p.add_argument("--pythons", default=",".join(DEFAULT_PYTHONS),
                   help="comma-separated pyenv versions, interpreter paths or debian:3.X "
                        "(default: %(default)s)")
    p.add_argument("--module", default="benchmarks",
                   help="the module to run with -m (default: %(default)s)")
    p.add_argument("--results", default=str(RESULTS),
                   help="where the JSON files go (default: benchmarks/results)")
    p.add_argument("--reuse", action="store_true",
                   help="keep existing venvs (the package itself is always rebuilt)")
    args = p.parse_args(argv)
    git = git_state()
    pythons, failed = [], []
    for spec in (s for s in args.pythons.split(",") if s):
        try:
            py = test_matrix.find_python(spec)
        except test_matrix.NotProvided as exc:
            say(f"NOT PROVIDED: {exc}")
            failed.append(spec)
            continue
        place(py)
        pythons.append(py)
    say("interpreters: " + ", ".join(f"{py.spec} ({py.release})" for py in pythons)
        + f"; python -m {args.module} {' '.join(passthrough)}"
        + ("; FASTWAIT_NO_EXTENSIONS=1" if FALLBACK else ""))
    t0 = time.monotonic()
    for py in pythons:
        t = time.monotonic()
        with contextlib.ExitStack() as stack:
            if py.root is not None:
                stack.enter_context(debian_root.mounted_proc(py.root))
            try:
                if not setup(py, args.reuse):
                    raise RuntimeError("build or import check failed")
                copied = bench(py, args.module, passthrough, Path(args.results), git)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                say(f"FAILED on {py.spec} ({py.release}): {exc}")
                failed.append(py.spec)
                copied = []
            finally:
                if py.root is None:
                    shutil.rmtree(py.src, ignore_errors=True)
        say(f"{py.spec} ({py.release}): {time.monotonic() - t:.0f} s"
            + "".join(f"\n  wrote {c}" for c in copied))
    say(f"done in {(time.monotonic() - t0) / 60:.1f} min"
        + (f"; FAILED or not provided: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
