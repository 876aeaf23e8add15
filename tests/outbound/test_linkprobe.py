"""The privacy-link prober against a real HTTP server on loopback: a live, a redirecting, a
HEAD-refusing and a dead URL, and the ways a URL can fail (timeout, refused connection,
redirect loop); concurrency stays within its bound."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import AsyncIterator

import pytest
from aiohttp import web

from proxy.dns import Resolver
from proxy.outbound.linkprobe import LinkRecord, due, probe_links


# The test server runs on loopback, which the prober refuses unless told otherwise.
LOOPBACK = ["127.0.0.0/8"]


class Server:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.in_flight = 0
        self.peak = 0
        self.base = ""
        self.fixed = False  # /gone answers 404 until a test fixes it


@pytest.fixture
async def http() -> AsyncIterator[Server]:
    srv = Server()

    @web.middleware
    async def record(request: web.Request, handler):  # type: ignore[no-untyped-def]
        srv.seen.append((request.method, request.path))
        return await handler(request)

    async def live(request: web.Request) -> web.Response:
        return web.Response(text="our privacy policy")

    async def dead(request: web.Request) -> web.Response:
        return web.Response(status=404, text="gone")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=503)

    def redirect(to: str, status: int = 301):  # type: ignore[no-untyped-def]
        async def handler(request: web.Request) -> web.Response:
            raise {301: web.HTTPMovedPermanently, 302: web.HTTPFound}[status](to)
        return handler

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    async def counted(request: web.Request) -> web.Response:
        srv.in_flight += 1
        srv.peak = max(srv.peak, srv.in_flight)
        await asyncio.sleep(0.2)
        srv.in_flight -= 1
        return web.Response(text="ok")

    async def head_not_implemented(request: web.Request) -> web.Response:
        if request.method == "HEAD":
            return web.Response(status=501)
        return web.Response(text="ok")

    app = web.Application(middlewares=[record])
    app.router.add_get("/privacy", live)
    app.router.add_get("/old-privacy", redirect("/moved", 301))
    app.router.add_get("/moved", redirect("/privacy", 302))
    app.router.add_get("/no-head", live, allow_head=False)  # HEAD → 405
    app.router.add_route("*", "/head-501", head_not_implemented)
    app.router.add_get("/dead", dead)

    async def gone(request: web.Request) -> web.Response:
        return web.Response(text="our privacy policy, back") if srv.fixed else web.Response(status=404, text="gone")

    app.router.add_get("/gone", gone)
    app.router.add_get("/broken", broken)
    app.router.add_get("/to-dead", redirect("/dead", 302))
    app.router.add_get("/loop", redirect("/loop", 302))
    app.router.add_get("/slow", slow)
    app.router.add_get("/counted/{n}", counted)

    async def to_other_loopback(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.2:{request.url.port}/privacy")

    app.router.add_get("/to-other-loopback", to_other_loopback)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    srv.base = f"http://127.0.0.1:{port}"
    yield srv
    await runner.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_live_redirecting_head_refusing_and_dead(http: Server) -> None:
    b = http.base
    records = [
        LinkRecord(f"{b}/privacy", ("news@shop.example.com",), ("<m1@shop.example.com>",), 1.0, 2.0),
        LinkRecord(f"{b}/old-privacy", ("news@shop.example.com",), ("<m2@shop.example.com>",)),
        LinkRecord(f"{b}/no-head"),
        LinkRecord(f"{b}/head-501"),
        LinkRecord(f"{b}/dead", ("promo@shop.example.com",), ("<m3@shop.example.com>",)),
        LinkRecord(f"{b}/to-dead"),
        LinkRecord(f"{b}/broken"),
    ]
    results = await probe_links(records, concurrency=4, timeout=3, allow_networks=LOOPBACK)
    by = {r.url.rsplit("/", 1)[1]: r for r in results}
    assert [r.record for r in results] == records  # in order, the record kept for the report

    assert by["privacy"].alive and by["privacy"].status == 200 and by["privacy"].method == "HEAD"
    moved = by["old-privacy"]
    assert moved.alive and moved.final_url == f"{b}/privacy" and moved.method == "HEAD"
    assert moved.redirects == (f"{b}/old-privacy", f"{b}/moved")
    assert by["no-head"].alive and by["no-head"].method == "GET"
    assert ("HEAD", "/no-head") in http.seen and ("GET", "/no-head") in http.seen
    assert by["head-501"].alive and by["head-501"].method == "GET"

    dead = by["dead"]
    assert not dead.alive and dead.status == 404 and dead.error == "HTTP 404 Not Found"
    assert dead.record.senders == ("promo@shop.example.com",) and dead.record.message_ids == ("<m3@shop.example.com>",)
    assert not by["to-dead"].alive and by["to-dead"].final_url == f"{b}/dead" and by["to-dead"].status == 404
    assert not by["broken"].alive and by["broken"].status == 503
    # A live URL is not fetched with GET once HEAD said yes.
    assert ("GET", "/privacy") not in http.seen


async def test_failures_without_a_response(http: Server) -> None:
    records = [
        LinkRecord(f"{http.base}/loop"),
        LinkRecord(f"{http.base}/slow"),
        LinkRecord(f"http://127.0.0.1:{free_port()}/privacy"),
        LinkRecord("ftp://example.com/privacy"),
        LinkRecord("http://[::1/privacy"),
    ]
    t0 = time.monotonic()
    loop, slow, refused, ftp, bad = await probe_links(records, timeout=0.5, max_redirects=3, allow_networks=LOOPBACK)
    assert time.monotonic() - t0 < 4  # each bounded by the 0.5 s timeout, not the server's 5 s
    assert not loop.alive and loop.error == "too many redirects"
    assert not slow.alive and slow.error == "timeout" and slow.status is None
    assert not refused.alive and refused.status is None and refused.error
    assert not ftp.alive and ftp.error == "not an http(s) URL"
    assert not bad.alive and bad.error


async def test_concurrency_is_bounded(http: Server) -> None:
    records = [LinkRecord(f"{http.base}/counted/{n}") for n in range(9)]
    t0 = time.monotonic()
    results = await probe_links(records, concurrency=3, timeout=5, allow_networks=LOOPBACK)
    assert all(r.alive for r in results)
    assert 2 <= http.peak <= 3
    assert time.monotonic() - t0 >= 0.55  # three rounds of 0.2 s


async def test_internal_addresses_are_refused_unless_allowed(http: Server, dns_server) -> None:
    port = http.base.rsplit(":", 1)[1]
    dns_server.zone("test", """
        inside    A    127.0.0.1
        metadata  A    169.254.169.254
        private   A    10.0.0.5
        mixed     A    10.0.0.5
        mixed     A    127.0.0.1
    """)
    resolver = Resolver([dns_server.nameserver], timeout=1)
    urls = [f"{http.base}/privacy", f"http://inside.test:{port}/privacy", f"http://metadata.test:{port}/latest",
            f"http://private.test:{port}/", f"http://[::1]:{port}/privacy", f"http://[::ffff:127.0.0.1]:{port}/privacy",
            f"http://0x7f000001:{port}/privacy"]
    results = await probe_links([LinkRecord(u) for u in urls], timeout=2, resolver=resolver)
    for r in results:
        assert not r.alive and r.error.startswith("refused: "), (r.url, r.error)
    assert http.seen == []  # nothing reached the server
    # With loopback allowed, loopback names work; other internal ranges stay refused, and a
    # name with both kinds of address is reached on the allowed one only.
    inside, metadata, mixed = await probe_links(
        [LinkRecord(f"http://inside.test:{port}/privacy"), LinkRecord(f"http://metadata.test:{port}/"),
         LinkRecord(f"http://mixed.test:{port}/privacy")], timeout=2, resolver=resolver, allow_networks=LOOPBACK)
    assert inside.alive and mixed.alive
    assert not metadata.alive and "169.254.169.254" in metadata.error


async def test_a_dns_failure_leaves_the_link_unchecked(http: Server, dns_server) -> None:
    port = http.base.rsplit(":", 1)[1]
    dns_server.zone("test", "inside A 127.0.0.1\n")
    dns_server.behaviour.servfail.add("down.test")
    resolver = Resolver([dns_server.nameserver], timeout=1)
    down, inside = await probe_links([LinkRecord(f"http://down.test:{port}/privacy"), LinkRecord(f"http://inside.test:{port}/privacy")],
                                     timeout=2, resolver=resolver, allow_networks=LOOPBACK)
    assert not down.alive and not down.checked and down.error.startswith("not checked: DNS lookup failed")
    assert inside.alive and inside.checked


async def test_every_redirect_is_checked(http: Server) -> None:
    [r] = await probe_links([LinkRecord(f"{http.base}/to-other-loopback")], timeout=2, allow_networks=["127.0.0.1/32"])
    assert not r.alive and r.error.startswith("refused: 127.0.0.2") and r.redirects == (f"{http.base}/to-other-loopback",)
    assert ("GET", "/privacy") not in http.seen and ("HEAD", "/privacy") not in http.seen


def test_due_keeps_records_inside_their_window() -> None:
    now = 1_800_000_000.0
    fresh = LinkRecord("https://a.example/privacy", last_sent=now - 29 * 86400)
    old = LinkRecord("https://b.example/privacy", last_sent=now - 31 * 86400)
    assert due([fresh, old], now=now) == [fresh]
