#!/usr/bin/env python3
"""Slow-body attack with a health probe, for the server-limits figures.

Opens CONNS connections to the server from the loopback addresses in FROM
(round robin; all of 127.0.0.0/8 is this machine, so each is another
client address), each sending the headers of a JSON POST with a
1,000-byte Content-Length and then only the first few bytes of the body,
and holds them. Meanwhile it checks GET /api/health from PROBE (another
address) every 100 ms on a fresh connection, with a 2 s timeout, until
SECONDS have passed. Bounded: CONNS connections, SECONDS seconds.

Prints one JSON object: the probe's answers (ok, failed, latency
percentiles) and what became of the slow connections (answered 408,
closed without an answer, still open at the end, failed to connect).

    python3 bench/slow_bodies.py --port 8090 --conns 1100 --seconds 40
"""

import argparse
import asyncio
import json
import statistics
import time


async def slow_client(port, src, path, stats, stop):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0))
    except OSError:
        stats["connect_failed"] += 1
        return
    try:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: basalt\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n{\"ide"
        )
        writer.write(head.encode())
        await writer.drain()
        read = asyncio.ensure_future(reader.read(4096))
        done, _ = await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
        if read in done:
            data = read.result() if not read.exception() else b""
            if data.startswith(b"HTTP/1.1 408"):
                stats["answered_408"] += 1
            elif data.startswith(b"HTTP/1.1 "):
                stats["answered_other"] += 1
            else:
                stats["closed_without_answer"] += 1
        else:
            read.cancel()
            stats["still_open"] += 1
    except (OSError, ConnectionError):
        stats["closed_without_answer"] += 1
    finally:
        writer.close()


async def probe(port, src, seconds, results):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0)), 2
            )
            writer.write(b"GET /api/health HTTP/1.1\r\nHost: basalt\r\nConnection: close\r\n\r\n")
            await writer.drain()
            data = await asyncio.wait_for(reader.read(4096), 2)
            writer.close()
            ok = data.startswith(b"HTTP/1.1 200")
        except (OSError, asyncio.TimeoutError, ConnectionError):
            ok = False
        results.append((ok, time.monotonic() - t0))
        await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=1100)
    ap.add_argument("--from", dest="sources", default="127.0.0.3", help="comma-separated source addresses")
    ap.add_argument("--probe", default="127.0.0.2")
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--path", default="/api/collections/users/records")
    a = ap.parse_args()
    sources = a.sources.split(",")
    stats = dict(connect_failed=0, answered_408=0, answered_other=0, closed_without_answer=0, still_open=0)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    results = []
    probing = asyncio.ensure_future(probe(a.port, a.probe, a.seconds, results))
    clients = []
    for i in range(a.conns):
        clients.append(asyncio.ensure_future(slow_client(a.port, sources[i % len(sources)], a.path, stats, stop)))
        if i % 50 == 49:
            await asyncio.sleep(0.01)
    await probing
    stop.set_result(None)
    await asyncio.gather(*clients, return_exceptions=True)
    lat = sorted(r[1] * 1000 for r in results if r[0])
    q = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else None
    print(json.dumps({
        "conns": a.conns, "sources": sources, "seconds": a.seconds,
        "probe": {"checks": len(results), "ok": len(lat), "failed": len(results) - len(lat),
                  "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": round(lat[-1], 1) if lat else None,
                  "mean_ms": round(statistics.mean(lat), 1) if lat else None},
        "slow": stats,
    }))


asyncio.run(main())
