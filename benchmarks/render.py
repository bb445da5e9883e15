"""Render the committed benchmark results as Markdown.

    python -m benchmarks.render                  # print the tables
    python -m benchmarks.render --split          # one table per Python/loop
    python -m benchmarks.render --write README.md
        # replace the text between <!-- benchmarks:start --> and
        # <!-- benchmarks:end --> in README.md with the tables

Reads ``benchmarks/results/*.json`` (the full-mode files; quick and smoke runs
write ``*.tmp.json``, which are ignored unless passed explicitly).  Every
number comes from those files: the README's table is never typed by hand.
Files of runs with the GC off (``<3.x>-<loop>.json``; files without a ``gc``
field are such runs) and on (``<3.x>-<loop>.gc.json``) give separate tables;
the GC-on tables add the share of each variant's time spent inside
collections.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
START = "<!-- benchmarks:start -->"
END = "<!-- benchmarks:end -->"
RATIOS = ("stdlib/floor", "fastwait/floor", "fastwait/stdlib")
VARIANTS = ("floor", "stdlib", "fastwait")
LOOP_ORDER = {"asyncio": 0, "uvloop": 1}
GC_ORDER = {"off": 0, "on": 1}


def gc_mode(run):
    """"off" for the files written before the GC mode existed."""
    return (run.get("gc") or {}).get("mode", "off")


def load(paths):
    runs = []
    for p in paths:
        data = json.loads(Path(p).read_text())
        if data.get("schema") != 1:
            sys.exit(f"{p}: unknown schema {data.get('schema')!r}")
        data["_path"] = str(p)
        runs.append(data)
    if not runs:
        sys.exit("no result files (run `python -m benchmarks` first)")
    runs.sort(
        key=lambda d: (
            GC_ORDER[gc_mode(d)],
            LOOP_ORDER.get(d["loop"]["name"], 9),
            tuple(int(x) for x in d["python"]["minor"].split(".")),
        )
    )
    return runs


def pyver(run):
    return run["python"]["version"].split()[0]


def loopver(run):
    lp = run["loop"]
    version = lp["uvloop_version"]
    return lp["name"] + (f" {version}" if version else "")


def fmt_ratio(x):
    if x is None:
        return "n/a"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def fmt_ns(x):
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}"


def fmt_share(variant_entry):
    g = variant_entry.get("gc")
    if not g or not g.get("share"):
        return "n/a"
    return f"{g['share']['median'] * 100:.0f}%"


def source_lines(runs):
    out = []
    for r in runs:
        fw = r["fastwait"]
        git = r.get("git") or {}
        commit = (git.get("commit") or "?")[:10] + (
            "+dirty" if git.get("dirty") else ""
        )
        m = r["method"]
        out.append(
            f"- Python {pyver(r)}, {loopver(r)}, GC {gc_mode(r)}: "
            f"fastwait {fw['version']}, NATIVE={fw['native']}"
            + (" (**fallback: fastwait is the stdlib**)"
               if fw.get("gather_is_stdlib") else "")
            + f"; {r['mode']} mode, {m['rounds']} rounds; commit {commit}; "
            f"{r['timestamp']} (`{Path(r['_path']).name}`)"
            + (f"; {r['note']}" if r.get("note") else "")
        )
    return out


def row_key(entry):
    return (entry["case"], entry["n"])


def combined(runs):
    """One table per GC mode and loop; each cell lists the Pythons in
    order."""
    by_loop = defaultdict(list)
    for r in runs:
        by_loop[(gc_mode(r), r["loop"]["name"])].append(r)
    out = []
    for (gcm, loop_name), lruns in by_loop.items():
        gc_on = gcm == "on"
        pys = " / ".join(r["python"]["minor"] for r in lruns)
        versions = ", ".join(
            f"{pyver(r)} ({loopver(r)})" for r in lruns
        )
        out.append(f"**{loop_name} loop, GC {gcm}** — Python {versions}; "
                   f"each cell: {pys}")
        out.append("")
        out.append(
            "| case | N | floor ns/child | stdlib / floor "
            "| fastwait / floor | fastwait / stdlib |"
            + (" GC share: floor | stdlib | fastwait |" if gc_on else "")
        )
        out.append("|---|--:|--:|--:|--:|--:|" + ("--:|" * 3 if gc_on else ""))
        keys = []
        tables = []
        for r in lruns:
            t = {row_key(e): e for e in r["results"]}
            tables.append(t)
            keys += [k for k in t if k not in keys]
        for k in keys:
            cells = []
            floor = [
                fmt_ns(t[k]["variants"]["floor"]["median"])
                if k in t else "–"
                for t in tables
            ]
            cells.append(" / ".join(floor))
            for label in RATIOS:
                cells.append(
                    " / ".join(
                        fmt_ratio(t[k]["ratios"][label]["median"])
                        if k in t else "–"
                        for t in tables
                    )
                )
            if gc_on:
                for v in VARIANTS:
                    cells.append(
                        " / ".join(
                            fmt_share(t[k]["variants"][v]) if k in t else "–"
                            for t in tables
                        )
                    )
            out.append(f"| {k[0]} | {k[1]:,} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def split(runs):
    """One table per (Python, loop), with spreads."""
    out = []
    for r in runs:
        gc_on = gc_mode(r) == "on"
        out.append(f"**Python {pyver(r)}, {loopver(r)}, GC {gc_mode(r)}**")
        out.append("")
        out.append(
            "| case | N | floor ns/child | stdlib ns/child "
            "| fastwait ns/child | stdlib / floor | fastwait / floor "
            "| fastwait / stdlib |"
            + (" GC share: floor | stdlib | fastwait |" if gc_on else "")
        )
        out.append("|---|--:|--:|--:|--:|--:|--:|--:|"
                   + ("--:|" * 3 if gc_on else ""))
        for e in r["results"]:
            ns = [
                fmt_ns(e["variants"][v]["median"])
                for v in ("floor", "stdlib", "fastwait")
            ]
            ratios = []
            for label in RATIOS:
                s = e["ratios"][label]
                ratios.append(
                    f"{fmt_ratio(s['median'])} "
                    f"({fmt_ratio(s['q1'])}–{fmt_ratio(s['q3'])})"
                )
            shares = ([fmt_share(e["variants"][v]) for v in VARIANTS]
                      if gc_on else [])
            out.append(
                f"| {e['case']} | {e['n']:,} | "
                + " | ".join(ns + ratios + shares) + " |"
            )
        out.append("")
    return out


def render(runs, mode):
    out = [
        "Generated by `python -m benchmarks.render` from "
        "`benchmarks/results/*.json`.  Ratios are medians of per-round "
        "ratios of CPU time measured in the same run, interleaved; the "
        "**floor** runs the same children with no waiting primitive "
        "(see `benchmarks/README.md`).  **GC off**: the cyclic GC disabled "
        "while timing (collected between samples); **GC on**: enabled as in "
        "a program, and *GC share* is the median share of the variant's "
        "time spent inside collections.",
        "",
    ]
    out += source_lines(runs)
    out.append("")
    out += combined(runs) if mode == "combined" else split(runs)
    return "\n".join(out).rstrip() + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.render")
    p.add_argument("files", nargs="*",
                   help="result files (default: benchmarks/results/*.json "
                   "without *.tmp.json)")
    p.add_argument("--split", action="store_true",
                   help="one table per Python and loop, with quartiles")
    p.add_argument("--write", metavar="FILE",
                   help=f"replace the text between {START} and {END} "
                   "in FILE instead of printing")
    args = p.parse_args(argv)
    files = args.files or sorted(
        f for f in RESULTS_DIR.glob("*.json")
        if not f.name.endswith(".tmp.json")
    )
    text = render(load(files), "split" if args.split else "combined")
    if not args.write:
        sys.stdout.write(text)
        return 0
    target = Path(args.write)
    doc = target.read_text()
    i, j = doc.find(START), doc.find(END)
    if i < 0 or j < i:
        sys.exit(f"{target}: markers {START} ... {END} not found")
    target.write_text(doc[: i + len(START)] + "\n" + text + doc[j:])
    print(f"updated {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
