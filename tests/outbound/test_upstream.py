"""The upstream's reply is what the client gets, and a 250 only ever means the upstream has it."""

from __future__ import annotations

import asyncio
import socket

import pytest

from proxy.replies import Replies
from tests.conftest import ROOT
from tests.support.smtpclient import enhanced, send_one

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")
# The upstream away or failing; the upstream deferring (its 4xx, named in ours); the upstream took it.
UNAVAILABLE, DEFERRED = Replies.upstream_unavailable(""), Replies.upstream_temporary(452, "")
RELAYED = Replies.relayed("", "")



def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def test_upstream_down_gives_451_and_no_250(start_relay) -> None:
    relay = await start_relay(upstream=f"smtp://127.0.0.1:{closed_port()}")
    code, text = await send_one(relay.port, COMPLIANT)
    assert (code, enhanced(text)) == (UNAVAILABLE.code, UNAVAILABLE.enhanced)


async def test_upstream_refusing_service_gives_451(start_relay, sink) -> None:
    sink.behaviour.refuse_connections = True
    relay = await start_relay()
    code, text = await send_one(relay.port, COMPLIANT)
    assert (code, enhanced(text)) == (UNAVAILABLE.code, UNAVAILABLE.enhanced)


async def test_upstream_550_is_passed_through(start_relay, sink) -> None:
    sink.behaviour.data_end = "550 5.7.1 Message content rejected by upstream"
    relay = await start_relay()
    code, text = await send_one(relay.port, COMPLIANT)
    assert code == 550 and text.startswith("5.7.1") and "rejected by upstream" in text  # the sink's own reply
    assert sink.received == []


async def test_upstream_4xx_becomes_451(start_relay, sink) -> None:
    sink.behaviour.data_end = "452 4.3.1 Insufficient system storage"
    relay = await start_relay()
    code, text = await send_one(relay.port, COMPLIANT)
    assert (code, enhanced(text)) == (DEFERRED.code, DEFERRED.enhanced) and "452" in text


async def test_one_refused_recipient_aborts_with_its_reply(start_relay, sink) -> None:
    sink.behaviour.rcpt_by_address = {"gone@example.org": "550 5.1.1 <gone@example.org>: user unknown"}
    relay = await start_relay()
    code, text = await send_one(relay.port, COMPLIANT, rcpts=["reader@example.org", "gone@example.org"])
    assert code == 550 and "user unknown" in text  # the sink's own reply
    assert sink.received == []  # nobody got it, and the client knows


async def test_upstream_hanging_in_data_gives_451_within_the_budget(start_relay, sink) -> None:
    sink.behaviour.hang_in_data = True
    relay = await start_relay({"timeouts": {"upstream_data": 1, "upstream_command": 1, "upstream_connect": 1}})
    code, text = await asyncio.wait_for(send_one(relay.port, COMPLIANT), 15)
    assert (code, enhanced(text)) == (UNAVAILABLE.code, UNAVAILABLE.enhanced)


async def test_upstream_dropping_after_data_gives_451(start_relay, sink) -> None:
    """The ambiguous case: the upstream may have queued it; we say 451 so the client retries
    (a possible duplicate rather than a possible loss)."""
    sink.behaviour.drop_after_data = True
    relay = await start_relay()
    code, text = await send_one(relay.port, COMPLIANT)
    assert (code, enhanced(text)) == (UNAVAILABLE.code, UNAVAILABLE.enhanced)


async def test_pooled_connection_is_reused_without_a_round_trip(start_relay, sink) -> None:
    relay = await start_relay()
    for _ in range(3):
        code, _ = await send_one(relay.port, COMPLIANT)
        assert code == RELAYED.code
    assert len(sink.received) == 3
    # One connection, opened by the start-up probe; a transaction that ended cleanly leaves
    # nothing to reset, so every message went straight to MAIL FROM.
    assert sink.connections == 1
    assert "RSET" not in sink.commands


async def test_a_refused_transaction_is_reset_before_the_next(start_relay, sink) -> None:
    sink.behaviour.rcpt_by_address["reader@example.org"] = "452 4.2.2 mailbox full"
    relay = await start_relay()
    code, _ = await send_one(relay.port, COMPLIANT)
    assert code == DEFERRED.code
    del sink.behaviour.rcpt_by_address["reader@example.org"]
    code, _ = await send_one(relay.port, COMPLIANT)
    assert code == RELAYED.code and len(sink.received) == 1
    assert sink.connections == 1
    # RSET went first, pipelined with the next transaction's commands
    assert sink.commands[sink.commands.index("RSET") + 1].startswith("MAIL FROM:")


async def test_message_goes_dot_stuffed(start_relay, sink) -> None:
    relay = await start_relay()
    dotted = COMPLIANT.replace(b"Hello,\r\n", b".Hello, a line that starts with a dot\r\n..and two\r\n", 1)
    assert (await send_one(relay.port, dotted))[0] == RELAYED.code
    [got] = sink.received
    assert b"\r\n..Hello, a line that starts with a dot\r\n...and two\r\n" in got.wire
    assert got.data.endswith(dotted)


async def test_pool_recovers_when_the_upstream_closed_an_idle_connection(start_relay, sink) -> None:
    relay = await start_relay()
    assert (await send_one(relay.port, COMPLIANT))[0] == RELAYED.code
    # The upstream restarts: every idle connection is gone.
    await sink.stop()
    port = sink.port
    sink.server = await asyncio.start_server(sink._client, "127.0.0.1", port)
    assert (await send_one(relay.port, COMPLIANT))[0] == RELAYED.code
    assert len(sink.received) == 2


@pytest.mark.parametrize("reply", ["421 4.3.2 shutting down", "451 4.3.0 try later"])
async def test_upstream_mail_from_refusal_4xx(start_relay, sink, reply) -> None:
    sink.behaviour.mail = reply
    relay = await start_relay()
    code, text = await send_one(relay.port, COMPLIANT)
    assert (code, enhanced(text)) == (UNAVAILABLE.code, UNAVAILABLE.enhanced)


async def test_starttls_to_upstream_when_offered(start_relay, sink, tmp_path) -> None:
    """Chain two relays: the second one offers STARTTLS with its development certificate."""
    second = await start_relay({"state_dir": str(tmp_path / "second")})
    first = await start_relay({"upstream": {"verify": False, "starttls": "required", "url": f"smtp://127.0.0.1:{second.port}"}})
    code, text = await send_one(first.port, COMPLIANT)
    assert code == RELAYED.code, text
    [got] = sink.received
    # The second relay's trace header says the first one reached it over TLS.
    assert got.data.startswith(b"Received: from relay.test ([127.0.0.1])\r\n\tby relay.test (sendwarden) with ESMTPS id")


async def test_upstream_certificate_is_verified_by_default(start_relay, sink, tmp_path) -> None:
    second = await start_relay({"state_dir": str(tmp_path / "second")})
    first = await start_relay({"upstream": {"url": f"smtp://127.0.0.1:{second.port}"}})
    code, text = await send_one(first.port, COMPLIANT)
    assert (code, enhanced(text)) == (UNAVAILABLE.code, UNAVAILABLE.enhanced) and "certificate" in text.lower()
    assert sink.received == []


async def test_required_starttls_without_upstream_support_gives_451(start_relay, sink) -> None:
    relay = await start_relay({"upstream": {"starttls": "required"}})
    code, text = await send_one(relay.port, COMPLIANT)
    assert code == UNAVAILABLE.code and "STARTTLS" in text
    assert sink.received == []
