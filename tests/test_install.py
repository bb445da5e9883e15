"""fastwait.install(), python -m fastwait, FASTWAIT_INSTALL=1, the pytest plugin.

The subprocess tests run the interpreter under test (sys.executable) with
the installed package, as a user would; each compares with what plain
``python`` does where the behaviour is meant to be python's own.
"""

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest

import fastwait

NATIVE = fastwait.NATIVE
subprocess_test = pytest.mark.axis_independent
needs_native = pytest.mark.skipif(
    not NATIVE, reason="install() is a no-op without the C extension")
NAMES = ("gather", "wait", "wait_for", "as_completed", "shield", "TaskGroup",
         "timeout", "timeout_at", "Timeout")
MODULES = {
    "asyncio": NAMES,
    "asyncio.tasks": ("gather", "wait", "wait_for", "as_completed", "shield"),
    "asyncio.taskgroups": ("TaskGroup",),
    "asyncio.timeouts": ("timeout", "timeout_at", "Timeout"),
}


def asyncio_bindings():
    """Every binding of every asyncio.* module: {(module, attr): object}."""
    return {
        (name, attr): value
        for name, module in list(sys.modules.items())
        if (name == "asyncio" or name.startswith("asyncio.")) and module is not None
        for attr, value in vars(module).items()
    }


@pytest.fixture
def installing():
    before = asyncio_bindings()
    yield before
    fastwait.uninstall()
    ours = {id(getattr(fastwait, name)) for name in NAMES}
    stdlib = {id(before[("asyncio", name)]) for name in NAMES}
    after = asyncio_bindings()
    assert not [key for key, value in after.items() if id(value) in ours]
    assert not [key for key, value in before.items()
                if id(value) in stdlib and after.get(key) is not value]


@needs_native
def test_install_rebinds_every_binding_and_uninstall_restores_it(installing):
    before = installing
    assert not fastwait.installed()
    assert fastwait.install() is True
    assert fastwait.installed()
    for modname, names in MODULES.items():
        module = sys.modules[modname]
        for name in names:
            assert getattr(module, name) is getattr(fastwait, name), (modname, name)
    # Every other binding of a stdlib primitive is rebound too, and nothing
    # else changed.
    stdlib = {id(before[("asyncio", name)]): name for name in NAMES}
    after = asyncio_bindings()
    for key, value in before.items():
        name = stdlib.get(id(value))
        if name is not None and value is before[("asyncio", name)]:
            assert after[key] is getattr(fastwait, name), key
        else:
            assert after[key] is value, key
    fastwait.uninstall()
    assert not fastwait.installed()
    restored = asyncio_bindings()
    assert all(restored[key] is value for key, value in before.items())


@needs_native
def test_install_is_idempotent(installing):
    assert fastwait.install() and fastwait.install()
    assert asyncio.gather is fastwait.gather
    fastwait.uninstall()
    fastwait.uninstall()
    assert asyncio.gather is installing[("asyncio", "gather")]
    assert not fastwait.installed()
    # And again after an uninstall.
    assert fastwait.install()
    assert asyncio.timeout is fastwait.timeout


@needs_native
def test_uninstall_leaves_a_binding_rebound_since(installing):
    fastwait.install()

    def mine(*aws):
        raise AssertionError

    asyncio.tasks.wait = mine
    assert not fastwait.installed()  # not all of it is in place any more
    fastwait.uninstall()
    assert asyncio.tasks.wait is mine
    asyncio.tasks.wait = installing[("asyncio.tasks", "wait")]


@needs_native
def test_asyncio_itself_uses_fastwait_once_installed(installing):
    """asyncio's modules look their primitives up at call time: run()'s
    shutdown gathers the tasks left (tasks.gather), 3.12+'s wait_for enters
    timeouts.timeout, and code written against ``asyncio.X`` gets fastwait."""
    seen = []
    real_gather = fastwait.gather

    def spying_gather(*aws, **kwargs):
        seen.append(len(aws))
        return real_gather(*aws, **kwargs)

    async def main():
        asyncio.get_running_loop().create_task(asyncio.sleep(10))  # left over
        async with asyncio.TaskGroup() as tg:
            assert type(tg) is fastwait.TaskGroup
            tg.create_task(asyncio.sleep(0))
        async with asyncio.timeout(10) as cm:
            assert type(cm) is fastwait.Timeout
        return await asyncio.wait_for(asyncio.sleep(0, "r"), 10)

    fastwait.install()
    asyncio.tasks.gather = spying_gather  # runners.py calls tasks.gather
    try:
        assert asyncio.run(main()) == "r"
    finally:
        asyncio.tasks.gather = real_gather
    assert seen == [1]


@needs_native
def test_install_before_and_after_a_loop_exists(installing):
    loop = asyncio.new_event_loop()
    try:
        policy = asyncio.get_event_loop_policy() if sys.version_info < (3, 14) else None
        async def main(value):
            return await asyncio.gather(asyncio.sleep(0, value))

        fastwait.install()
        assert asyncio.gather is fastwait.gather
        assert loop.run_until_complete(main(1)) == [1]
        if policy is not None:
            assert asyncio.get_event_loop_policy() is policy
        fastwait.uninstall()
        assert loop.run_until_complete(main(2)) == [2]
    finally:
        loop.close()


def run_python(*args, env=None, input=None, cwd=None):
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("FASTWAIT_INSTALL", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          env=full_env, input=input, cwd=cwd, timeout=120)


PROBE = textwrap.dedent("""\
    import asyncio, sys
    import fastwait
    print(asyncio.gather is fastwait.gather, fastwait.installed(), sys.argv[1:])
""")


@subprocess_test
def test_install_without_the_extension_is_a_no_op():
    code = ("import asyncio, fastwait\n"
            "g = asyncio.gather\n"
            "print(fastwait.NATIVE, fastwait.install(), fastwait.installed(),"
            " asyncio.gather is g)\n")
    r = run_python("-c", code, env={"FASTWAIT_NO_EXTENSIONS": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False", "False", "True"]


@subprocess_test
def test_fastwait_install_env_installs_at_start_up(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    r = run_python(str(script), "x", env={"FASTWAIT_INSTALL": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{NATIVE} {NATIVE} ['x']"
    for off in ("0", ""):
        r = run_python(str(script), env={"FASTWAIT_INSTALL": off})
        assert r.stdout.strip() == "False False []", r.stderr


@subprocess_test
def test_start_up_hook_imports_nothing_unless_asked():
    r = run_python("-c", "import sys; print('fastwait' in sys.modules,"
                         " 'asyncio' in sys.modules)")
    assert r.stdout.strip() == "False False", r.stderr


@subprocess_test
def test_python_m_fastwait_runs_a_script_as_python_does(tmp_path):
    (tmp_path / "sub").mkdir()
    helper = tmp_path / "sub" / "helper_mod.py"
    helper.write_text("VALUE = 'helper'\n")
    script = tmp_path / "sub" / "prog.py"
    script.write_text(textwrap.dedent("""\
        import asyncio, sys
        import fastwait, helper_mod
        print(sorted(globals()))
        print(__name__, __file__, sys.argv, sys.path[0] == __import__('os').path.dirname(__file__))
        print(asyncio.gather is fastwait.gather, helper_mod.VALUE)
        async def main():
            return await asyncio.gather(asyncio.sleep(0, 'a'))
        print(asyncio.run(main()))
        raise SystemExit(int(sys.argv[2]))
    """))
    plain = run_python(str(script), "arg", "7", cwd=tmp_path)
    ours = run_python("-m", "fastwait", str(script), "arg", "7", cwd=tmp_path)
    assert plain.returncode == ours.returncode == 7, (plain.stderr, ours.stderr)
    plain_lines = plain.stdout.splitlines()
    ours_lines = ours.stdout.splitlines()
    assert ours_lines[:2] == plain_lines[:2]
    assert plain_lines[2] == "False helper"
    assert ours_lines[2] == f"{NATIVE} helper"
    assert ours_lines[3] == plain_lines[3] == "['a']"
    assert ours.stderr == plain.stderr == ""


@subprocess_test
def test_python_m_fastwait_runs_a_module(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tool.py").write_text(textwrap.dedent("""\
        import asyncio, sys
        import fastwait
        print(__name__, sys.argv[1:], sys.argv[0] == __file__)
        print(asyncio.wait_for is fastwait.wait_for)
        print(sorted(globals()))
    """))
    plain = run_python("-m", "pkg.tool", "a", "-m", "b", cwd=tmp_path)
    ours = run_python("-m", "fastwait", "-m", "pkg.tool", "a", "-m", "b", cwd=tmp_path)
    assert plain.returncode == ours.returncode == 0, (plain.stderr, ours.stderr)
    p, o = plain.stdout.splitlines(), ours.stdout.splitlines()
    assert o[0] == p[0] == "__main__ ['a', '-m', 'b'] True"
    assert (p[1], o[1]) == ("False", str(NATIVE))
    assert o[2] == p[2]


@subprocess_test
def test_python_m_fastwait_reads_standard_input():
    source = "import sys, asyncio, fastwait\nprint(sys.argv, asyncio.wait is fastwait.wait)\n"
    plain = run_python("-", "q", input=source)
    ours = run_python("-m", "fastwait", "-", "q", input=source)
    assert plain.stdout == "['-', 'q'] False\n"
    assert ours.stdout == f"['-', 'q'] {NATIVE}\n", ours.stderr
    ours = run_python("-m", "fastwait", input=source)
    assert ours.stdout == f"['-'] {NATIVE}\n", ours.stderr
    probe = "print(sorted(globals()), __file__, __name__)\n"
    assert (run_python("-m", "fastwait", input=probe).stdout
            == run_python(input=probe).stdout)


@subprocess_test
def test_python_m_fastwait_passes_an_uncaught_exception_through(tmp_path):
    script = tmp_path / "boom.py"
    script.write_text("def f():\n    raise LookupError('boom')\nf()\n")
    plain = run_python(str(script))
    ours = run_python("-m", "fastwait", str(script))
    assert plain.returncode == ours.returncode == 1
    assert ours.stderr.splitlines()[-1] == plain.stderr.splitlines()[-1] == "LookupError: boom"
    assert f'File "{script}", line 2, in f' in ours.stderr


def program_name_and_message(stderr):
    first = stderr.splitlines()[0]
    program, _, message = first.partition(": ")
    return program, message


@subprocess_test
@pytest.mark.parametrize("target", [
    ["missing_script.py"],
    ["-m", "missing_module_xyz"],
    ["-m", "json"],  # a package without __main__
    ["-m"],
    ["an_empty_dir"],
])
def test_python_m_fastwait_bad_targets_fail_as_python_does(tmp_path, target):
    (tmp_path / "an_empty_dir").mkdir()
    plain = run_python(*target, cwd=tmp_path)
    ours = run_python("-m", "fastwait", *target, cwd=tmp_path)
    assert ours.returncode == plain.returncode != 0
    assert ours.stdout == plain.stdout == ""
    p_program, p_message = program_name_and_message(plain.stderr)
    o_program, o_message = program_name_and_message(ours.stderr)
    assert o_message == p_message
    if target != ["-m"]:
        assert os.path.realpath(o_program) == os.path.realpath(p_program)


def write_suite(tmp_path):
    (tmp_path / "conftest.py").write_text(textwrap.dedent("""\
        from asyncio import gather  # bound when the conftest is imported
    """))
    (tmp_path / "test_probe.py").write_text(textwrap.dedent("""\
        import asyncio
        import fastwait
        import conftest

        def test_probe():
            print("PROBE", asyncio.gather is fastwait.gather,
                  conftest.gather is fastwait.gather)
    """))
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n")


@subprocess_test
@pytest.mark.parametrize("how", ["plain", "--fastwait", "-p", "env", "-p-no-autoload"])
def test_pytest_plugin(tmp_path, how):
    write_suite(tmp_path)
    args = ["-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", "-o",
            "console_output_style=classic"]
    env = {}
    if how == "--fastwait":
        args.append("--fastwait")
    elif how == "-p":
        args += ["-p", "fastwait.pytest_plugin"]
    elif how == "env":
        env["FASTWAIT_INSTALL"] = "1"
    elif how == "-p-no-autoload":
        args += ["-p", "fastwait.pytest_plugin"]
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    r = run_python(*args, "-v", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    probe = [line for line in r.stdout.splitlines() if "PROBE" in line]
    assert probe, r.stdout
    header = [line for line in r.stdout.splitlines() if line.startswith("fastwait ")]
    if how == "plain":
        assert probe[0].endswith("PROBE False False")
        assert header == []
    else:
        assert probe[0].endswith(f"PROBE {NATIVE} {NATIVE}"), r.stdout
        if NATIVE:
            assert header == [f"fastwait {fastwait.__version__}: installed; native: "
                              "as_completed, gather, shield, TaskGroup, Timeout, "
                              "timeout, timeout_at, wait, wait_for"]
        else:
            assert len(header) == 1 and "NOT installed" in header[0]
