#!/usr/bin/env bash
# Run the test suite against an AddressSanitizer + UndefinedBehaviorSanitizer
# build of the C extension.
#
# Usage: scripts/asan.sh [--reuse] [--junit-dir DIR] [PYTHON] [-- PYTEST_ARGS...]
#
#   PYTHON       a pyenv version (default 3.12.1) or the path of an interpreter
#   --reuse      keep an existing venv (the extension is always rebuilt)
#   --junit-dir  write one JUnit XML report per pytest run into DIR
#
# Builds fastwait with FASTWAIT_SANITIZE=1 (setup.py adds
# -fsanitize=address,undefined) from a clean snapshot of the work tree into
# its own venv, .venv/asan-3.X, checks that the installed extension really is
# instrumented, then runs pytest on the default loop with lazy tasks, and once
# more with eager tasks on 3.12+, with
#   LD_PRELOAD=libasan (the runtime must be loaded before the interpreter)
#   PYTHONMALLOC=malloc (so that ASan sees Python's allocations; objects
#     that CPython keeps on a free list of its own, such as lists, tuples,
#     dicts and floats, are not freed, so a use-after-free of one can go unseen)
#   ASAN_OPTIONS=detect_leaks=0:abort_on_error=1  (CPython "leaks" at exit)
#   UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:abort_on_error=1
# ASan reports go to files (log_path) and are printed at the end, so a report
# from a subprocess or a finalizer is not lost.  UBSan ignores log_path here:
# it writes to stderr, so pytest runs with --capture=sys (C-level writes to
# fd 2 reach the output even when the process dies inside a test) and the
# output is searched for UBSan's "file:line:col: runtime error:" lines.
# Exits non-zero on any sanitizer report, test failure, or a pytest run that
# collected nothing.
# With FASTWAIT_NO_EXTENSIONS=1 there is no extension to instrument: the suite
# still runs under the ASan runtime, and the script says so.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
reuse=0
junit_dir=""
py_spec=""
pytest_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --reuse) reuse=1; shift ;;
        --junit-dir) junit_dir=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; pytest_args=("$@"); break ;;
        -*) echo "asan.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) [ -z "$py_spec" ] || { echo "asan.sh: one PYTHON only" >&2; exit 2; }
           py_spec=$1; shift ;;
    esac
done
py_spec=${py_spec:-3.12.1}
case "$py_spec" in
    */*) PY=$py_spec ;;
    *) PY="$(pyenv root)/versions/$py_spec/bin/python" ;;
esac
[ -x "$PY" ] || { echo "asan.sh: no interpreter $PY" >&2; exit 2; }
minor=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV="$ROOT/.venv/asan-$minor"
fallback=0
case "${FASTWAIT_NO_EXTENSIONS:-}" in ""|0) ;; *) fallback=1 ;; esac

# gcc prints the bare name when it has no such library: insist on a path.
libasan=$(gcc -print-file-name=libasan.so)
libubsan=$(gcc -print-file-name=libubsan.so)
for lib in "$libasan" "$libubsan"; do
    [ -f "$lib" ] || { echo "asan.sh: $lib not found (install gcc's libasan/libubsan)" >&2; exit 2; }
done

echo "== asan.sh: Python $("$PY" -V 2>&1 | cut -d' ' -f2) ($PY), venv $VENV"
echo "== $(gcc --version | head -1); runtime $libasan"

if [ "$reuse" = 1 ] && [ -x "$VENV/bin/python" ]; then
    echo "== reusing $VENV"
else
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi

# Build from a snapshot (tracked and new files, not ignored ones): no stale
# build/ directory of a non-sanitized build can be reused.
snap=$(mktemp -d "${TMPDIR:-/tmp}/fastwait-asan-XXXXXX")
reports=$(mktemp -d "${TMPDIR:-/tmp}/fastwait-asan-reports-XXXXXX")
outputs=$(mktemp -d "${TMPDIR:-/tmp}/fastwait-asan-output-XXXXXX")
trap 'rm -rf "$snap" "$reports" "$outputs"' EXIT
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard) |
        while IFS= read -r -d '' f; do
            [ -f "$ROOT/$f" ] || continue
            mkdir -p "$snap/$(dirname "$f")"
            cp -p "$ROOT/$f" "$snap/$f"
        done
else  # a snapshot already (test_matrix's copy in the Debian root): no git there
    (cd "$ROOT" && tar --exclude=./.venv --exclude=./build --exclude='*.egg-info' \
        --exclude='*.so' --exclude=__pycache__ -cf - .) | (cd "$snap" && tar -xf -)
fi
echo "== building with FASTWAIT_SANITIZE=1"
FASTWAIT_SANITIZE=1 "$VENV/bin/python" -m pip install --no-input "$snap[test]"

if [ "$fallback" = 1 ]; then
    echo "== FASTWAIT_NO_EXTENSIONS=1: NO C extension to sanitize; running the suite under the ASan runtime anyway"
else
    # (Not through import: loading it needs the preloaded runtime.)
    so=$(cd / && "$VENV/bin/python" -c 'import glob, sysconfig
print(*glob.glob(sysconfig.get_path("platlib") + "/fastwait/_fastwait*.so"))')
    [ -n "$so" ] || { echo "asan.sh: fastwait._fastwait is not installed" >&2; exit 1; }
    if ! readelf -d "$so" | grep -q 'NEEDED.*libasan'; then
        echo "asan.sh: $so is not linked against libasan: not a sanitizer build" >&2
        exit 1
    fi
    echo "== instrumented: $so"
fi

export LD_PRELOAD="$libasan${LD_PRELOAD:+:$LD_PRELOAD}"
export PYTHONMALLOC=malloc
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$reports/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:abort_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export FASTWAIT_TEST_LOOP=asyncio

modes=(lazy)
if "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
    modes+=(eager)
fi

# The import of the extension must work under the preloaded runtime.
(cd / && "$VENV/bin/python" -c 'import fastwait; print("== fastwait imports, NATIVE =", fastwait.NATIVE)')

status=0
for mode in "${modes[@]}"; do
    junit=()
    if [ -n "$junit_dir" ]; then
        mkdir -p "$junit_dir"
        junit=("--junitxml=$junit_dir/junit-asan-py$minor-$mode.xml")
    fi
    echo "== pytest, loop asyncio, tasks $mode, under ASan/UBSan"
    rc=0
    (cd "$ROOT" && FASTWAIT_TEST_TASKS=$mode "$VENV/bin/python" -m pytest -ra --capture=sys \
        ${junit[@]+"${junit[@]}"} ${pytest_args[@]+"${pytest_args[@]}"}) 2>&1 |
        tee "$outputs/pytest-$mode.out" || rc=$?
    if grep -qE '^[^ ]+:[0-9]+:[0-9]+: runtime error: ' "$outputs/pytest-$mode.out"; then
        echo "asan.sh: UndefinedBehaviorSanitizer report (tasks $mode), see above" >&2
        status=1
    fi
    case $rc in
        0) ;;
        134) echo "asan.sh: pytest aborted (a sanitizer report?) (tasks $mode)" >&2; status=1 ;;
        5) echo "asan.sh: pytest collected no test (tasks $mode)" >&2; status=1 ;;
        *) echo "asan.sh: pytest exited $rc (tasks $mode)" >&2; status=1 ;;
    esac
done

if compgen -G "$reports/*" >/dev/null; then
    echo "asan.sh: SANITIZER REPORTS:" >&2
    for f in "$reports"/*; do
        echo "----- $(basename "$f")" >&2
        cat "$f" >&2
    done
    status=1
fi
if [ "$status" = 0 ]; then
    echo "== asan.sh: no sanitizer report, every run passed"
else
    echo "== asan.sh: FAILED" >&2
fi
exit $status
