"""Nobody in: who may relay is explicit. Clients outside relay_networks must authenticate, and
AUTH is only offered after STARTTLS, against argon2 hashes."""

from __future__ import annotations

import base64
import ssl

import aiosmtplib
import pytest

from proxy.replies import Replies
from proxy.smtp.auth import hash_password

from tests.conftest import ROOT
from tests.support.smtpclient import RawClient, enhanced, line_start

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")
PASSWORD = "correct horse battery staple"


def _no_verify() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture
def credentials(tmp_path):
    path = tmp_path / "credentials.toml"
    path.write_text(f'[users]\n"billing-app" = "{hash_password(PASSWORD)}"\n')
    return str(path)


async def test_client_outside_relay_networks_cannot_relay(start_relay, sink) -> None:
    relay = await start_relay()
    c = await RawClient.connect(relay.port, local="127.0.0.2")
    await c.reply()
    await c.cmd("EHLO outsider.test")
    reply = await c.cmd("MAIL FROM:<news@shop.example.com>")
    assert reply.startswith(line_start(Replies.relay_denied())), reply
    # Nothing after that gets a message through either.
    assert (await c.cmd("RCPT TO:<victim@example.org>")).startswith(line_start(Replies.need_mail()))
    assert (await c.cmd("DATA")).startswith(line_start(Replies.need_mail()))
    await c.close()
    assert sink.received == [] and not any(c.upper().startswith("MAIL") for c in sink.commands)


async def test_with_auth_configured_outsiders_are_told_to_authenticate(start_relay, credentials) -> None:
    relay = await start_relay({"auth": {"credentials": credentials}})
    c = await RawClient.connect(relay.port, local="127.0.0.2")
    await c.reply()
    await c.cmd("EHLO outsider.test")
    assert (await c.cmd("MAIL FROM:<news@shop.example.com>")).startswith(line_start(Replies.auth_required()))
    await c.close()


async def test_auth_before_tls_is_refused(start_relay, credentials) -> None:
    relay = await start_relay({"auth": {"credentials": credentials}})
    c = await RawClient.connect(relay.port, local="127.0.0.2")
    await c.reply()
    ehlo = await c.cmd("EHLO outsider.test")
    assert "AUTH" not in ehlo
    token = base64.b64encode(f"\0billing-app\0{PASSWORD}".encode()).decode()
    assert (await c.cmd(f"AUTH PLAIN {token}")).startswith("538 5.7.11")  # aiosmtpd's own refusal
    await c.close()


async def test_auth_after_starttls_lets_an_outsider_relay(start_relay, sink, credentials) -> None:
    relay = await start_relay({"auth": {"credentials": credentials}})
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, source_address=("127.0.0.2", 0),
                             start_tls=True, tls_context=_no_verify())
    await client.connect()
    await client.ehlo()  # aiosmtplib forgets the extensions after STARTTLS until the next EHLO
    assert client.supports_extension("auth")
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as exc:
        await client.login("billing-app", "wrong password")
    assert exc.value.code == 535  # aiosmtpd's own refusal
    await client.login("billing-app", PASSWORD)
    errors, text = await client.sendmail("news@shop.example.com", ["reader@example.org"], COMPLIANT)
    await client.quit()
    assert errors == {} and enhanced(text) == Replies.relayed("", "").enhanced and "relayed" in text
    [got] = sink.received
    # RFC 3848: the trace header says TLS and AUTH were used.
    assert b"with ESMTPSA id" in got.data.split(b"\r\n\r\n")[0]


async def test_repeated_auth_failures_hang_up(start_relay, credentials) -> None:
    relay = await start_relay({"auth": {"credentials": credentials}})
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=True, tls_context=_no_verify())
    await client.connect()
    await client.ehlo()
    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as exc:
            await client.auth_plain("billing-app", "guess")
        assert exc.value.code == 535  # aiosmtpd's own refusal
    with pytest.raises(aiosmtplib.SMTPResponseException) as exc:
        await client.auth_plain("billing-app", "guess")
    assert exc.value.code == Replies.too_many_auth_failures().code
    client.close()
