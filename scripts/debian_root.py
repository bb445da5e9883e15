#!/usr/bin/env python3
"""Debian unstable's current Pythons (3.13.x, 3.14.x, 3.15.x) in a root of our own.

Usage (standard library only; as root):

    python3 scripts/debian_root.py            # build or reuse the root, list its Pythons
    python3 scripts/debian_root.py --rebuild  # build it anew
    python3 scripts/debian_root.py --check    # say what is there, build nothing

The pyenv builds on this machine (3.11.7, 3.12.1, 3.13.0) date from 2023-2024;
the releases people run today are Debian's.  This script builds, once, a
Debian unstable root with ``debootstrap`` from the Debian mirror the machine is
configured for (``/etc/apt/sources.list.d/``), holding ``python3.13``,
``python3.14`` and ``python3.15`` with their ``-dev``, ``-venv`` and
``libpython3.X-testsuite`` packages, and ``gcc``.  It caches the root in
``$FASTWAIT_DEBIAN_ROOT`` (default ``/var/cache/fastwait/debian-unstable``)
and rebuilds it when the package list in this file changes or after
``MAX_AGE_DAYS`` days (the versions move forward with Debian, and that is the
point).  When unstable cannot be installed it falls back to testing.

pip inside the root cannot verify this network's TLS chain, so the wheels the
tests need are fetched by the host's pip for each interpreter
(``pip download --only-binary :all: --python-version 3.X ...``) into
``/wheels/cp3X`` in the root; commands run there with ``PIP_NO_INDEX=1`` and
``PIP_FIND_LINKS`` pointing at them.

Nothing but ``/proc`` is ever mounted in the root, and only while commands run
in it (``mounted_proc()``); the root is deleted only when nothing is mounted
below it (a recursive delete follows a bind mount into the host).

``scripts/test_matrix.py`` imports this module: ``provide()`` returns the
interpreters, or says plainly why it could not (not root, no debootstrap, no
network).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(os.environ.get("FASTWAIT_DEBIAN_ROOT", "/var/cache/fastwait/debian-unstable"))
MINORS = ("3.13", "3.14", "3.15")
SUITES = ("unstable", "testing")  # the first that installs wins
MAX_AGE_DAYS = 7
PACKAGES = sorted(
    ["gcc", "libc6-dev", "ca-certificates"]
    + [f"{p}{m}{s}" for m in MINORS
       for p, s in (("python", ""), ("python", "-dev"), ("python", "-venv"),
                    ("libpython", "-testsuite"))]
)
# What the tests and benchmarks install (pyproject's [test] and [bench]
# extras, and the build backend).
WHEELS = ("pytest", "hypothesis", "uvloop", "mypy", "pyperf", "setuptools>=77", "wheel")
PLATFORMS = ("manylinux2010_x86_64", "manylinux_2_12_x86_64", "manylinux2014_x86_64",
             "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64", "any")
STAMP = ".fastwait-root.json"
DEBIAN_MIRROR_DEFAULT = "http://deb.debian.org/debian"


class Unavailable(Exception):
    """The root cannot be provided here; the message says why."""


def log(msg: str) -> None:
    print(f"debian_root: {msg}", file=sys.stderr, flush=True)


def spec_hash() -> str:
    text = json.dumps({"packages": PACKAGES, "wheels": WHEELS, "platforms": PLATFORMS})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def mirror() -> str:
    """The Debian mirror of the machine's own apt sources."""
    srcdir = Path("/etc/apt/sources.list.d")
    files = sorted(srcdir.glob("*.sources")) + sorted(srcdir.glob("*.list"))
    files.append(Path("/etc/apt/sources.list"))
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("#"):
                continue
            words = line.replace("URIs:", " ").split()
            for w in words:
                if w.startswith("http") and w.rstrip("/").endswith("/debian"):
                    return w.rstrip("/")
    return DEBIAN_MIRROR_DEFAULT


def mounts_below(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    found = []
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                target = line.split()[1].replace("\\040", " ")
                if target == prefix[:-1] or target.startswith(prefix):
                    found.append(target)
    except OSError:
        pass
    return found


def safe_rmtree(path: Path) -> None:
    """Delete a root, never while anything is mounted below it."""
    if not path.exists():
        return
    for target in sorted(mounts_below(path), reverse=True):
        subprocess.run(["umount", target], check=False)
    left = mounts_below(path)
    if left:
        raise Unavailable(f"will not delete {path}: still mounted below it: {', '.join(left)}")
    shutil.rmtree(path)


@contextlib.contextmanager
def mounted_proc(root: Path = ROOT):
    """/proc mounted in the root for the duration (unmounted after, unless
    it was mounted already when we came)."""
    proc = root / "proc"
    already = str(proc) in mounts_below(root)
    if not already:
        proc.mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True)
    try:
        yield
    finally:
        if not already:
            subprocess.run(["umount", "-l", str(proc)], check=False)


def read_stamp(root: Path = ROOT) -> dict | None:
    try:
        return json.loads((root / STAMP).read_text())
    except (OSError, ValueError):
        return None


def fresh(stamp: dict | None) -> bool:
    return bool(stamp and stamp.get("spec") == spec_hash()
                and time.time() - stamp.get("built", 0) < MAX_AGE_DAYS * 86400)


def need_tools() -> None:
    if os.geteuid() != 0:
        raise Unavailable("not root (debootstrap and chroot need root)")
    if shutil.which("debootstrap") is None:
        if shutil.which("apt-get") is None:
            raise Unavailable("no debootstrap and no apt-get to install it")
        log("installing debootstrap")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        r = subprocess.run(["apt-get", "install", "-y", "-qq", "debootstrap"], env=env,
                           stdout=subprocess.DEVNULL)
        if r.returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL)
            r = subprocess.run(["apt-get", "install", "-y", "-qq", "debootstrap"], env=env,
                               stdout=subprocess.DEVNULL)
        if r.returncode != 0 or shutil.which("debootstrap") is None:
            raise Unavailable("debootstrap is missing and could not be installed")


def chroot(root: Path, cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LANG": "C.UTF-8", "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["chroot", str(root), *cmd], env=env, **kw)


def debootstrap(target: Path) -> str:
    url = mirror()
    errors = []
    for suite in SUITES:
        safe_rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        log(f"debootstrap {suite} from {url} into {target} ({len(PACKAGES)} packages)")
        t0 = time.monotonic()
        r = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
             suite, str(target), url],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode == 0:
            log(f"debootstrap {suite}: done in {time.monotonic() - t0:.0f}s")
            return suite
        tail = "\n".join(r.stdout.splitlines()[-15:])
        errors.append(f"{suite}: exit {r.returncode}\n{tail}")
        log(f"debootstrap {suite} failed (exit {r.returncode}):\n{tail}")
        # debootstrap can leave /proc or /sys mounted on failure
        for t in sorted(mounts_below(target), reverse=True):
            subprocess.run(["umount", "-l", t], check=False)
    raise Unavailable("debootstrap failed for every suite:\n" + "\n".join(errors))


def interpreter_versions(root: Path) -> dict[str, str]:
    out = {}
    for minor in MINORS:
        r = chroot(root, [f"/usr/bin/python{minor}", "-c",
                          "import sys; print('.'.join(map(str, sys.version_info[:3])))"],
                   capture_output=True, text=True)
        if r.returncode != 0:
            raise Unavailable(f"python{minor} does not run in {root}: {r.stderr.strip()}")
        out[minor] = r.stdout.strip()
    return out


def download_wheels(root: Path) -> None:
    """The host's pip fetches each interpreter's wheels into /wheels/cpXY."""
    for minor in MINORS:
        tag = "cp" + minor.replace(".", "")
        dest = root / "wheels" / tag
        dest.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--only-binary", ":all:", "--python-version", minor, "--implementation", "cp",
               "--abi", tag, "--abi", "abi3", "--abi", "none"]
        for p in PLATFORMS:
            cmd += ["--platform", p]
        cmd += ["-d", str(dest), *WHEELS]
        log(f"wheels for {minor}: pip download {' '.join(WHEELS)}")
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise Unavailable(f"pip download for {minor} failed:\n{r.stdout[-3000:]}")


def build(root: Path = ROOT) -> dict:
    need_tools()
    tmp = root.with_name(root.name + ".new")
    suite = debootstrap(tmp)
    chroot(tmp, ["apt-get", "clean"], check=False)
    download_wheels(tmp)
    with mounted_proc(tmp):
        versions = interpreter_versions(tmp)
    stamp = {"spec": spec_hash(), "built": time.time(), "suite": suite, "mirror": mirror(),
             "versions": versions}
    (tmp / STAMP).write_text(json.dumps(stamp, indent=1))
    safe_rmtree(root)
    tmp.rename(root)
    log(f"root ready: {root} ({suite}): " + ", ".join(versions.values()))
    return stamp


def provide(rebuild: bool = False, root: Path = ROOT) -> dict:
    """The root's stamp (with ``versions``: minor -> full version), building
    the root if it is missing, stale or rebuild is asked for.  Raises
    Unavailable with the reason when it cannot."""
    stamp = read_stamp(root)
    if not rebuild and fresh(stamp):
        return stamp  # type: ignore[return-value]
    if stamp and not rebuild:
        log("cached root is stale (package list changed or older than "
            f"{MAX_AGE_DAYS} days): rebuilding")
    try:
        return build(root)
    except Unavailable:
        if stamp and not rebuild:  # a stale root is better than none
            log("rebuild failed: using the cached root")
            return stamp
        raise
    except (OSError, subprocess.CalledProcessError) as exc:
        raise Unavailable(f"building the root failed: {exc}") from exc


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rebuild", action="store_true", help="build the root anew")
    ap.add_argument("--check", action="store_true", help="report only; build nothing")
    args = ap.parse_args(argv)
    if args.check:
        stamp = read_stamp()
        print(json.dumps({"root": str(ROOT), "fresh": fresh(stamp), "stamp": stamp}, indent=1))
        return 0
    try:
        stamp = provide(rebuild=args.rebuild)
    except Unavailable as exc:
        print(f"debian_root: cannot provide Debian's Pythons: {exc}", file=sys.stderr)
        return 1
    print(f"{ROOT} ({stamp['suite']}):",
          ", ".join(f"python{m} {v}" for m, v in stamp["versions"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
