"""Every HTTP listener (the one-click unsubscribe endpoint, the ops endpoint) against idle and
slow clients, on a real `sendwarden serve` whose open-files limit is low (256, hard), as on a
small box: 240 idle connections to the one-click endpoint must starve neither the SMTP greeting
nor /healthz, and accept() errors must not flood the log with tracebacks. Each HTTP listener
takes at most 64 connections (one more gets 503 and is closed), and a connection that sends no
complete request head is closed after the header timeout."""

from __future__ import annotations

import asyncio
import resource
import time

import aiohttp

from proxy.runtime.listeners import HEADER_TIMEOUT, HTTP_MAX_CONNECTIONS
from tests.reliability.conftest import record
from tests.reliability.harness import POLICY
from tests.runtime.test_serve_process import free_port
from tests.support.smtpclient import RawClient


def low_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


async def idle(port: int, partial: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    if partial:  # a slow-header client: a request line and one header, then nothing
        w.write(b"POST /unsubscribe/x HTTP/1.1\r\nHost: unsub.test\r\n")
        await w.drain()
    return r, w


async def test_idle_http_connections_starve_nobody(serve, sink) -> None:
    unsub, ops = free_port(), free_port()
    relay = await serve(sink.url, {
        "unsubscribe": {"listen": f"127.0.0.1:{unsub}", "base_url": "https://unsub.test"},
        "metrics": {"address": f"127.0.0.1:{ops}"},
        "limits": {"max_connections": 50},
    }, POLICY, preexec=low_files)
    conns = []
    t = time.perf_counter()
    for i in range(240):
        try:
            conns.append(await idle(unsub, partial=i % 2 == 1))
        except OSError:
            break
    # Past the cap, the endpoint answered 503 and closed: those connections read EOF at once.
    refused = 0
    deadline = time.perf_counter() + 3
    for r, _ in conns:
        try:
            head = await asyncio.wait_for(r.read(200), max(0.01, deadline - time.perf_counter()))
        except TimeoutError:
            continue
        except ConnectionResetError:  # it had written before the 503 came: the close resets
            head = b""
        refused += head.startswith(b"HTTP/1.1 503") or head == b""
    open_files = relay.open_files()

    t0 = time.perf_counter()
    smtp = await RawClient.connect(relay.port)
    greeting = await smtp.reply(timeout=5)
    greeting_ms = round((time.perf_counter() - t0) * 1000)
    await smtp.close()
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http, \
            http.get(f"http://127.0.0.1:{ops}/healthz") as resp:
        health = resp.status
    healthz_ms = round((time.perf_counter() - t0) * 1000)
    assert greeting.startswith("220") and health == 200
    assert len(conns) == 240 and refused == 240 - HTTP_MAX_CONNECTIONS, (refused, relay.open_files(), [(e["event"], e.get("error")) for e in relay.events()])

    # The ones let in sent no (complete) request head: closed after the header timeout.
    waited = time.perf_counter()
    closed = 0
    for r, _ in conns:
        try:
            await asyncio.wait_for(r.read(), HEADER_TIMEOUT + 10)
        except TimeoutError:
            continue
        except ConnectionResetError:
            pass
        closed += 1
    closed_after = round(time.perf_counter() - t, 1)
    assert closed == 240 and time.perf_counter() - waited < HEADER_TIMEOUT + 10
    for _, w in conns:
        w.close()
    await relay.stop()
    events = relay.events()
    tracebacks = [e for e in events if "Traceback" in str(e) or e["event"] == "<not json>"]
    refusals = [e for e in events if e["event"] == "http_connection_refused"]
    assert tracebacks == [] and 1 <= len(refusals) <= 3
    record("240 idle HTTP connections", smtp_greeting_ms=greeting_ms, healthz_ms=healthz_ms,
           refused_503=refused, relay_open_files=open_files, all_closed_after_s=closed_after,
           refusal_log_lines=len(refusals), tracebacks=0)
