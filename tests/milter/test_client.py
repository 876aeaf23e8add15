"""The milter server driven by an independent MTA-side implementation: the `miltertest` package
(pure Python, blocking sockets, so it runs in a thread while the server runs on the loop)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from miltertest import MilterConnection, constants as mc

from proxy.milter import MilterOptions, MilterServer
from tests.support.milterapp import Recorder

# An MTA that cannot take macro lists (miltertest's OPTNEG decoder expects exactly 3 numbers).
V6_NO_SYMLIST = mc.SMFI_V6_ACTS & ~mc.SMFIF_SETSYMLIST
# Version 6 steps without any NR_* flag, so every header and body chunk gets a reply.
V6_WITH_REPLIES = mc.SMFI_V6_PROT & ~(mc.SMFIP_NR_HDR | mc.SMFIP_NR_EOH | mc.SMFIP_NR_BODY | mc.SMFIP_NR_CONN
                                      | mc.SMFIP_NR_HELO | mc.SMFIP_NR_MAIL | mc.SMFIP_NR_RCPT | mc.SMFIP_NR_DATA
                                      | mc.SMFIP_NR_UNKN)

HEADERS = [("From", " News <news@shop.example.com>"), ("To", " reader@example.org"),
           ("Subject", " hello"), ("X-Folded", " first\n\tsecond")]
BODY = "Hello reader.\r\n\r\n-- \r\nshop\r\n"


@pytest.fixture
async def milter() -> AsyncIterator[Callable[..., Any]]:
    servers: list[MilterServer] = []

    async def start(options: MilterOptions | None = None, address: str = "inet:127.0.0.1:0") -> tuple[MilterServer, Recorder]:
        rec = Recorder()
        server = MilterServer(rec.factory, options or MilterOptions())
        await server.listen(address)
        servers.append(server)
        return server, rec

    yield start
    for server in servers:
        await server.stop()


def connect(address: str) -> MilterConnection:
    kind, _, rest = address.partition(":")
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(rest)
    else:
        host, _, port = rest.rpartition(":")
        sock = socket.create_connection((host, int(port)))
    sock.settimeout(10)
    return MilterConnection(sock)


def session(conn: MilterConnection, subject: str = "hello", rcpts: tuple[str, ...] = ("reader@example.org",),
            protocol: int = V6_WITH_REPLIES) -> list[tuple[str, dict[str, Any]]]:
    """One SMTP session as an MTA reports it; returns the end-of-message replies."""
    conn.optneg_mta(actions=V6_NO_SYMLIST, protocol=protocol)
    conn.send_macro(mc.SMFIC_CONNECT, **{"j": "mta.test", "{client_addr}": "127.0.0.1"})
    assert conn.send_ar(mc.SMFIC_CONNECT, hostname="client.test", family="4", port=40000, address="127.0.0.1")[0] == mc.SMFIR_CONTINUE
    conn.send_macro(mc.SMFIC_MAIL, **{"{auth_authen}": "shop", "{mail_addr}": "news@shop.example.com"})
    assert conn.send_ar(mc.SMFIC_MAIL, args=["<news@shop.example.com>", "SIZE=100"])[0] == mc.SMFIR_CONTINUE
    for rcpt in rcpts:
        conn.send_macro(mc.SMFIC_RCPT, **{"{rcpt_addr}": rcpt})
        conn.send_ar(mc.SMFIC_RCPT, args=[f"<{rcpt}>"])
    headers = [(n, f" {subject}" if n == "Subject" else v) for n, v in HEADERS]
    if conn.protocol_flags & mc.SMFIP_NR_HDR:
        for name, value in headers:  # the milter asked not to be waited for
            conn._send(mc.SMFIC_HEADER, name=name, value=value)
        conn._send(mc.SMFIC_EOH)
        conn._send(mc.SMFIC_BODY, buf=BODY)
    else:
        conn.send_headers(headers)
        conn.send_ar(mc.SMFIC_EOH)
        conn.send_body(BODY)
    conn.send_macro(mc.SMFIC_BODYEOB, i="4XyZ1")
    return conn.send_eom()


async def test_accepted_message_gets_headers_and_the_app_sees_everything(milter) -> None:
    server, rec = await milter()
    conn = await asyncio.to_thread(connect, server.addresses[0])
    replies = await asyncio.to_thread(session, conn)
    assert replies == [
        (mc.SMFIR_ADDHEADER, {"name": "X-Sendwarden", "value": " checked; queue=4XyZ1"}),
        (mc.SMFIR_INSHEADER, {"index": 0, "name": "X-Sendwarden-Top", "value": " first"}),
        (mc.SMFIR_ACCEPT, {}),
    ]
    await asyncio.to_thread(conn._send, mc.SMFIC_QUIT)
    assert await asyncio.to_thread(conn.recv, True) is None  # the server closes after QUIT
    conn.sock.close()
    for _ in range(100):
        if rec.closed:
            break
        await asyncio.sleep(0.01)
    # HELO was negotiated away; header, EOH and body hooks were each called.
    assert rec.names() == ["connect", "mail_from", "rcpt", "header", "header", "header", "header",
                           "end_of_headers", "body", "end_of_message", "close"]
    connect_args = rec.events[0][1]
    assert connect_args[:4] == ("client.test", "4", 40000, "127.0.0.1")
    assert connect_args[4] == {"j": "mta.test", "client_addr": "127.0.0.1"}
    sender, args, macros = rec.events[1][1]
    assert (sender, args) == ("news@shop.example.com", ("SIZE=100",)) and macros["auth_authen"] == "shop"
    [txn] = rec.transactions
    assert txn.sender == "news@shop.example.com" and txn.recipients == ("reader@example.org",)
    assert txn.queue_id == "4XyZ1" and txn.auth_user == "shop" and txn.client_address == "127.0.0.1"
    assert txn.message == (b"From: News <news@shop.example.com>\r\nTo: reader@example.org\r\nSubject: hello\r\n"
                           b"X-Folded: first\r\n\tsecond\r\n\r\n" + BODY.encode())


async def test_no_reply_flags_pipeline_headers_and_body(milter) -> None:
    server, rec = await milter()
    conn = await asyncio.to_thread(connect, server.addresses[0])
    replies = await asyncio.to_thread(session, conn, "hello", ("reader@example.org",), mc.SMFI_V6_PROT)
    assert conn.protocol_flags & mc.SMFIP_NR_HDR and conn.protocol_flags & mc.SMFIP_NR_BODY
    assert [cmd for cmd, _ in replies] == [mc.SMFIR_ADDHEADER, mc.SMFIR_INSHEADER, mc.SMFIR_ACCEPT]
    assert rec.transactions[0].message.endswith(b"\r\n\r\n" + BODY.encode())
    conn.sock.close()


@pytest.mark.parametrize("subject,expected", [
    ("reject", [(mc.SMFIR_REPLYCODE, {"smtpcode": "550", "space": " ",
                 "text": "5.7.1 Message refused by policy [demo.subject]: the demo milter refuses this subject"})]),
    ("tempfail", [(mc.SMFIR_REPLYCODE, {"smtpcode": "451", "space": " ",
                   "text": "4.7.1 Demo milter asks you to try again later"})]),
    ("quarantine", [(mc.SMFIR_ADDHEADER, {"name": "X-Sendwarden-Hold", "value": " yes"}),
                    (mc.SMFIR_QUARANTINE, {"reason": "demo hold: the subject asks for it"}), (mc.SMFIR_ACCEPT, {})]),
    ("discard", [(mc.SMFIR_DISCARD, {})]),
])
async def test_decisions(milter, subject: str, expected: list[Any]) -> None:
    server, _ = await milter()
    conn = await asyncio.to_thread(connect, server.addresses[0])
    got = await asyncio.to_thread(session, conn, subject)
    if got[-1][0] == mc.SMFIR_QUARANTINE:
        # miltertest counts SMFIR_QUARANTINE as the final reply; for Postfix (milter8.c) and
        # libmilter it is an edit that a final accept/continue must follow, so read on.
        got.append(await asyncio.to_thread(conn.recv))
    assert got == expected
    conn.sock.close()


async def test_refused_recipient_only(milter) -> None:
    server, rec = await milter()
    conn = await asyncio.to_thread(connect, server.addresses[0])

    def run() -> list[Any]:
        conn.optneg_mta(actions=V6_NO_SYMLIST, protocol=V6_WITH_REPLIES)
        conn.send_ar(mc.SMFIC_CONNECT, hostname="client.test", family="4", port=40000, address="127.0.0.1")
        conn.send_ar(mc.SMFIC_MAIL, args=["<news@shop.example.com>"])
        return [conn.send_ar(mc.SMFIC_RCPT, args=[f"<{r}>"]) for r in
                ("suppressed@example.org", "reader@example.org")]

    refused, accepted = await asyncio.to_thread(run)
    assert refused == (mc.SMFIR_REPLYCODE, {"smtpcode": "550", "space": " ", "text":
                       "5.7.1 Recipient refused by policy [optout.suppressed]: the recipient unsubscribed; remove them"})
    assert accepted == (mc.SMFIR_CONTINUE, {})
    conn.sock.close()


async def test_application_failure_is_a_tempfail_without_the_exception_text(milter) -> None:
    server, _ = await milter()
    conn = await asyncio.to_thread(connect, server.addresses[0])
    [(cmd, data)] = await asyncio.to_thread(session, conn, "crash")
    assert cmd == mc.SMFIR_REPLYCODE and data["smtpcode"] == "451"
    assert data["text"] == "4.3.0 Internal error, the message was not accepted; try again later"
    conn.sock.close()


async def test_slow_application_gets_progress_then_tempfail(milter) -> None:
    options = MilterOptions(message_timeout=0.5, progress_interval=0.1)
    server, _ = await milter(options)
    conn = await asyncio.to_thread(connect, server.addresses[0])
    # miltertest's recv() swallows SMFIR_PROGRESS; count them on the raw socket instead.
    progress = []
    original = conn._recv

    def counting_recv(eof_ok: bool = False) -> Any:
        msg = original(eof_ok)
        if msg and msg[0] == mc.SMFIR_PROGRESS:
            progress.append(msg)
        return msg

    conn._recv = counting_recv  # type: ignore[method-assign]
    [(cmd, data)] = await asyncio.to_thread(session, conn, "slow")
    assert cmd == mc.SMFIR_REPLYCODE
    assert data["smtpcode"] == "451" and data["text"].startswith("4.4.3 Policy lookups timed out")
    assert 1 <= len(progress) <= 6  # every 0.1 s for 0.5 s; fewer when the machine is busy
    conn.sock.close()


async def test_quit_nc_reuses_the_connection_for_a_new_session(milter) -> None:
    server, rec = await milter()
    conn = await asyncio.to_thread(connect, server.addresses[0])
    await asyncio.to_thread(session, conn)
    await asyncio.to_thread(conn._send, mc.SMFIC_QUIT_NC)
    second = await asyncio.to_thread(session, conn, "reject")  # negotiates again, as Sendmail may
    assert second[0][0] == mc.SMFIR_REPLYCODE
    conn.sock.close()
    assert rec.apps == 2


async def test_unix_socket(milter, tmp_path: Path) -> None:
    path = tmp_path / "milter.sock"
    server, rec = await milter(address=f"unix:{path}")
    assert server.addresses == [f"unix:{path}"] and oct(path.stat().st_mode & 0o777) == "0o660"
    conn = await asyncio.to_thread(connect, server.addresses[0])
    assert [c for c, _ in await asyncio.to_thread(session, conn)][-1] == mc.SMFIR_ACCEPT
    conn.sock.close()
    await server.stop()
    assert not path.exists()


async def test_strict_mta_side_accepts_our_negotiation(milter) -> None:
    """miltertest's strict check: we never ask for a flag the MTA did not offer."""
    server, _ = await milter()
    conn = await asyncio.to_thread(connect, server.addresses[0])
    offered = mc.SMFIF_ADDHDRS  # an MTA that allows nothing but adding headers, no NR_*, no skipping
    actions, protocol = await asyncio.to_thread(conn.optneg_mta, offered, mc.SMFIP_NOHELO | mc.SMFIP_HDR_LEADSPC)
    assert actions == mc.SMFIF_ADDHDRS and protocol == mc.SMFIP_NOHELO | mc.SMFIP_HDR_LEADSPC
    conn.sock.close()
