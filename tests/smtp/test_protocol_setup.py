"""RelaySMTP sets up a connection without aiosmtpd's per-connection introspection
(proxy/smtp/server.py): what it sets must be what aiosmtpd's own SMTP.__init__ sets, for the
options the relay uses, or the protocol would behave differently."""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import Mapping
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from proxy.commands.common import load
from proxy.runtime.service import Service
from proxy.smtp.handler import RelayHandler
from proxy.smtp.server import RelaySMTP


def _shape(value: Any, conn: object) -> Any:
    """A value with what differs between two connections by identity alone (their own bound
    methods, stream reader, futures) replaced by what it stands for."""
    if hasattr(value, "__self__") and hasattr(value, "__func__"):
        return ("method", value.__func__, "conn" if value.__self__ is conn else value.__self__)
    if isinstance(value, Mapping):
        return {k: _shape(v, conn) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_shape(v, conn) for v in value)
    if isinstance(value, weakref.ReferenceType):
        return ("weakref", _shape(value(), conn))
    if isinstance(value, asyncio.StreamReader):
        return ("reader", value._limit, value._loop)  # type: ignore[attr-defined]
    if isinstance(value, asyncio.Future):
        return ("future", value.done())
    return value


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    return ctx


@pytest.mark.parametrize("options", [
    {},
    {"auth_exclude_mechanism": ["PLAIN", "LOGIN"], "proxy_protocol_timeout": 5.0},
    {"auth_exclude_mechanism": ["LOGIN"], "tls": True, "ident": "", "data_size_limit": None},
])
async def test_a_connection_is_set_up_as_aiosmtpd_sets_it_up(options: dict[str, Any]) -> None:
    config, policy = load(None)
    handler = RelayHandler(Service(config, policy), "default")
    options = dict(options)
    tls = _tls() if options.pop("tls", False) else None
    kwargs: dict[str, Any] = {
        "loop": asyncio.get_running_loop(), "hostname": "relay.test", "ident": "sendwarden",
        "data_size_limit": 1000, "enable_SMTPUTF8": True, "decode_data": False, "tls_context": tls,
        "require_starttls": False, "auth_require_tls": True, "timeout": 300, **options,
    }
    for _ in range(2):  # the first connection makes the handler's tables, the second reuses them
        ours = RelaySMTP(handler, **kwargs)
        theirs = RelaySMTP.__new__(RelaySMTP)
        SMTP.__init__(theirs, handler, **kwargs)
        expected = {k: _shape(v, theirs) for k, v in vars(theirs).items()}
        got = {k: _shape(v, ours) for k, v in vars(ours).items() if k in expected}
        got["_smtp_methods"] = _shape(dict(ours._smtp_methods), ours)
        assert got == expected
        assert set(vars(ours)) - set(expected) == {"relay_handler", "refused", "in_transaction", "closing", "failed_logins",
                                                   "pending_dsn", "_greeting_reply", "_deadline", "_armed_for"}


async def test_the_idle_timer_follows_the_last_deadline_and_is_not_remade_for_each_command() -> None:
    """The idle timeout fires at the last deadline set, later or earlier than the armed timer,
    with one timer armed as long as the deadline only moves later."""
    config, policy = load(None)
    conn = RelaySMTP(Service(config, policy)._factory("default", False)().relay_handler,
                     loop=asyncio.get_running_loop(), hostname="relay.test", timeout=0.5)
    fired: list[float] = []
    conn._timeout_cb = lambda: fired.append(conn.loop.time())  # type: ignore[method-assign]
    await asyncio.sleep(0)  # the loop's clock is read once per turn: a fresh one, after the setup
    conn._reset_timeout()
    first = conn._timeout_handle
    for _ in range(4):  # commands keep coming: the deadline moves, the timer stays
        await asyncio.sleep(0.05)
        conn._reset_timeout()
        assert conn._timeout_handle is first
    last = conn._deadline
    while not fired:  # the first timer finds the deadline moved on and re-arms for it
        await asyncio.sleep(0.02)
    assert fired[0] >= last - 0.002
    conn._reset_timeout(5)
    conn._reset_timeout(0.05)  # earlier than the armed timer: re-armed at once
    await asyncio.sleep(0.2)
    assert len(fired) == 2
    conn._timeout_handle.cancel()  # type: ignore[union-attr]
