"""Shared bits of the recipient-state tests: messages, a policy, and the store's clock."""

from __future__ import annotations

import time

import aiosmtplib

from tests.conftest import ROOT

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")
# The same newsletter without its own List-Unsubscribe headers, for sendwarden to add them.
BARE = b"".join(line for line in COMPLIANT.splitlines(keepends=True) if not line.startswith(b"List-Unsubscribe"))
SENDER = "news@shop.example.com"

POLICY = """
[policy]
default_stream = "marketing"
[streams.marketing]
kind = "marketing"
[streams.transactional]
kind = "transactional"
senders = ["@receipts.example.com"]
[actions]
"unsubscribe.*" = "reject"
"optout.*" = "reject"
"optout.suppressed_after_data" = "quarantine"
"consent.*" = "reject"
"frequency.*" = "reject"
[checks.optout]
brands = { marketing = "shop" }
brand_header = "X-Brand"
{optout}
[checks.consent]
streams = ["marketing"]
[checks.frequency]
caps = [ { scope = "brand", max = 2, per = "7d" } ]
{frequency}
"""


def policy(optout: str = "", frequency: str = "", actions: str = "") -> str:
    text = POLICY.replace("{optout}", optout).replace("{frequency}", frequency)
    if actions:
        text = text.replace("[checks.optout]", actions + "\n[checks.optout]", 1)
    return text


def now() -> float:
    return time.time()


async def send(relay, rcpts: list[str], data: bytes = COMPLIANT, sender: str = SENDER) -> tuple[dict, str]:  # type: ignore[no-untyped-def]
    """One transaction through the relay: ({refused recipient: (code, text)}, the final reply text)."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=False)
    await client.connect()
    try:
        errors, text = await client.sendmail(sender, rcpts, data)
    finally:
        await client.quit()
    return {k: (v.code, v.message) for k, v in errors.items()}, text


async def send_message(relay, data: bytes = COMPLIANT, rcpts: tuple[str, ...] = ("reader@example.org",)) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """The reply to a message: (250, text) when taken, else the end-of-data refusal's code and text."""
    try:
        _, text = await send(relay, list(rcpts), data)
        return 250, text
    except aiosmtplib.SMTPDataError as exc:
        return exc.code, exc.message


def status_of(relay) -> dict:  # type: ignore[no-untyped-def]
    """What `sendwarden status --json` would print for the relay, from its metrics as scraped."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from proxy.commands.status import summarize

    samples: dict = {}
    for family in text_string_to_metric_families(generate_latest(relay.metrics.registry).decode()):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return summarize(samples)
