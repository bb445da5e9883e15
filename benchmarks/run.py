"""Run the benchmarks: ``python -m benchmarks [options]`` (see README.md).

Method, in short: every (case, N, variant) cell is calibrated so that one
sample (``reps`` repetitions timed together with ``perf_counter_ns()``
inside a coroutine running on the loop) takes at least ``--target-ms``.
Then ``rounds`` rounds run; each round visits every (case, N) group in a
shuffled order and, inside a group, takes one sample of each variant in a
shuffled order, back to back.  Ratios are computed per round from those
adjacent samples and summarised by their median and inter-quartile range.
With ``--gc off`` the GC is frozen after calibration, disabled while timing
and collected before every sample; with ``--gc on`` it stays enabled while
timing, as a program has it (no freeze), is still collected before every
sample, and the time spent inside collections is recorded per sample
(``gc.callbacks``, same clock).  The cost of the harness's own ``await variant(...)`` call is
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

#: --gc default per mode.  Quick stays within a minute per loop with the GC
#: off only; the committed full-mode files come from both.
DEFAULT_GC = {"quick": "off", "full": "both", "smoke": "both"}
GC_MODES = {"off": ("off",), "on": ("on",), "both": ("off", "on")}

MODES = {
    # sizes, rounds, target sample time (ms)
    "quick": dict(sizes=cases_mod.QUICK_SIZES, rounds=15, target_ms=5.0),
    "full": dict(sizes=cases_mod.FULL_SIZES, rounds=21, target_ms=10.0),
    "smoke": dict(sizes=(10, 100), rounds=2, target_ms=0.2),
}


# --------------------------------------------------------------------------
# The timed region.


class GCMeter:
    """A ``gc.callbacks`` entry: time spent inside collections (the run's
    clock, read at the "start" and "stop" callbacks) and collections per
    generation, since the last ``reset()``."""

    __slots__ = ("clock", "t_start", "ns", "counts", "gen_ns", "collected")

    def __init__(self, clock):
        self.clock = clock
        self.t_start = 0
        self.reset()

    def reset(self):
        self.ns = 0
        self.counts = {}
        self.gen_ns = {}
        self.collected = 0

    def __call__(self, phase, info):
        if phase == "start":
            self.t_start = self.clock()
            return
        dt = self.clock() - self.t_start
        self.ns += dt
        g = info["generation"]
        self.counts[g] = self.counts.get(g, 0) + 1
        self.gen_ns[g] = self.gen_ns.get(g, 0) + dt
        self.collected += info.get("collected", 0)

    def snapshot(self):
        return self.ns, dict(self.counts), self.collected, dict(self.gen_ns)


async def _timed(fn, loop, n, arg, reps, clock, meter):
    if meter is not None:
        meter.reset()
    t0 = clock()
    for _ in range(reps):
        await fn(loop, n, arg)
    t1 = clock()
    # Read the meter inside the coroutine too: a collection after t1 is not
    # part of the sample.
    return t1 - t0, (meter.snapshot() if meter is not None else None)


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

    __slots__ = ("case", "n", "variant", "fn", "reps", "raw_ns", "clock",
                 "meter", "gc_ns", "gc_counts", "gc_gen_ns", "gc_collected",
                 "_last_gc")

    def __init__(self, case, n, variant, fn, clock, meter=None):
        self.clock = clock
        self.meter = meter  # a GCMeter when the GC is on while timing
        self.case = case
        self.n = n
        self.variant = variant
        self.fn = fn
        self.reps = 1
        self.raw_ns = []  # elapsed ns per repetition, one per round
        # --gc on: per round, ns inside collections per repetition,
        # collections per generation per repetition, objects collected
        # per repetition.
        self.gc_ns = []
        self.gc_counts = []
        self.gc_gen_ns = []
        self.gc_collected = []

    def _arg(self, loop):
        prep = self.case.prepare if self.case is not None else None
        return prep(loop, self.n) if prep is not None else None

    def sample(self, loop, reps):
        # Collect what the previous sample left, outside the timed region
        # (with --gc off the GC is disabled for the whole run, see run_loop;
        # with --gc on it runs inside the timed region as in a program).
        arg = self._arg(loop)
        gc.collect()
        elapsed, self._last_gc = loop.run_until_complete(
            _timed(self.fn, loop, self.n, arg, reps, self.clock, self.meter)
        )
        return elapsed

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
        reps = self.reps
        self.raw_ns.append(self.sample(loop, reps) / reps)
        if self._last_gc is not None:
            ns, counts, collected, gen_ns = self._last_gc
            self.gc_ns.append(ns / reps)
            self.gc_counts.append({g: c / reps for g, c in counts.items()})
            self.gc_gen_ns.append({g: t / reps for g, t in gen_ns.items()})
            self.gc_collected.append(collected / reps)


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
    # scripts/bench_matrix.py runs the benchmarks from a copy of the work
    # tree (no .git there) and passes the work tree's state in.
    given = os.environ.get("FASTWAIT_BENCH_GIT")
    if given:
        return json.loads(given)
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


def fmt_share(summ):
    return "n/a" if summ is None else f"{summ['median'] * 100:.0f}%"


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


def gc_generation_counts(samples):
    """{generation: median over rounds} of per-repetition collection counts."""
    gens = sorted({g for d in samples for g in d})
    return {str(g): statistics.median(d.get(g, 0.0) for d in samples)
            for g in gens}


def run_loop(loop_name, args, fastwait, chosen, mode, gc_mode="off"):
    """One loop's run with the GC off (disabled, frozen after calibration)
    or on (enabled while timing, as in a program; not frozen)."""
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

    gc_on = gc_mode == "on"
    meter = GCMeter(clock) if gc_on else None
    groups = []  # (case, n, {variant: Cell})
    for case in chosen:
        impls = case.variants(fastwait)
        for n in sizes:
            if case.max_n is not None and n > case.max_n:
                continue
            cells = {v: Cell(case, n, v, impls[v], clock, meter)
                     for v in VARIANTS}
            groups.append((case, n, cells))
    null = Cell(None, 0, "null", _null, clock, meter)

    # Calibration doubles as the warm-up; every variant's result is checked
    # once here and once after the last round.
    progress(f"{loop_name}: gc {gc_mode}: checking and calibrating "
             f"{len(groups)} groups")
    gc_was_enabled = gc.isenabled()
    gc.collect()
    heap_before = len(gc.get_objects())
    if gc_on:
        # As a program has it: enabled, default thresholds, nothing frozen
        # (the interpreter's and the harness's objects stay in the oldest
        # generation, so a full collection costs what it costs in a small
        # program).  Identical for floor, stdlib and fastwait.
        gc.enable()
        gc.callbacks.append(meter)
    else:
        gc.disable()
    try:
        null.calibrate(loop, target_ns)
        for case, n, cells in groups:
            for cell in cells.values():
                cell.check(loop)
                cell.calibrate(loop, target_ns)
        gc.collect()
        heap_tracked = len(gc.get_objects())
        if not gc_on:
            gc.freeze()
        gc_threshold = list(gc.get_threshold())

        order = list(range(len(groups)))
        for r in range(mode["rounds"]):
            rng.shuffle(order)
            null.run_round(loop)
            for gi in order:
                cells = list(groups[gi][2].values())
                rng.shuffle(cells)
                for cell in cells:
                    cell.run_round(loop)
            progress(f"{loop_name}: gc {gc_mode}: round {r + 1}/"
                     f"{mode['rounds']}")

        for case, n, cells in groups:
            for cell in cells.values():
                cell.check(loop)
    finally:
        if gc_on:
            gc.callbacks.remove(meter)
        else:
            gc.unfreeze()
        gc.collect()
        if gc_was_enabled:
            gc.enable()
        else:
            gc.disable()
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
            if gc_on:
                cell = cells[v]
                gc_per_child = [x / n for x in cell.gc_ns]
                # Per round: the share of the sample's time (harness
                # overhead subtracted) spent inside collections.
                share = [g / t for g, t in zip(gc_per_child, per_child[v])
                         if t > 0]
                entry["variants"][v]["gc"] = {
                    "ns_per_child": summary(gc_per_child),
                    "share": summary(share) if share else None,
                    "collections_per_rep": gc_generation_counts(
                        cell.gc_counts),
                    # median over rounds of the time inside collections of
                    # each generation, per child
                    "ns_per_child_by_generation": {
                        g: x / n for g, x in gc_generation_counts(
                            cell.gc_gen_ns).items()
                    },
                    "collected_per_rep": statistics.median(
                        cell.gc_collected),
                    "samples_ns_per_child": [round(x, 3)
                                             for x in gc_per_child],
                    "samples_share": [round(x, 5) for x in share],
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
            "gc": (
                "enabled while timing (default thresholds, nothing frozen); "
                "collected before every sample; time inside collections "
                "measured with gc.callbacks and the same clock"
                if gc_on else
                "frozen after calibration; disabled while timing; "
                "collected before every sample"
            ),
            "harness_overhead_ns_per_rep": round(overhead, 2),
            "harness_overhead_spread": summary(null.raw_ns),
        },
        "gc": {
            "mode": gc_mode,
            "threshold": gc_threshold,
            "frozen": not gc_on,
            # tracked objects outside the permanent generation after the
            # calibration's collection (before the freeze in off mode)
            "tracked_objects": heap_tracked,
            "tracked_objects_at_start": heap_before,
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
    gcm = meta["gc"]
    print(
        f"gc {gcm['mode']}: "
        + ("enabled while timing, not frozen, threshold "
           f"{tuple(gcm['threshold'])}, {gcm['tracked_objects']:,} tracked "
           "objects after calibration"
           if gcm["mode"] == "on" else "disabled while timing, frozen"),
        file=out,
    )
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
    if gcm["mode"] == "on":
        headers.append("GC share floor/stdlib/fastwait")
        for row, e in zip(rows, meta["results"]):
            row.append(" / ".join(
                fmt_share(e["variants"][v]["gc"]["share"]) for v in VARIANTS
            ))
    print(render_table(rows, headers, "lr" + "r" * (len(headers) - 2)),
          file=out)
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
    gc_part = ".gc" if meta["gc"]["mode"] == "on" else ""
    suffix = (f"{gc_part}.json" if meta["mode"] == "full"
              else f"{gc_part}.{meta['mode']}.tmp.json")
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
    p.add_argument("--gc", choices=("off", "on", "both"), default=None,
                   help="off: the GC disabled while timing (frozen); on: "
                   "enabled as in a program, time inside collections "
                   "recorded; both: an off run, then an on run, per loop "
                   "(default: both, but off with --quick)")
    p.add_argument("--timer", choices=tuple(CLOCKS), default="cpu",
                   help="cpu: the thread's CPU time (default; robust to "
                   "other processes); wall: perf_counter_ns")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the shuffles (default 0)")
    p.add_argument("--note", help="a free-text note stored in the JSON "
                   "(e.g. why --rounds differs from the mode's)")
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
    if args.gc is None:
        args.gc = DEFAULT_GC[args.mode]
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
    for loop_name, gc_mode in [(lp, g) for lp in loops
                               for g in GC_MODES[args.gc]]:
        try:
            meta = run_loop(loop_name, args, fastwait, chosen, mode, gc_mode)
        except AssertionError as exc:
            print(f"RESULT CHECK FAILED on the {loop_name} loop "
                  f"(gc {gc_mode}): {exc}", file=sys.stderr)
            return 2
        if args.note:
            meta["note"] = args.note
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
