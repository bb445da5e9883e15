"""Run the benchmarks: ``python -m benchmarks [options]`` (see README.md).

Method, in short: every (case, N, variant) cell is calibrated so that one
sample (``reps`` repetitions timed together with ``perf_counter_ns()``
inside a coroutine running on the loop) takes at least ``--target-ms``.
Then ``rounds`` rounds run; each round visits every (case, N) group in a
shuffled order and, inside a group, takes one sample of each variant in a
shuffled order, back to back.  Ratios are computed per round from those
adjacent samples and summarised by their median and inter-quartile range.
The GC is frozen after start-up, disabled while timing and collected before
every sample.  The cost of the harness's own ``await variant(...)`` call is
measured the same way (a null variant, one sample per round) and subtracted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import fnmatch
import gc
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from time import perf_counter_ns

from . import cases as cases_mod

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
SCHEMA = 1
VARIANTS = ("floor", "stdlib", "fastwait")
RATIOS = (
    ("stdlib/floor", "stdlib", "floor"),
    ("fastwait/floor", "fastwait", "floor"),
    ("fastwait/stdlib", "fastwait", "stdlib"),
)

MODES = {
    # sizes, rounds, target sample time (ms)
    "quick": dict(sizes=cases_mod.QUICK_SIZES, rounds=15, target_ms=5.0),
    "full": dict(sizes=cases_mod.FULL_SIZES, rounds=21, target_ms=10.0),
    "smoke": dict(sizes=(10, 100), rounds=2, target_ms=0.2),
}


# --------------------------------------------------------------------------
# The timed region.


async def _timed(fn, loop, n, arg, reps, clock):
    t0 = clock()
    for _ in range(reps):
        await fn(loop, n, arg)
    return clock() - t0


#: --timer choices.  "cpu" (the default) counts only the time this thread
#: was on a CPU, so a sample that another process preempted is not
#: stretched by the wait; "wall" is perf_counter_ns.  The workloads never
#: block (a loop with ready callbacks polls the selector with timeout 0), so
#: both clocks measure the same work when the machine is quiet.
CLOCKS = {"cpu": time.thread_time_ns, "wall": perf_counter_ns}


async def _once(fn, loop, n, arg):
    return await fn(loop, n, arg)


async def _null(loop, n, arg):
    return None


class Cell:
    """One (case, N, variant): its callable, calibration and samples."""

    __slots__ = ("case", "n", "variant", "fn", "reps", "raw_ns", "clock")

    def __init__(self, case, n, variant, fn, clock):
        self.clock = clock
        self.case = case
        self.n = n
        self.variant = variant
        self.fn = fn
        self.reps = 1
        self.raw_ns = []  # elapsed ns per repetition, one per round

    def _arg(self, loop):
        prep = self.case.prepare if self.case is not None else None
        return prep(loop, self.n) if prep is not None else None

    def sample(self, loop, reps):
        # The GC is disabled for the whole run (see run_loop); collect what
        # the previous sample left, outside the timed region.
        arg = self._arg(loop)
        gc.collect()
        return loop.run_until_complete(
            _timed(self.fn, loop, self.n, arg, reps, self.clock)
        )

    def check(self, loop):
        if self.case is None:
            return
        arg = self._arg(loop)
        result = loop.run_until_complete(_once(self.fn, loop, self.n, arg))
        self.case.check(self.variant, self.n, result, arg)

    def calibrate(self, loop, target_ns):
        reps = 1
        while True:
            elapsed = self.sample(loop, reps)
            if elapsed >= target_ns / 5 or reps >= 10**7:
                break
            reps *= 10
        self.reps = max(1, math.ceil(reps * target_ns / max(elapsed, 1)))

    def run_round(self, loop):
        self.raw_ns.append(self.sample(loop, self.reps) / self.reps)


# --------------------------------------------------------------------------
# Helpers.


def quartiles(xs):
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q1, med, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, med, q3


def summary(xs):
    q1, med, q3 = quartiles(xs)
    return {
        "median": med,
        "q1": q1,
        "q3": q3,
        "min": min(xs),
        "max": max(xs),
    }


def make_loop(name):
    if name == "asyncio":
        return asyncio.new_event_loop(), None
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            sys.exit(
                "--loop uvloop: uvloop is not installed "
                "(pip install uvloop, or the project's 'bench' extra)"
            )
        return uvloop.new_event_loop(), uvloop.__version__
    raise ValueError(name)


def import_fastwait():
    try:
        import fastwait
    except ImportError as exc:
        sys.exit(
            f"cannot import fastwait ({exc}).\n"
            "Build and install it (pip install -e .), or run the stdlib "
            "fallback with\n"
            "  PYTHONPATH=python FASTWAIT_NO_EXTENSIONS=1 python -m benchmarks"
        )
    return fastwait


def git_info():
    try:
        root = HERE.parent
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no",
                 "--", "src", "python", "setup.py"],
                cwd=root, capture_output=True, text=True, check=True,
            ).stdout.strip()
        )
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def python_minor():
    return "%d.%d" % sys.version_info[:2]


def select_cases(args, fastwait):
    chosen = []
    for case in cases_mod.CASES:
        if args.case:
            if any(fnmatch.fnmatchcase(case.name, p) for p in args.case):
                chosen.append(case)
        elif args.all or case.enabled_by_default(fastwait):
            chosen.append(case)
    if not chosen:
        sys.exit(f"no case matches {args.case!r} (see --list)")
    return chosen


def fmt_ns(summ):
    med = summ["median"]
    spread = (summ["q3"] - summ["q1"]) / 2 / med * 100 if med > 0 else 0.0
    if med >= 100:
        s = f"{med:.0f}"
    elif med >= 10:
        s = f"{med:.1f}"
    else:
        s = f"{med:.2f}"
    return f"{s} ±{spread:.0f}%" if spread >= 0.5 else f"{s} ±0%"


def fmt_ratio(summ):
    if summ["median"] is None:
        return "n/a"
    half = (summ["q3"] - summ["q1"]) / 2
    med = summ["median"]
    digits = 2 if med < 10 else 1
    return f"{med:.{digits}f} ±{half:.{digits}f}"


def render_table(rows, headers, aligns):
    widths = [len(h) for h in headers]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r)]
    out = []

    def line(cells):
        return "  ".join(
            c.ljust(w) if a == "l" else c.rjust(w)
            for c, w, a in zip(cells, widths, aligns)
        ).rstrip()

    out.append(line(headers))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in rows)
    return "\n".join(out)


# --------------------------------------------------------------------------
# One loop's run.


def run_loop(loop_name, args, fastwait, chosen, mode):
    loop, uvloop_version = make_loop(loop_name)
    asyncio.set_event_loop(loop)
    rng = random.Random(args.seed)
    target_ns = int(mode["target_ms"] * 1e6)
    sizes = mode["sizes"]
    clock = CLOCKS[args.timer]
    started = time.monotonic()

    def progress(msg):
        if not args.quiet:
            print(f"[{time.monotonic() - started:6.1f}s] {msg}",
                  file=sys.stderr, flush=True)

    groups = []  # (case, n, {variant: Cell})
    for case in chosen:
        impls = case.variants(fastwait)
        for n in sizes:
            if case.max_n is not None and n > case.max_n:
                continue
            cells = {v: Cell(case, n, v, impls[v], clock) for v in VARIANTS}
            groups.append((case, n, cells))
    null = Cell(None, 0, "null", _null, clock)

    # Calibration doubles as the warm-up; every variant's result is checked
    # once here and once after the last round.
    progress(f"{loop_name}: checking and calibrating {len(groups)} groups")
    gc_was_enabled = gc.isenabled()
    gc.disable()
    null.calibrate(loop, target_ns)
    for case, n, cells in groups:
        for cell in cells.values():
            cell.check(loop)
            cell.calibrate(loop, target_ns)
    gc.collect()
    gc.freeze()

    order = list(range(len(groups)))
    for r in range(mode["rounds"]):
        rng.shuffle(order)
        null.run_round(loop)
        for gi in order:
            cells = list(groups[gi][2].values())
            rng.shuffle(cells)
            for cell in cells:
                cell.run_round(loop)
        progress(f"{loop_name}: round {r + 1}/{mode['rounds']}")

    for case, n, cells in groups:
        for cell in cells.values():
            cell.check(loop)
    gc.unfreeze()
    gc.collect()
    if gc_was_enabled:
        gc.enable()
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    asyncio.set_event_loop(None)
    elapsed = time.monotonic() - started

    overhead = statistics.median(null.raw_ns)
    results = []
    for case, n, cells in groups:
        per_child = {
            v: [(x - overhead) / n for x in cells[v].raw_ns] for v in VARIANTS
        }
        entry = {
            "case": case.name,
            "primitive": case.primitive,
            "description": case.description,
            "n": n,
            "variants": {},
            "ratios": {},
        }
        for v in VARIANTS:
            entry["variants"][v] = {
                "reps": cells[v].reps,
                **summary(per_child[v]),
                "samples_ns_per_child": [round(x, 3) for x in per_child[v]],
            }
        for label, a, b in RATIOS:
            # A round whose denominator is not positive (only possible when
            # the harness overhead swamps a tiny sample) has no ratio.
            per_round = [
                x / y for x, y in zip(per_child[a], per_child[b]) if y > 0
            ]
            entry["ratios"][label] = {
                **(summary(per_round) if per_round else dict.fromkeys(
                    ("median", "q1", "q3", "min", "max"))),
                "per_round": [round(x, 5) for x in per_round],
            }
        results.append(entry)

    meta = {
        "schema": SCHEMA,
        "timestamp": datetime.datetime.now(datetime.timezone.utc)
        .isoformat(timespec="seconds"),
        "mode": args.mode,
        "duration_s": round(elapsed, 1),
        "python": {
            "version": sys.version,
            "minor": python_minor(),
            "implementation": sys.implementation.name,
            "executable": sys.executable,
        },
        "loop": {
            "name": loop_name,
            "class": f"{type(loop).__module__}.{type(loop).__qualname__}",
            "uvloop_version": uvloop_version,
        },
        "fastwait": {
            "version": getattr(fastwait, "__version__", None),
            "native": bool(getattr(fastwait, "NATIVE", False)),
            "native_names": sorted(getattr(fastwait, "NATIVE_NAMES", ())),
            "gather_is_stdlib": fastwait.gather is asyncio.gather,
            "file": getattr(fastwait, "__file__", None),
        },
        "git": git_info(),
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
        },
        "method": {
            "rounds": mode["rounds"],
            "sizes": list(sizes),
            "target_sample_ms": mode["target_ms"],
            "seed": args.seed,
            "timer": {
                "cpu": "time.thread_time_ns (CPU time of the thread)",
                "wall": "time.perf_counter_ns",
            }[args.timer] + ", read inside a coroutine on the loop",
            "interleaving": "each round: (case, N) groups shuffled, the "
            "three variants of a group shuffled and sampled back to back",
            "ratios": "median and quartiles of per-round ratios",
            "gc": "frozen after calibration; disabled while timing; "
            "collected before every sample",
            "harness_overhead_ns_per_rep": round(overhead, 2),
            "harness_overhead_spread": summary(null.raw_ns),
        },
        "results": results,
    }
    return meta


def print_report(meta, out=sys.stdout):
    fw = meta["fastwait"]
    lp = meta["loop"]
    loopdesc = lp["name"] + (
        f" {lp['uvloop_version']}" if lp["uvloop_version"] else ""
    )
    print(file=out)
    print(f"Python {meta['python']['version']}", file=out)
    print(
        f"loop: {loopdesc} ({lp['class']})   fastwait {fw['version']}  "
        f"NATIVE={fw['native']}  "
        f"native: {', '.join(fw['native_names']) or '-'}"
        + ("   [fastwait.gather IS asyncio.gather]"
           if fw["gather_is_stdlib"] else ""),
        file=out,
    )
    m = meta["method"]
    print(
        f"mode {meta['mode']}: {m['rounds']} rounds, samples >= "
        f"{m['target_sample_ms']} ms, harness overhead "
        f"{m['harness_overhead_ns_per_rep']:.0f} ns/rep subtracted, "
        f"{meta['duration_s']:.0f} s",
        file=out,
    )
    print(
        "ns/child: median ±half-IQR (% of median);  ratios: median of "
        "per-round ratios ±half-IQR",
        file=out,
    )
    headers = ["case", "N", "floor ns/child", "stdlib ns/child",
               "fastwait ns/child", "stdlib/floor", "fastwait/floor",
               "fastwait/stdlib"]
    rows = []
    for e in meta["results"]:
        rows.append(
            [e["case"], f"{e['n']:,}"]
            + [fmt_ns(e["variants"][v]) for v in VARIANTS]
            + [fmt_ratio(e["ratios"][label]) for label, _, _ in RATIOS]
        )
    print(render_table(rows, headers, "lr" + "r" * 6), file=out)
    fs = [e["ratios"]["fastwait/stdlib"]["median"] for e in meta["results"]]
    fs = [x for x in fs if x is not None]
    if fs:
        gm = math.exp(sum(math.log(x) for x in fs) / len(fs))
        worst = max(fs, key=lambda x: abs(x - 1))
        print(
            f"fastwait/stdlib over {len(fs)} rows: geometric mean "
            f"{gm:.3f}, farthest from 1: {worst:.3f}",
            file=out,
        )


def result_path(meta, out_dir):
    suffix = ".json" if meta["mode"] == "full" else f".{meta['mode']}.tmp.json"
    name = f"{meta['python']['minor']}-{meta['loop']['name']}{suffix}"
    return Path(out_dir) / name


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark fastwait against asyncio and the floor "
        "(the same children with no waiting primitive).",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="mode", action="store_const",
                   const="quick", help="sizes 100 and 10 000, 15 rounds "
                   "(< 1 min per loop)")
    g.add_argument("--full", dest="mode", action="store_const",
                   const="full", help="sizes 10 .. 100 000, 21 rounds "
                   "(default)")
    g.add_argument("--smoke", dest="mode", action="store_const",
                   const="smoke", help="every case (--all) at N = 10 and "
                   "100, 2 tiny rounds: checks that all cases run")
    p.set_defaults(mode="full")
    p.add_argument("--loop", choices=("asyncio", "uvloop", "both"),
                   default="asyncio")
    p.add_argument("--case", action="append", metavar="GLOB",
                   help="run only cases matching GLOB (repeatable), "
                   "e.g. 'gather/tasks/*'; selects disabled cases too")
    p.add_argument("--all", action="store_true",
                   help="also run cases of primitives fastwait does not "
                   "implement natively")
    p.add_argument("--sizes", help="comma-separated N values, overriding "
                   "the mode's")
    p.add_argument("--rounds", type=int, help="override the mode's rounds")
    p.add_argument("--target-ms", type=float,
                   help="minimum time of one sample (ms)")
    p.add_argument("--timer", choices=tuple(CLOCKS), default="cpu",
                   help="cpu: the thread's CPU time (default; robust to "
                   "other processes); wall: perf_counter_ns")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the shuffles (default 0)")
    p.add_argument("--no-save", action="store_true",
                   help="do not write the JSON results")
    p.add_argument("--out-dir", default=str(RESULTS_DIR),
                   help="where the JSON goes (default benchmarks/results)")
    p.add_argument("--list", action="store_true",
                   help="list the cases and whether they run by default")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress on stderr")
    args = p.parse_args(argv)
    if args.mode == "smoke":
        args.all = True
    return args


def main(argv=None):
    args = parse_args(argv)
    fastwait = import_fastwait()
    if args.list:
        for c in cases_mod.CASES:
            on = "on " if c.enabled_by_default(fastwait) else "off"
            lim = f" (N <= {c.max_n:,})" if c.max_n else ""
            print(f"{on}  {c.name:28} {c.description}{lim}")
        return 0
    mode = dict(MODES[args.mode])
    if args.sizes:
        mode["sizes"] = tuple(int(s) for s in args.sizes.split(","))
    if args.rounds:
        mode["rounds"] = args.rounds
    if args.target_ms:
        mode["target_ms"] = args.target_ms
    if mode["rounds"] < 1 or any(n < 1 for n in mode["sizes"]):
        sys.exit("--rounds and --sizes must be positive")
    chosen = select_cases(args, fastwait)
    loops = ("asyncio", "uvloop") if args.loop == "both" else (args.loop,)
    if "uvloop" in loops:
        make_loop("uvloop")[0].close()  # fail early if it is missing
    for loop_name in loops:
        try:
            meta = run_loop(loop_name, args, fastwait, chosen, mode)
        except AssertionError as exc:
            print(f"RESULT CHECK FAILED on the {loop_name} loop: {exc}",
                  file=sys.stderr)
            return 2
        print_report(meta)
        if not args.no_save:
            path = result_path(meta, args.out_dir)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".partial")
            tmp.write_text(json.dumps(meta, indent=1) + "\n")
            tmp.replace(path)
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
