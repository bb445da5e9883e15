"""The loop's clock as timeouts and gather(timeout=) read it.

fastwait reads time.monotonic() in C instead of calling ``loop.time()``
while that provably gives the same value (the loop's ``time`` is asyncio's
BaseEventLoop.time, which calls the original ``time.monotonic``).  Whatever
replaces the clock -- an instance attribute, a subclass, a patched class,
``mock.patch('time.monotonic')`` or of ``asyncio.base_events.time`` -- must
still be what the deadlines follow, exactly as with asyncio.

These tests run on loops of their own made by ``asyncio.new_event_loop()``
(the test loops of conftest override ``time()`` themselves, so they never
take the C read); the loop axis does not apply.
"""

import asyncio
import time
import types
from unittest import mock

import pytest

# A clock value far from time.monotonic()'s: a deadline computed from the
# wrong clock is off by days.
FAKE = 1.0e7


def in_new_loop(main, loop_cls=None):
    loop = asyncio.new_event_loop() if loop_cls is None else loop_cls()
    try:
        return loop.run_until_complete(main(loop))
    finally:
        loop.close()


class FakeClock:
    def __init__(self, now=FAKE):
        self.now = now

    def __call__(self):
        return self.now


async def timeout_when(impl, delay):
    return impl.timeout(delay).when()


def test_real_clock_matches_monotonic(impl):
    """Unpatched: ``when()`` of timeout(d) is time.monotonic() + d, read
    between the two reads around it (the same clock, converted the same
    way)."""

    async def main(loop):
        got = []
        for delay in (10, 0.5, 3.25, 0):
            t0 = time.monotonic()
            w = impl.timeout(delay).when()
            t1 = time.monotonic()
            got.append((t0 + delay <= w <= t1 + delay, type(w)))
            t0 = loop.time()
            w = impl.timeout(delay).when()
            t1 = loop.time()
            got.append((t0 + delay <= w <= t1 + delay, type(w)))
        return got

    assert in_new_loop(main) == [(True, float)] * 8


@pytest.mark.parametrize("delay", [10, 2.5, True, 10**400, -3])
def test_instance_time_attribute(impl, delay):
    """``loop.time = ...`` on the loop object is what timeout() adds to."""

    async def main(loop):
        loop.time = FakeClock()
        try:
            return impl.timeout(delay).when()
        except OverflowError as e:
            return ("overflow", str(e))

    want = in_new_loop(lambda loop: main_ref(loop, delay))
    assert in_new_loop(main) == want


async def main_ref(loop, delay):
    loop.time = FakeClock()
    try:
        return asyncio.timeout(delay).when()
    except OverflowError as e:
        return ("overflow", str(e))


def test_subclass_override(impl):
    class Loop(asyncio.SelectorEventLoop):
        def time(self):
            return FAKE

    assert in_new_loop(lambda loop: timeout_when(impl, 10), Loop) == FAKE + 10


def test_patched_class_attribute(impl):
    with mock.patch.object(asyncio.BaseEventLoop, "time",
                           lambda self: FAKE):
        got = in_new_loop(lambda loop: timeout_when(impl, 10))
    assert got == FAKE + 10
    # And back to the real clock once unpatched.
    got = in_new_loop(lambda loop: timeout_when(impl, 10))
    assert got < FAKE


def test_patched_time_monotonic(impl):
    with mock.patch("time.monotonic", FakeClock()):
        got = in_new_loop(lambda loop: timeout_when(impl, 10))
    assert got == FAKE + 10
    assert in_new_loop(lambda loop: timeout_when(impl, 10)) < FAKE


def test_patched_base_events_time(impl):
    fake_time = types.SimpleNamespace(**{**vars(time),
                                         "monotonic": FakeClock()})
    with mock.patch("asyncio.base_events.time", fake_time):
        got = in_new_loop(lambda loop: timeout_when(impl, 10))
    assert got == FAKE + 10


def clock_main(clock, patch, wait, times, iterations):
    """``main(loop)`` for in_new_loop: a task awaits ``wait()`` and logs its
    TimeoutError at the fake clock's time; the clock (set on the loop
    instance when ``patch`` is "instance") is set to each of ``times`` in
    turn, the loop given ``iterations`` steps at each, and whether the
    task is done logged."""
    async def main(loop):
        if patch == "instance":
            loop.time = clock
        log = []

        async def body():
            try:
                await wait()
            except TimeoutError:
                log.append(("timeout", clock.now))

        task = loop.create_task(body())
        for now in times:
            clock.now = now
            for _ in range(iterations):
                await asyncio.sleep(0)
            log.append(("at", now, task.done()))
        return log

    return main


@pytest.mark.parametrize("patch", ["instance", "monotonic", "class"])
def test_timeout_follows_patched_clock(impl, patch):
    """A scope's deadline fires by the replaced clock: not before it
    reaches the deadline, at the first timer processing after."""

    clock = FakeClock()

    async def scope():
        async with impl.timeout(5):
            await asyncio.sleep(3600)

    main = clock_main(clock, patch, scope,
                      (FAKE, FAKE + 1, FAKE + 4.5, FAKE + 5.5, FAKE + 6), 3)

    def run_it():
        if patch == "monotonic":
            with mock.patch("time.monotonic", clock):
                return in_new_loop(main)
        if patch == "class":
            with mock.patch.object(asyncio.BaseEventLoop, "time",
                                   lambda self: clock.now):
                return in_new_loop(main)
        return in_new_loop(main)

    assert run_it() == [
        ("at", FAKE, False),
        ("at", FAKE + 1, False),
        ("at", FAKE + 4.5, False),
        ("timeout", FAKE + 5.5),
        ("at", FAKE + 5.5, True),
        ("at", FAKE + 6, True),
    ]


@pytest.mark.parametrize("patch", ["instance", "monotonic", "subclass"])
def test_gather_timeout_follows_patched_clock(ximpl, patch):
    """gather(timeout=) takes its deadline from the replaced clock."""

    clock = FakeClock()

    class Loop(asyncio.SelectorEventLoop):
        def time(self):
            return clock.now

    # The deadline fires in the first iteration, the cut-short child and
    # the outer take a few more.
    main = clock_main(
        clock, patch, lambda: ximpl.gather(asyncio.sleep(3600), timeout=5),
        (FAKE, FAKE + 4.5, FAKE + 5.5, FAKE + 6), 10)

    if patch == "monotonic":
        with mock.patch("time.monotonic", clock):
            got = in_new_loop(main)
    else:
        got = in_new_loop(main, Loop if patch == "subclass" else None)
    assert got == [
        ("at", FAKE, False),
        ("at", FAKE + 4.5, False),
        ("timeout", FAKE + 5.5),
        ("at", FAKE + 5.5, True),
        ("at", FAKE + 6, True),
    ]


def test_gather_timeout_real_clock(ximpl):
    """Unpatched, a gather(timeout=) expires on the real clock (after a
    millisecond; the clock's value is checked by
    test_real_clock_matches_monotonic)."""

    async def main(loop):
        t0 = loop.time()
        try:
            await ximpl.gather(asyncio.sleep(3600), timeout=0.001)
        except TimeoutError:
            return loop.time() - t0 >= 0.001 - loop._clock_resolution

    assert in_new_loop(main) is True


def test_wait_for_follows_patched_clock(impl):
    clock = FakeClock()
    # (3.11's wait_for takes six iterations from its timer to the
    # TimeoutError: release, cancel, the inner task ends, ...)
    main = clock_main(clock, "instance",
                      lambda: impl.wait_for(asyncio.sleep(3600), 5),
                      (FAKE, FAKE + 4.5, FAKE + 5.5), 10)

    assert in_new_loop(main) == [
        ("at", FAKE, False),
        ("at", FAKE + 4.5, False),
        ("timeout", FAKE + 5.5),
        ("at", FAKE + 5.5, True),
    ]


def test_imported_while_patched():
    """fastwait imported while time.monotonic or BaseEventLoop.time is
    patched takes neither for the original: the patch, and later the real
    clock, are still what the deadlines follow."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import asyncio, time
        from unittest import mock
        FAKE = 1.0e7
        async def when():
            return fastwait.timeout(10).when()
        def run():
            loop = asyncio.new_event_loop()
            try:
                return loop.run_until_complete(when())
            finally:
                loop.close()
        with mock.patch("time.monotonic", lambda: FAKE):
            with mock.patch.object(asyncio.BaseEventLoop, "time",
                                   lambda self: FAKE / 2):
                import fastwait
                assert run() == FAKE / 2 + 10, run()
            assert run() == FAKE + 10, run()
        t0 = time.monotonic()
        w = run()
        assert t0 + 10 <= w <= time.monotonic() + 10, (t0, w)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_uvloop_time_is_called(impl):
    """uvloop's loop.time() is its own (C, millisecond timers): it is what
    timeout() adds to."""
    uvloop = pytest.importorskip("uvloop")

    async def main(loop):
        t0 = loop.time()
        w = impl.timeout(10).when()
        t1 = loop.time()
        return t0 + 10 <= w <= t1 + 10

    assert in_new_loop(main, uvloop.Loop) is True
