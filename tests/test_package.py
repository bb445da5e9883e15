"""The fastwait package surface."""

import asyncio
import importlib.resources
import inspect
import os

import pytest

import fastwait

CI = os.environ.get("CI", "") == "true"
NO_EXTENSIONS = os.environ.get("FASTWAIT_NO_EXTENSIONS", "") not in ("", "0")
REQUIRE_NATIVE_VAR = os.environ.get("FASTWAIT_REQUIRE_NATIVE", "") == "1"
# FASTWAIT_REQUIRE_NATIVE=1 always asks for the extension; CI=true does too,
# unless the run explicitly opted out with FASTWAIT_NO_EXTENSIONS=1 (then the
# fallback is what is under test and NATIVE must be False).
REQUIRE_NATIVE = REQUIRE_NATIVE_VAR or (CI and not NO_EXTENSIONS)

PRIMITIVES = ["TaskGroup", "Timeout", "as_completed", "gather", "shield",
              "timeout", "timeout_at", "wait", "wait_for"]


def test_all():
    assert sorted(fastwait.__all__) == sorted([
        "ALL_COMPLETED", "CompletionQueue", "FIRST_COMPLETED",
        "FIRST_EXCEPTION", "NATIVE",
        "TaskGroup", "Timeout", "as_completed", "gather", "install",
        "installed", "race", "shield", "timeout", "timeout_at", "uninstall",
        "wait", "wait_for",
    ])
    assert len(set(fastwait.__all__)) == len(fastwait.__all__)
    namespace = {}
    exec("from fastwait import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(fastwait.__all__)


@pytest.mark.parametrize("name", ["ALL_COMPLETED", "FIRST_COMPLETED",
                                  "FIRST_EXCEPTION"])
def test_constants_are_the_stdlib_values(name):
    assert getattr(fastwait, name) == getattr(asyncio, name) == name
    assert getattr(fastwait, name) is getattr(asyncio, name)


def test_native_flag():
    assert fastwait.NATIVE is True or fastwait.NATIVE is False
    if REQUIRE_NATIVE:
        assert fastwait.NATIVE is True, (
            "the C extension is required here (CI=true or "
            "FASTWAIT_REQUIRE_NATIVE=1) but fastwait.NATIVE is False")
    if NO_EXTENSIONS and not REQUIRE_NATIVE_VAR:
        assert fastwait.NATIVE is False


def test_gather_is_the_builtin_when_native():
    if not fastwait.NATIVE:
        # Fallback: the stdlib's own objects, re-exported, but for gather
        # and TaskGroup, which come from _pyextras (fastwait's own
        # arguments; without them they are the stdlib's).
        from fastwait import _pyextras

        assert not REQUIRE_NATIVE
        assert fastwait.gather is _pyextras.gather
        assert fastwait.TaskGroup is _pyextras.TaskGroup
        for name in set(PRIMITIVES) - {"gather", "TaskGroup"}:
            assert getattr(fastwait, name) is getattr(asyncio, name), name
        return
    from fastwait import _fastwait

    gather = fastwait.gather
    assert type(gather).__name__ == "builtin_function_or_method"
    assert gather is _fastwait.gather
    assert gather.__module__ in ("fastwait._fastwait", None)
    assert gather.__name__ == "gather"
    assert gather.__qualname__ == "gather"
    assert gather is not asyncio.gather


def test_gather_signature():
    """asyncio.gather's signature plus issue 11's keyword-only limit=,
    timeout=, eager= (docs/extras.md), on the native builtin and on the
    pure-Python fallback (fastwait._pyextras) alike."""
    got = inspect.signature(fastwait.gather)
    want = inspect.signature(asyncio.gather)
    assert str(want) == "(*coros_or_futures, return_exceptions=False)"
    assert str(got) == ("(*coros_or_futures, return_exceptions=False, "
                        "limit=None, timeout=None, eager=False)")
    params = list(got.parameters.values())
    assert [p.kind for p in params] == [
        inspect.Parameter.VAR_POSITIONAL] + [
        inspect.Parameter.KEYWORD_ONLY] * 4
    assert [p.default for p in params[1:]] == [False, None, None, False]
    assert params[1].default is False and params[4].default is False


def test_gather_has_a_docstring():
    doc = fastwait.gather.__doc__
    assert isinstance(doc, str) and doc.strip()
    for name in ("limit", "timeout", "eager"):
        assert name in doc
    if fastwait.NATIVE:
        # The signature line is consumed by inspect, not left in __doc__.
        assert fastwait.gather.__text_signature__ == (
            "(*coros_or_futures, return_exceptions=False, limit=None, "
            "timeout=None, eager=False)")
        assert not doc.startswith("gather(")


def test_shield_is_the_builtin_with_the_stdlib_signature():
    assert str(inspect.signature(fastwait.shield)) == str(
        inspect.signature(asyncio.shield)) == "(arg)"
    if not fastwait.NATIVE:
        assert fastwait.shield is asyncio.shield
        return
    from fastwait import _fastwait

    assert fastwait.shield is _fastwait.shield
    assert type(fastwait.shield).__name__ == "builtin_function_or_method"
    assert fastwait.shield.__text_signature__ == "(arg)"
    assert fastwait.shield.__doc__.strip()


def test_version_and_typing_marker():
    assert isinstance(fastwait.__version__, str) and fastwait.__version__
    assert importlib.resources.files("fastwait").joinpath("py.typed").is_file()


def test_native_names():
    if not fastwait.NATIVE:
        assert fastwait.NATIVE_NAMES == frozenset()
        from fastwait import _pyextras
        from fastwait._pycompletion import CompletionQueue

        assert fastwait.CompletionQueue is CompletionQueue
        # docs/extras.md's features come from the pure-Python module.
        for name in ("gather", "race", "TaskGroup"):
            assert getattr(fastwait, name) is getattr(_pyextras, name), name
        return
    from fastwait import _fastwait

    assert fastwait.NATIVE_NAMES == {"gather", "wait", "as_completed",
                                     "CompletionQueue", "Timeout", "timeout",
                                     "timeout_at", "wait_for", "shield",
                                     "TaskGroup", "race"}
    for name in fastwait.NATIVE_NAMES:
        assert getattr(fastwait, name) is getattr(_fastwait, name), name
    for name in set(PRIMITIVES) - fastwait.NATIVE_NAMES:
        assert getattr(fastwait, name) is getattr(asyncio, name), name


def test_taskgroup_signatures():
    for meth in ("create_task", "__aexit__", "__aenter__"):
        got = inspect.signature(getattr(fastwait.TaskGroup, meth))
        want = inspect.signature(getattr(asyncio.TaskGroup, meth))
        # A builtin method's self is positional-only (difference #2).
        assert list(got.parameters)[0] == "self"
        assert (list(got.parameters.values())[1:] ==
                list(want.parameters.values())[1:]), meth
    # TaskGroup(*, limit=None): the stdlib's (no parameter) plus fastwait's
    # keyword-only limit (docs/extras.md).
    assert str(inspect.signature(asyncio.TaskGroup)) == "()"
    assert str(inspect.signature(fastwait.TaskGroup)) == "(*, limit=None)"


def test_c_sources_use_only_the_public_c_api():
    """No private CPython names (``_Py*``) in the extension's sources, so it
    keeps building on later Pythons.  Macros of the public API may expand to
    private symbols; what the sources spell is what we control."""
    import pathlib
    import re

    src = pathlib.Path(__file__).resolve().parent.parent / "src" / "_fastwait"
    files = sorted(src.glob("*.[ch]"))
    if not files:
        pytest.skip("C sources not available (installed package only)")
    private = re.compile(r"\b_Py[A-Za-z0-9_]*")
    comment_or_string = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\])*"', re.S)
    found = {}
    for f in files:
        code = comment_or_string.sub(" ", f.read_text())
        names = sorted(set(private.findall(code)))
        if names:
            found[f.name] = names
    assert found == {}
