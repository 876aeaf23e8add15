"""The content rules end to end: corpus messages sent through the real relay over loopback
get the replies the default policy gives their rules."""

from __future__ import annotations

import email
import email.utils

import aiosmtplib
import pytest

from tests.policy.checks.judging import CORPUS


async def send(port: int, name: str) -> tuple[int, str]:
    data = (CORPUS / name).read_bytes().replace(b"\n", b"\r\n")
    # The envelope sender aligns with the message's From, as a real sender's would.
    sender = email.utils.parseaddr(email.message_from_bytes(data).get("From", ""))[1] or "news@shop.example.com"
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=20)
    await client.connect()
    try:
        await client.ehlo()
        await client.mail(sender)
        await client.rcpt("reader@example.org")
        resp = await client.data(data)
        return resp.code, resp.message
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, exc.message
    finally:
        await client.quit()


@pytest.mark.parametrize("name, code, expect", [
    ("newsletter_en.eml", 250, "2.0.0 Ok: relayed"),
    ("newsletter_nl.eml", 250, "2.0.0 Ok: relayed"),
    ("newsletter_mjml.eml", 250, "2.0.0 Ok: relayed"),
    ("content_prohibited_en.eml", 550, "5.7.1 Message refused by policy [content.prohibited]"),
    ("deceptive_link.eml", 550, "[content.deceptive_link]"),
    ("attachment_zip_script.eml", 550, "[attachment.dangerous]"),
    ("subject_deceptive.eml", 550, "[subject.deceptive]"),
    ("unsubscribe_one_click_missing.eml", 550, "[unsubscribe.one_click_missing]"),
    ("header_count.eml", 250, "2.6.0"),  # message.* is held for review
    ("unparseable.eml", 550, "[privacy.link_missing, unsubscribe.body_link_missing]"),
])
async def test_corpus_through_the_relay(start_relay, sink, name: str, code: int, expect: str) -> None:
    relay = await start_relay()
    got_code, text = await send(relay.port, name)
    assert got_code == code and expect in text, text
    assert len(sink.received) == (1 if text.startswith("2.0.0") else 0)
