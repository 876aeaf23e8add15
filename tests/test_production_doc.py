"""docs/production.md works as written: a real Postfix runs with the master.cf and main.cf lines
the guide shows (read from the document, marked `<!-- tested: NAME -->`), sendwarden in front
of it with the guide's [upstream] section, and a client on a second loopback address
(127.0.0.2) sends a message. Postfix's log must name that client, not the 127.0.0.1
sendwarden connects from: XFORWARD carried it (proxy/outbound/xforward.py)."""

from __future__ import annotations

import asyncio
import re
import tomllib

import aiosmtplib
import pytest

from proxy.replies import Replies
from tests.conftest import ROOT
from tests.support.smtpclient import line_start

from tests.support.postfix import PostfixInstance, available, delivered, free_port

DOC = ROOT / "docs" / "production.md"
COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")
DOC_PORT = "127.0.0.1:10027"


def block(name: str) -> str:
    """The fenced block that follows `<!-- tested: NAME -->` in the guide."""
    m = re.search(rf"<!-- tested: {re.escape(name)} -->\n```[a-z.]*\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert m, f"docs/production.md has no block marked {name}"
    return m.group(1)


def main_cf(text: str) -> dict[str, str]:
    settings = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def test_the_marked_blocks_say_what_the_guide_promises() -> None:
    master = block("postfix-master.cf")
    assert master.count(DOC_PORT) == 1 and "smtpd_authorized_xforward_hosts=127.0.0.0/8" in master
    assert "-o content_filter=\n" in master  # no content filter on the port sendwarden relays to
    upstream = tomllib.loads(block("sendwarden-upstream"))["upstream"]
    assert upstream["url"] == f"smtp://{DOC_PORT}" and upstream["xforward"] is True
    assert "mynetworks" in main_cf(block("postfix-main.cf"))


@pytest.mark.skipif(available() is not None, reason=str(available()))
async def test_postfix_as_documented_logs_the_real_client(start_relay, sink) -> None:
    port = free_port()
    postfix = PostfixInstance(sink.port, main=main_cf(block("postfix-main.cf")),
                              master_extra=block("postfix-master.cf").replace(DOC_PORT, f"127.0.0.1:{port}"))
    await asyncio.to_thread(postfix.start)
    try:
        check = await asyncio.to_thread(postfix.postfix, "check", check=False)
        assert check.returncode == 0 and check.stderr == "", check.stderr
        upstream = tomllib.loads(block("sendwarden-upstream"))["upstream"]
        upstream["url"] = upstream["url"].replace(DOC_PORT, f"127.0.0.1:{port}")
        relay = await start_relay({"upstream": upstream, "relay_networks": ["127.0.0.0/8"]})
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=False,
                                 local_hostname="app.example.com", source_address=("127.0.0.2", 0))
        await client.connect()
        errors, text = await client.sendmail("news@shop.example.com", ["reader@example.org"], COMPLIANT)
        await client.quit()
        assert errors == {} and "relayed" in text, text
        queue_id = re.search(r"queued as (\w+)", text)
        assert queue_id, text
        await delivered(sink, 1)
        log = postfix.log()
    finally:
        await asyncio.to_thread(postfix.stop)
    qid = queue_id.group(1)
    # The second smtpd (syslog_name from the guide) took the connection from sendwarden on
    # 127.0.0.1, and logged the message as coming from the client behind it.
    assert re.search(r"postfix/sendwarden/smtpd\[\d+\]: connect from \S+\[127\.0\.0\.1\]", log), log
    # Postfix 3 logs the connection and, from XFORWARD, the original client of the message.
    assert re.search(rf"postfix/sendwarden/smtpd\[\d+\]: {qid}: client=\S+\[127\.0\.0\.1\], "
                     rf"orig_client=unknown\[127\.0\.0\.2\]$", log, re.M), log
    # Postfix's own Received header names the connection; sendwarden's, below it, the client.
    [got] = sink.received
    head = got.data.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"Received: from relay.test (localhost [127.0.0.1])")
    assert re.search(rb"\r\nReceived: from app\.example\.com \(\S*\[?127\.0\.0\.2\]?\)", head), head[:400]


def test_every_configuration_snippet_is_valid_together(tmp_path) -> None:
    """The guide's sendwarden.toml snippets, merged, are a configuration sendwarden accepts;
    its credentials file, with real hashes in it, is one the AUTH layer loads."""
    from proxy.config import ConfigFile
    from proxy.smtp.auth import Credentials, hash_password

    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    credentials = [b for b in blocks if "credentials.toml" in b.splitlines()[0]]
    assert len(credentials) == 1 and len(blocks) >= 5
    merged = tomllib.loads("\n".join(b for b in blocks if b not in credentials))
    assert {"upstream", "metrics", "tls", "auth", "dkim"} <= set(merged)
    ConfigFile.model_validate(merged)

    text = credentials[0].replace("$argon2id$v=19$m=65536,t=3,p=4$...", hash_password("a long enough password"))
    path = tmp_path / "credentials.toml"
    path.write_text(text, encoding="utf-8")
    users = Credentials.load(path)
    assert set(users.users) == {"billing-app", "newsletter@example.com"}
    assert users.verify("billing-app", "a long enough password") and not users.verify("billing-app", "wrong")


def test_the_first_message_of_the_guide_is_relayed_and_without_unsubscribe_refused(tmp_path, cli_env) -> None:
    """Step 9's message passes the default policy; without its List-Unsubscribe lines it is
    refused with the rule IDs, as the guide says (judged by `sendwarden scan`)."""
    import subprocess

    from tests.conftest import SENDWARDEN

    m = re.search(r"cat > /tmp/test\.eml <<'EOF'\n(.*?)\nEOF\n", DOC.read_text(encoding="utf-8"), re.S)
    assert m, "step 9's message is missing"
    good = tmp_path / "test.eml"
    good.write_text(m.group(1) + "\n", encoding="utf-8")
    bad = tmp_path / "bad.eml"
    bad.write_text("".join(line for line in good.read_text().splitlines(keepends=True)
                           if not line.startswith("List-Unsubscribe")), encoding="utf-8")

    def scan(path) -> tuple[int, str]:
        done = subprocess.run([*SENDWARDEN, "scan", str(path)], capture_output=True, text=True, env=cli_env,
                              cwd=tmp_path, timeout=60, check=False)
        return done.returncode, done.stdout

    code, text = scan(good)
    assert code == 0 and text.startswith(f"relay (stream marketing): {Replies.would_relay()}\n"), text
    code, out = scan(bad)
    assert code == 3 and line_start(Replies.policy_reject([], "")) in out and "unsubscribe.header_missing" in out, out
