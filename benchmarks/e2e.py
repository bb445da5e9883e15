"""End-to-end benchmark: a server and its clients on loopback, with and without install().

    python -m benchmarks.e2e [--loop asyncio|uvloop|both] [--scenario websockets|streams|both]
                             [--quick] [--pairs K] [--messages M] [--clients C]

One process runs a server and C clients over loopback TCP.  Each client
sends M / C messages, one at a time, as application code writes such a
client and server, through the ``asyncio.`` attributes (so that
``fastwait.install()`` reaches them, and the library's own calls too):

- client, per message: ``async with asyncio.timeout(5):`` around the send
  and ``await asyncio.wait_for(recv(), 5)`` for the reply;
- server, per message: ``await asyncio.gather(lookup(msg), audit(msg))``
  (two small coroutines, one of which yields once) and
  ``await asyncio.wait_for(send(reply), 5)``;
- per round, the C client sessions run under one ``asyncio.gather``.

Scenarios: ``websockets`` (the websockets library's asyncio implementation,
which itself uses asyncio.timeout, shield and wait per frame and per
connection) and ``streams`` (asyncio's StreamReader/StreamWriter,
newline-delimited messages).

Rounds alternate in ONE process: pair k is a plain round (asyncio's own
primitives) and an installed round (``fastwait.install()`` before it,
``fastwait.uninstall()`` after), in alternating order (plain first in even
pairs).  A round is a fresh event loop (``asyncio.Runner``), a server,
C connected clients, then the measured phase: all messages.  Primary
metric: the process's CPU time (``time.process_time``) per message; also
wall-clock messages per second.  Reported: the median of per-pair ratios
installed / plain (below 1 = install() is faster) with the min-max
spread, and the speed-up ``plain / installed - 1`` as a percentage.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import statistics
import sys
import time

import fastwait

try:
    import uvloop
except ImportError:  # pragma: no cover - depends on the environment
    uvloop = None

try:
    import websockets
    from websockets.asyncio.client import connect as ws_connect
    from websockets.asyncio.server import serve as ws_serve
except ImportError:  # pragma: no cover
    websockets = None

PAYLOAD = "x" * 64


# ---------------------------------------------------------------------------
# The application: what the server does with a message


async def lookup(msg):
    await asyncio.sleep(0)
    return len(msg)


async def audit(msg):
    return msg[:4]


async def handle(msg):
    size, head = await asyncio.gather(lookup(msg), audit(msg))
    return f"{head}:{size}"


# ---------------------------------------------------------------------------
# websockets


async def ws_handler(ws):
    async for msg in ws:
        reply = await handle(msg)
        await asyncio.wait_for(ws.send(reply), 5)


async def ws_session(port, n, ready, go):
    async with ws_connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
        ready()
        await go.wait()
        for i in range(n):
            async with asyncio.timeout(5):
                await ws.send(PAYLOAD)
            reply = await asyncio.wait_for(ws.recv(), 5)
            assert reply == "xxxx:64", reply


async def ws_server():
    server = await ws_serve(ws_handler, "127.0.0.1", 0, compression=None)
    return server, server.sockets[0].getsockname()[1]


# ---------------------------------------------------------------------------
# asyncio streams


async def st_handler(reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            reply = await handle(line.decode().rstrip("\n"))
            writer.write(reply.encode() + b"\n")
            await asyncio.wait_for(writer.drain(), 5)
    finally:
        writer.close()


async def st_session(port, n, ready, go):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    ready()
    await go.wait()
    data = (PAYLOAD + "\n").encode()
    for i in range(n):
        async with asyncio.timeout(5):
            writer.write(data)
            await writer.drain()
        reply = await asyncio.wait_for(reader.readline(), 5)
        assert reply == b"xxxx:64\n", reply
    writer.close()
    await writer.wait_closed()


async def st_server():
    server = await asyncio.start_server(st_handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


SCENARIOS = {
    "websockets": (ws_server, ws_session),
    "streams": (st_server, st_session),
}


# ---------------------------------------------------------------------------
# One round


async def one_round(scenario, clients, messages):
    make_server, session = SCENARIOS[scenario]
    server, port = await make_server()
    go = asyncio.Event()
    connected = 0
    all_ready = asyncio.Event()

    def ready():
        nonlocal connected
        connected += 1
        if connected == clients:
            all_ready.set()

    per = messages // clients
    sessions = asyncio.ensure_future(
        asyncio.gather(*(session(port, per, ready, go) for _ in range(clients))))
    await all_ready.wait()
    gc.collect()
    c0, w0 = time.process_time(), time.perf_counter()
    go.set()
    await sessions
    c1, w1 = time.process_time(), time.perf_counter()
    server.close()
    await server.wait_closed()
    return (c1 - c0) / (per * clients), (per * clients) / (w1 - w0)


def run_round(scenario, loop_kind, clients, messages, installed):
    if installed:
        assert fastwait.install(), "fastwait.install() did not install (no C extension?)"
    try:
        assert (asyncio.gather is fastwait.gather) == installed
        factory = uvloop.new_event_loop if loop_kind == "uvloop" else None
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(one_round(scenario, clients, messages))
    finally:
        fastwait.uninstall()


def measure(scenario, loop_kind, pairs, clients, messages, quiet):
    run_round(scenario, loop_kind, clients, messages // 4, False)  # warm-up
    run_round(scenario, loop_kind, clients, messages // 4, True)
    rows = []
    for k in range(pairs):
        order = (False, True) if k % 2 == 0 else (True, False)
        got = {inst: run_round(scenario, loop_kind, clients, messages, inst) for inst in order}
        rows.append({"plain_cpu": got[False][0], "installed_cpu": got[True][0],
                     "plain_rate": got[False][1], "installed_rate": got[True][1]})
        if not quiet:
            r = rows[-1]
            print(f"  {scenario}/{loop_kind} pair {k + 1}/{pairs}: CPU/msg "
                  f"{r['plain_cpu'] * 1e6:.1f} us plain, {r['installed_cpu'] * 1e6:.1f} us "
                  f"installed ({r['installed_cpu'] / r['plain_cpu']:.3f})",
                  file=sys.stderr, flush=True)
    cpu = [r["installed_cpu"] / r["plain_cpu"] for r in rows]
    wall = [r["plain_rate"] / r["installed_rate"] for r in rows]  # time ratio
    return {
        "scenario": scenario, "loop": loop_kind, "pairs": pairs, "clients": clients,
        "messages": messages,
        "plain_us_per_msg": statistics.median(r["plain_cpu"] for r in rows) * 1e6,
        "installed_us_per_msg": statistics.median(r["installed_cpu"] for r in rows) * 1e6,
        "plain_msgs_per_s": statistics.median(r["plain_rate"] for r in rows),
        "installed_msgs_per_s": statistics.median(r["installed_rate"] for r in rows),
        "cpu_ratio": statistics.median(cpu), "cpu_ratio_min": min(cpu),
        "cpu_ratio_max": max(cpu),
        "wall_ratio": statistics.median(wall), "wall_ratio_min": min(wall),
        "wall_ratio_max": max(wall),
        "rounds": rows,
    }


def describe():
    parts = [f"Python {platform.python_version()}", f"fastwait {fastwait.__version__}"]
    if websockets is not None:
        parts.append(f"websockets {websockets.__version__}")
    if uvloop is not None:
        parts.append(f"uvloop {uvloop.__version__}")
    return ", ".join(parts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loop", default="both", choices=("asyncio", "uvloop", "both"))
    ap.add_argument("--scenario", default="both", choices=("websockets", "streams", "both"))
    ap.add_argument("--quick", action="store_true", help="5 pairs of 2 000 messages")
    ap.add_argument("--pairs", type=int, help="pairs of rounds (default 10; 5 with --quick)")
    ap.add_argument("--messages", type=int,
                    help="messages per round (default 5 000; 2 000 with --quick)")
    ap.add_argument("--clients", type=int, default=20, help="connections (default 20)")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("-q", action="store_true", help="no per-pair lines")
    args = ap.parse_args(argv)
    pairs = args.pairs or (5 if args.quick else 10)
    messages = args.messages or (2000 if args.quick else 5000)
    if not fastwait.NATIVE:
        ap.error("fastwait has no C extension here: install() would do nothing")
    loops = ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]
    if "uvloop" in loops and uvloop is None:
        ap.error("uvloop is not installed")
    scenarios = ["websockets", "streams"] if args.scenario == "both" else [args.scenario]
    if "websockets" in scenarios and websockets is None:
        if args.scenario == "websockets":
            ap.error("websockets is not installed")
        scenarios.remove("websockets")
        print("e2e: websockets is not installed: streams only", file=sys.stderr)
    print(f"e2e: {describe()}; {pairs} pairs x {messages} messages, {args.clients} clients",
          flush=True)
    results = []
    for loop_kind in loops:
        for scenario in scenarios:
            results.append(measure(scenario, loop_kind, pairs, args.clients, messages, args.q))
    head = ("scenario", "loop", "plain us/msg", "installed us/msg", "CPU installed/plain",
            "plain msg/s", "installed msg/s", "wall installed/plain", "speed-up (CPU)")
    rows = []
    for r in results:
        rows.append((
            r["scenario"], r["loop"], f"{r['plain_us_per_msg']:.1f}",
            f"{r['installed_us_per_msg']:.1f}",
            f"{r['cpu_ratio']:.3f} ({r['cpu_ratio_min']:.3f}-{r['cpu_ratio_max']:.3f})",
            f"{r['plain_msgs_per_s']:,.0f}", f"{r['installed_msgs_per_s']:,.0f}",
            f"{r['wall_ratio']:.3f} ({r['wall_ratio_min']:.3f}-{r['wall_ratio_max']:.3f})",
            f"{(1 / r['cpu_ratio'] - 1) * 100:+.1f} %"))
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": describe(), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
