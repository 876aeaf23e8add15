"""A real DNS server on loopback for tests, built with dnspython: UDP and TCP on one port,
answering authoritatively from zones a test defines, and able to misbehave on purpose.

    dns_server.zone("example.com", '''
        @            MX  10 mx.example.com.
        @            TXT "v=spf1 ip4:192.0.2.0/24 -all"
        mx           A   192.0.2.25
    ''')
    dns_server.add("sel._domainkey.example.com", "TXT", long_text)   # split into 255-byte strings
    dns_server.behaviour.timeout.add("*._domainkey.example.com")   # never answer these (fnmatch)
    dns_server.behaviour.servfail.add("broken.example.com")
    resolver = Resolver([dns_server.nameserver], timeout=1)

Answers follow the DNS rules a stub resolver relies on: NXDOMAIN or NODATA with the zone's SOA
in the authority section, CNAME chains inside the served zones, `*` wildcards, REFUSED for names
outside every zone, and TC over UDP when the answer does not fit (the client retries over TCP).
Every query is recorded in `queries` as (name, type, "udp"|"tcp"), so tests can assert caching.

Also runnable on its own, for tools that must find it through /etc/resolv.conf (port 53, in a
private network namespace): `python -m tests.support.dnsserver --listen 127.0.0.1:53 --zone ORIGIN=FILE`.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import struct
from dataclasses import dataclass, field
from typing import AsyncIterator

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.node
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest

DEFAULT_TTL = 300


def txt_value(text: str) -> str:
    """A TXT value in presentation form: quoted, split into strings of at most 255 bytes."""
    raw = text.encode()
    chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
    return " ".join('"' + c.decode().replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


def _key(name: dns.name.Name | str) -> str:
    return str(name).lower().rstrip(".")


@dataclass
class Behaviour:
    """Misbehaviour, by name pattern (fnmatch on the lower-case name without final dot)."""

    timeout: set[str] = field(default_factory=set)  # never answer (the client times out)
    servfail: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    truncate: set[str] = field(default_factory=set)  # always TC over UDP (forces TCP)
    delay: float = 0.0  # seconds before every answer

    @staticmethod
    def matches(patterns: set[str], name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)


class DnsServer:
    def __init__(self) -> None:
        self.zones: dict[dns.name.Name, dns.zone.Zone] = {}
        self.behaviour = Behaviour()
        self.queries: list[tuple[str, str, str]] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.AbstractServer | None = None

    # -- zone data -------------------------------------------------------------------------------

    def zone(self, origin: str, text: str = "") -> "DnsServer":
        """Serve a zone from master-file text (names relative to `origin`; `$TTL` defaults to
        300). Every line names its owner (leading blanks are dropped, so tests can indent).
        An SOA and an NS record are added when the text has none."""
        o = dns.name.from_text(origin)
        text = "\n".join(line.strip() for line in text.splitlines())
        zone = dns.zone.from_text(f"$TTL {DEFAULT_TTL}\n{text}", o, relativize=False, check_origin=False)
        if zone.get_rdataset(o, "SOA") is None:
            soa = dns.rdata.from_text("IN", "SOA", f"ns.{o} hostmaster.{o} 1 3600 600 86400 60")
            zone.find_rdataset(o, "SOA", create=True).add(soa, DEFAULT_TTL)
        if zone.get_rdataset(o, "NS") is None:
            zone.find_rdataset(o, "NS", create=True).add(dns.rdata.from_text("IN", "NS", f"ns.{o}"), DEFAULT_TTL)
        self.zones[o] = zone
        return self

    def _zone_for(self, name: dns.name.Name) -> dns.zone.Zone | None:
        best = None
        for origin, zone in self.zones.items():
            if name.is_subdomain(origin) and (best is None or len(origin) > len(best.origin)):
                best = zone
        return best

    def add(self, name: str, rdtype: str, *values: str, ttl: int = DEFAULT_TTL) -> "DnsServer":
        """Add records to the zone that holds `name` (made on the fly at the name's parent if
        none does). TXT values are given as plain text and quoted/split here."""
        n = dns.name.from_text(name)
        zone = self._zone_for(n)
        if zone is None:
            self.zone(n.parent().to_text())
            zone = self.zones[n.parent()]
        rds = zone.find_rdataset(n, rdtype, create=True)
        for v in values:
            text = txt_value(v) if rdtype.upper() == "TXT" else v
            rds.add(dns.rdata.from_text("IN", rdtype, text), ttl)
        return self

    def remove(self, name: str, rdtype: str | None = None) -> "DnsServer":
        n = dns.name.from_text(name)
        zone = self._zone_for(n)
        if zone is not None:
            if rdtype is None:
                zone.delete_node(n)
            else:
                zone.delete_rdataset(n, rdtype)
        return self

    # -- answering -------------------------------------------------------------------------------

    def _lookup(self, zone: dns.zone.Zone, qname: dns.name.Name, qtype: int) -> tuple[list[dns.rrset.RRset], bool]:
        """(answer rrsets, name exists) with CNAMEs followed inside the served zones."""
        answers: list[dns.rrset.RRset] = []
        name, seen = qname, set()
        while name not in seen and len(seen) < 8:
            seen.add(name)
            z = self._zone_for(name)
            if z is None:
                return answers, True
            node = z.get_node(name)
            owner = name
            if node is None:
                node = self._wildcard(z, name)
            if node is None:
                exists = any(n.is_subdomain(name) for n in z.nodes)  # empty non-terminal
                return answers, exists
            rds = node.get_rdataset(dns.rdataclass.IN, qtype)
            if rds is not None:
                answers.append(dns.rrset.from_rdata_list(owner, rds.ttl, list(rds)))
                return answers, True
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is None or qtype == dns.rdatatype.CNAME:
                return answers, True
            answers.append(dns.rrset.from_rdata_list(owner, cname.ttl, list(cname)))
            name = list(cname)[0].target
        return answers, True

    @staticmethod
    def _wildcard(zone: dns.zone.Zone, name: dns.name.Name) -> dns.node.Node | None:
        parent = name
        while parent != zone.origin and len(parent) > 1:
            parent = parent.parent()
            node = zone.get_node(dns.name.Name(("*",) + parent.labels))
            if node is not None:
                return node
            if zone.get_node(parent) is not None:
                return None
        return None

    def respond(self, wire: bytes, proto: str) -> bytes | None:
        """The reply to one query in wire form, or None to stay silent."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None
        if not query.question:
            return None
        q = query.question[0]
        name = _key(q.name)
        self.queries.append((name, dns.rdatatype.to_text(q.rdtype), proto))
        b = self.behaviour
        if b.matches(b.timeout, name):
            return None
        resp = dns.message.make_response(query)
        resp.flags |= dns.flags.RA
        if b.matches(b.servfail, name):
            resp.set_rcode(dns.rcode.SERVFAIL)
            return resp.to_wire()
        zone = self._zone_for(q.name)
        if b.matches(b.refused, name) or zone is None:
            resp.set_rcode(dns.rcode.REFUSED)
            return resp.to_wire()
        resp.flags |= dns.flags.AA
        answers, exists = self._lookup(zone, q.name, q.rdtype)
        resp.answer.extend(answers)
        if not answers or answers[-1].rdtype == dns.rdatatype.CNAME and q.rdtype != dns.rdatatype.CNAME:
            if not exists:
                resp.set_rcode(dns.rcode.NXDOMAIN)
            soa = zone.get_rdataset(zone.origin, "SOA")
            resp.authority.append(dns.rrset.from_rdata_list(zone.origin, soa.ttl, list(soa)))
        if proto == "udp":
            limit = max(512, query.payload) if query.edns >= 0 else 512
            try:
                if b.matches(b.truncate, name):
                    raise dns.exception.TooBig
                return resp.to_wire(max_size=limit)
            except dns.exception.TooBig:
                resp.answer.clear()
                resp.authority.clear()
                resp.flags |= dns.flags.TC
                return resp.to_wire()
        return resp.to_wire()

    # -- sockets ---------------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> "DnsServer":
        """Listen on UDP and TCP on the same port (a free one when `port` is 0)."""
        loop = asyncio.get_running_loop()
        server = self
        for _ in range(20):
            transport, _proto = await loop.create_datagram_endpoint(lambda: _Udp(server), local_addr=(host, port))
            chosen = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._tcp_client, host, chosen)
            except OSError:
                transport.close()
                if port:
                    raise
                continue
            self._udp = transport  # type: ignore[assignment]
            self.host, self.port = host, chosen
            return self
        raise OSError("no port free for both UDP and TCP")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()

    @property
    def nameserver(self) -> str:
        """The address to give `Resolver(nameservers=[...])` or `[dns] nameservers`."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def _answer(self, wire: bytes, proto: str) -> bytes | None:
        if self.behaviour.delay:
            await asyncio.sleep(self.behaviour.delay)
        return self.respond(wire, proto)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                reply = await self._answer(await reader.readexactly(length), "tcp")
                if reply is None:
                    continue
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self._replies: set[asyncio.Task[None]] = set()  # answers being sent (a task is only weakly held)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        async def reply() -> None:
            out = await self.server._answer(data, "udp")
            if out is not None and self.transport is not None and not self.transport.is_closing():
                self.transport.sendto(out, addr)

        self._replies.add(task := asyncio.ensure_future(reply()))
        task.add_done_callback(self._replies.discard)


@pytest.fixture
async def dns_server() -> AsyncIterator[DnsServer]:
    """A fresh loopback DNS server per test; add zones with `.zone()` / `.add()`."""
    server = await DnsServer().start()
    yield server
    await server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description="serve test zones on UDP and TCP")
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT")
    p.add_argument("--zone", action="append", default=[], metavar="ORIGIN=FILE")
    args = p.parse_args()

    async def serve() -> None:
        server = DnsServer()
        for spec in args.zone:
            origin, _, path = spec.partition("=")
            server.zone(origin, open(path, encoding="utf-8").read())
        host, _, port = args.listen.rpartition(":")
        await server.start(host, int(port))
        print(f"listening {server.nameserver}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
