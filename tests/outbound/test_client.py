"""The upstream SMTP client (proxy/outbound/client.py) against scripted servers on loopback: it
pipelines when the server offers PIPELINING (RFC 2920), goes one command at a time when not,
never sends a message after a refusal, and tells a dead pooled connection from a failure."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.outbound import client
from proxy.outbound.client import ClientError, Stale, open_connection

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
MSG = b"Subject: x\r\n\r\n.dot\r\nbody\r\n"


async def serve(script: Script) -> tuple[asyncio.AbstractServer, int]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pipelining: bool,
                extensions: bytes = b"") -> None:
    """The greeting and the EHLO reply; `extensions`: more "250-KEYWORD PARAMS\\r\\n" lines."""
    writer.write(b"220 test ESMTP\r\n")
    await reader.readuntil(b"\r\n")  # EHLO
    writer.write(b"250-test\r\n" + (b"250-PIPELINING\r\n" if pipelining else b"") + extensions + b"250 SIZE 1000000\r\n")


async def test_pipelined_commands_arrive_before_any_reply() -> None:
    """The server answers nothing until it has MAIL, RCPT and DATA: only a pipelining client
    gets through (a one-at-a-time client would wait for the MAIL reply forever)."""
    wire: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet(reader, writer, pipelining=True)
        batch = await reader.readuntil(b"DATA\r\n")
        writer.write(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n")
        wire.append(batch)
        wire.append(await reader.readuntil(b"\r\n.\r\n"))
        writer.write(b"250 2.0.0 queued as Q1\r\n")
        await reader.read()

    server, port = await serve(script)
    async with server:
        conn = await open_connection("127.0.0.1", port, helo="relay.test", connect_timeout=5, command_timeout=3)
        outcome = await conn.transaction("<a@x.example> SIZE=30", [("<b@y.example>", "b@y.example")], MSG, 5)
        conn.close()
    assert outcome.delivered and outcome.code == 250 and "Q1" in outcome.text
    assert wire[0] == b"MAIL FROM:<a@x.example> SIZE=30\r\nRCPT TO:<b@y.example>\r\nDATA\r\n"
    assert wire[1] == b"Subject: x\r\n\r\n..dot\r\nbody\r\n.\r\n"


async def test_one_command_at_a_time_without_pipelining_and_stop_at_the_refusal() -> None:
    seen: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet(reader, writer, pipelining=False)
        for reply in (b"250 ok\r\n", b"550 5.1.1 no such user\r\n"):
            seen.append(await reader.readuntil(b"\r\n"))
            writer.write(reply)
        seen.append(await reader.read())  # nothing more: the client stopped at the refusal

    server, port = await serve(script)
    async with server:
        conn = await open_connection("127.0.0.1", port, helo="relay.test", connect_timeout=5, command_timeout=3)
        outcome = await conn.transaction("<a@x.example>", [("<b@y.example>", "b@y.example")], MSG, 5)
        assert (outcome.code, outcome.stage, outcome.rcpt, outcome.delivered) == (550, "rcpt", "b@y.example", False)
        assert conn.needs_rset
        conn.close()
        await asyncio.sleep(0.1)
    assert seen == [b"MAIL FROM:<a@x.example>\r\n", b"RCPT TO:<b@y.example>\r\n", b""]


async def test_a_refused_recipient_with_354_all_the_same_sends_nothing() -> None:
    """RFC 2920 lets a server say 354 to DATA after refusing every RCPT in a batch; the
    message must not go (it would be delivered to nobody or, worse, to the others)."""
    after: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet(reader, writer, pipelining=True)
        await reader.readuntil(b"DATA\r\n")
        writer.write(b"250 ok\r\n550 5.1.1 no\r\n250 ok\r\n354 go\r\n")
        after.append(await reader.read())

    server, port = await serve(script)
    async with server:
        conn = await open_connection("127.0.0.1", port, helo="relay.test", connect_timeout=5, command_timeout=3)
        outcome = await conn.transaction("<a@x.example>", [("<b@y.example>", "b@y.example"), ("<c@y.example>", "c@y.example")], MSG, 5)
        await asyncio.sleep(0.1)
    assert (outcome.code, outcome.rcpt) == (550, "b@y.example")
    assert not conn.is_open and after == [b""]


async def test_a_dead_reused_connection_is_stale_a_new_one_fails_plainly() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet(reader, writer, pipelining=True)
        await reader.readuntil(b"DATA\r\n")
        writer.write(b"250 ok\r\n250 ok\r\n354 go\r\n")
        await reader.readuntil(b"\r\n.\r\n")
        writer.write(b"250 queued\r\n")
        await reader.readuntil(b"\r\n")  # the next MAIL: the server has gone away meanwhile
        writer.close()

    server, port = await serve(script)
    async with server:
        conn = await open_connection("127.0.0.1", port, helo="relay.test", connect_timeout=5, command_timeout=3)
        assert (await conn.transaction("<a@x.example>", [("<b@y.example>", "b")], MSG, 5)).delivered
        with pytest.raises(Stale):
            await conn.transaction("<a@x.example>", [("<b@y.example>", "b")], MSG, 5)
        fresh = await open_connection("127.0.0.1", port, helo="relay.test", connect_timeout=5, command_timeout=3)
        fresh.writer.transport.abort()
        with pytest.raises((ClientError, OSError)):
            await fresh.transaction("<a@x.example>", [("<b@y.example>", "b")], MSG, 5)
        conn.close()
        fresh.close()
        await asyncio.sleep(0.05)


async def test_malformed_and_endless_replies_are_errors() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hi\r\n")
        await reader.readuntil(b"\r\n")
        writer.write(b"250-x\r\n" * 200)
        await reader.read()

    server, port = await serve(script)
    async with server:
        with pytest.raises(ClientError, match="too many lines"):
            await open_connection("127.0.0.1", port, helo="relay.test", connect_timeout=5, command_timeout=3)


async def test_control_characters_never_reach_the_wire() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await greet(reader, writer, pipelining=True)
        await reader.read()

    server, port = await serve(script)
    async with server:
        conn = await open_connection("127.0.0.1", port, helo="relay.test", connect_timeout=5, command_timeout=3)
        with pytest.raises(ValueError):
            await conn.transaction("<a@x.example>\r\nRCPT TO:<evil@x>", [("<b@y.example>", "b")], MSG, 5)
        conn.close()


_LINES = st.lists(st.sampled_from([b"", b".", b"..", b".x", b"a.b", b"x" * 40, b"." * 3 + b"y"]), max_size=30)


@settings(max_examples=300, deadline=None)
@given(head=_LINES, data=_LINES, crlf_end=st.booleans(), window=st.sampled_from([1, 7, 64, 256 * 1024]))
def test_windows_are_the_stuffed_message_and_its_dot(head: list[bytes], data: list[bytes], crlf_end: bool,
                                                    window: int) -> None:
    """The windows written with one writelines each are, joined, exactly the dot-stuffed
    message (`_stuffed`, the plain form) and its final dot, whatever the window size."""
    head_bytes = b"".join(line + b"\r\n" for line in head)
    body = b"\r\n".join(data) + (b"\r\n" if crlf_end and data else b"")
    old = client.WINDOW
    client.WINDOW = window
    try:
        windows = list(client._stuffed_windows(head_bytes, body))
    finally:
        client.WINDOW = old
    wire = b"".join(bytes(p) for w in windows for p in w)
    assert wire == client._stuffed(head_bytes + body) + b".\r\n"
    assert all(windows)
