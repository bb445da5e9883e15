"""A small typed program using fastwait: checks the package's stubs.

    mypy --strict tests/typing/example.py     # against the installed package
    python tests/typing/example.py            # and it runs

(scripts/test_matrix.py does both, with the 3.12 venv's mypy for 3.11, 3.12
and 3.13.)  Every annotation states the type the stubs must give; each
``# type: ignore[code]`` marks a line that mypy must reject: --strict reports
an ignore that is not needed, so stubs that grew too loose (returning Any,
dropping ``| BaseException``) fail the check.  Not a pytest module (its name
does not start with ``test_``).
"""

from __future__ import annotations

import asyncio

import fastwait


async def number(n: int) -> int:
    await asyncio.sleep(0)
    return n


async def text(s: str) -> str:
    return s


async def fail() -> int:
    raise ValueError("no")


async def gathers() -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    done.set_result(b"x")

    # One to six arguments: a tuple with each child's result type.
    one: tuple[int] = await fastwait.gather(number(1))
    two: tuple[int, str] = await fastwait.gather(number(1), text("a"))
    six: tuple[int, str, bytes, int, str, int] = await fastwait.gather(
        number(1), text("a"), done, number(2), text("b"), number(3)
    )
    assert list(one) == [1]  # a list at run time, a tuple for the checker
    assert list(two) == [1, "a"] and list(six) == [1, "a", b"x", 2, "b", 3]

    # More than six, or unpacked: a list.
    many: list[int] = await fastwait.gather(*[number(i) for i in range(8)])
    seven: list[int] = await fastwait.gather(
        number(0), number(1), number(2), number(3), number(4), number(5), number(6)
    )
    assert many == list(range(8)) and seven == list(range(7))
    nothing: list[object] = await fastwait.gather()
    assert nothing == []

    # return_exceptions=True (or any bool): each element may be an exception.
    mixed: tuple[int | BaseException, str | BaseException] = await fastwait.gather(
        fail(), text("b"), return_exceptions=True
    )
    assert isinstance(mixed[0], ValueError) and mixed[1] == "b"
    flag = bool(len(many))
    results: list[int | BaseException] = await fastwait.gather(
        *[number(1), fail()], return_exceptions=flag
    )
    assert isinstance(results[1], ValueError)

    # gather returns a Future (not a coroutine).
    outer: asyncio.Future[tuple[int, str]] = fastwait.gather(number(5), text("c"))
    assert isinstance(outer, asyncio.Future)
    outer.add_done_callback(lambda f: None)
    assert list(await outer) == [5, "c"]


async def reexports() -> None:
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[int]] = [loop.create_task(number(i)) for i in range(3)]
    finished, pending = await fastwait.wait(tasks, return_when=fastwait.ALL_COMPLETED)
    first: set[asyncio.Task[int]] = finished
    assert len(first) == 3 and not pending
    value: int = await fastwait.wait_for(number(7), timeout=10)
    shielded: int = await fastwait.shield(number(8))
    outer: asyncio.Future[int] = fastwait.shield(loop.create_task(number(9)))
    assert (value, shielded, await outer) == (7, 8, 9)
    for fut in fastwait.as_completed(tasks):
        got: int = await fut
        assert got in (0, 1, 2)
    async with fastwait.timeout(10) as scope:
        when: float | None = scope.when()
        assert when is not None
    async with fastwait.TaskGroup() as tg:
        child: asyncio.Task[str] = tg.create_task(text("t"))
    assert child.result() == "t"
    native: bool = fastwait.NATIVE
    names: frozenset[str] = fastwait.NATIVE_NAMES
    version: str = fastwait.__version__
    assert native == bool(names) and version


async def extras() -> None:
    """fastwait's own arguments and race() (docs/extras.md)."""
    # limit=, timeout=, eager= keep gather's types.
    bounded: list[int] = await fastwait.gather(
        *[number(i) for i in range(5)], limit=2, timeout=10
    )
    pair: tuple[int, str] = await fastwait.gather(number(1), text("a"), eager=True)
    partial: list[int | BaseException] = await fastwait.gather(
        *[number(i) for i in range(3)], timeout=10.0, return_exceptions=True
    )
    assert bounded == list(range(5)) and list(pair) == [1, "a"]
    assert partial == [0, 1, 2]

    # race(): the union of the children's result types, as a coroutine.
    first: int | str = await fastwait.race(number(1), text("x"), timeout=5)
    same: int = await fastwait.race(*[number(i) for i in range(3)])
    assert first in (1, "x") and same in (0, 1, 2)

    # TaskGroup(limit=N) and its read-only limit.
    async with fastwait.TaskGroup(limit=2) as tg:
        tasks: list[asyncio.Task[int]] = [tg.create_task(number(i)) for i in range(4)]
        bound: int | None = tg.limit
        assert bound == 2
    assert [t.result() for t in tasks] == [0, 1, 2, 3]


async def rejected() -> None:
    """Never called: every line here must be a type error."""
    wrong_item: tuple[str] = await fastwait.gather(number(1))  # type: ignore[assignment]
    no_exceptions: tuple[int] = await fastwait.gather(  # type: ignore[assignment]
        number(1), return_exceptions=True
    )
    too_short: tuple[int] = await fastwait.gather(number(1), number(2))  # type: ignore[assignment]
    fastwait.gather(number(1), return_exceptions="yes")  # type: ignore[call-overload]
    fastwait.gather(1)  # type: ignore[call-overload]
    fastwait.gather(number(1), loop=None)  # type: ignore[call-overload]
    not_a_list: list[int] = fastwait.gather(number(1))  # type: ignore[assignment]
    flag: int = fastwait.NATIVE_NAMES  # type: ignore[assignment]
    shield_text: asyncio.Future[str] = fastwait.shield(number(1))  # type: ignore[arg-type]
    fastwait.shield(1)  # type: ignore[arg-type]
    fastwait.gather(number(1), limit="2")  # type: ignore[call-overload]
    fastwait.gather(number(1), eager="yes")  # type: ignore[call-overload]
    fastwait.race(number(1), timeout="1")  # type: ignore[call-overload]
    fastwait.TaskGroup(limit=1.5)  # type: ignore[arg-type]
    fastwait.TaskGroup(2)  # type: ignore[call-arg]
    race_text: str = await fastwait.race(number(1))  # type: ignore[arg-type]
    del wrong_item, no_exceptions, too_short, not_a_list, flag, shield_text
    del race_text


async def main() -> None:
    await gathers()
    await reexports()
    await extras()


if __name__ == "__main__":
    asyncio.run(main())
    print("tests/typing/example.py: ok", "(native)" if fastwait.NATIVE else "(stdlib fallback)")
