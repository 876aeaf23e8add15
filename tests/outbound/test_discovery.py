"""RelaySMTP and RelayHandler narrow what dir() shows to what aiosmtpd looks for at every
connection (a speed-up: proxy/smtp/server.py). aiosmtpd must still find every command, AUTH
mechanism and hook that a full dir() would give it."""

from __future__ import annotations

import asyncio

from proxy.commands.common import load
from proxy.runtime.service import Service


async def test_aiosmtpd_finds_every_command_mechanism_and_hook() -> None:
    config, policy = load(None)
    server = Service(config, policy)._factory("default", False)()
    handler = server.event_handler
    full = object.__dir__(server)
    assert set(server._smtp_methods) == {n[len("smtp_"):] for n in full if n.startswith("smtp_")}
    assert {"DATA", "MAIL", "RCPT", "EHLO", "STARTTLS", "AUTH", "QUIT"} <= set(server._smtp_methods)
    # the mechanisms (before the config's exclusions) and the handler's hooks
    mechanisms = {n[len("auth_"):] for n in full if n.startswith("auth_")}
    assert set(server._auth_methods) <= mechanisms
    assert set(server._handle_hooks) == {n[len("handle_"):] for n in object.__dir__(handler) if n.startswith("handle_")}
    assert {"MAIL", "RCPT", "EHLO", "PROXY", "RSET"} <= set(server._handle_hooks)
    await asyncio.sleep(0)
