"""The README's examples of fastwait's own features print what they say.

Every ``python`` block of the README section "Beyond asyncio" is a whole
program ending in ``asyncio.run(main())``; each ``# prints: X`` comment is
a line it must print, in order.  The programs run here on a virtual clock
(no real sleeps), with the native implementation, the pure-Python one
(``fastwait._pyextras``) and the tests' reference (the ``ximpl`` fixture):
the README promises they behave the same.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from conftest import VirtualClock, new_loop, run, close_loop

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## Beyond asyncio"


def examples():
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    blocks = re.findall(r"```python\n(.*?)```", text[start:end], re.S)
    return [b for b in blocks if "asyncio.run(main())" in b]


EXAMPLES = examples()


def test_the_section_has_its_examples():
    assert len(EXAMPLES) == 5
    assert all("# prints: " in code for code in EXAMPLES)


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_example_prints_what_it_says(index, ximpl):
    code = EXAMPLES[index]
    expected = re.findall(r"# prints: (.*)$", code, re.M)
    assert re.search(r"^import fastwait$", code, re.M)
    program = re.sub(r"^import fastwait$", "", code, flags=re.M)
    program = program.replace("asyncio.run(main())", "__run__(main())")
    loop = new_loop(clock=VirtualClock())
    out = io.StringIO()
    namespace = {
        "__name__": "__readme__",
        "fastwait": ximpl,
        "__run__": lambda coro: run(loop, coro),
    }
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(program, f"README example {index}", "exec"), namespace)
    finally:
        close_loop(loop)
    assert out.getvalue().splitlines() == expected
