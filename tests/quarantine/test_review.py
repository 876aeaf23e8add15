"""The review cycle through the CLI, on a quarantine filled by the real relay: list filters,
show with masking and --reveal, release to the real sink exactly once (also when releases race),
a release the upstream refuses, delete, purge by age with --dry-run, bad IDs."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from proxy.cli import main

from tests.support.quarantine_env import COMPLIANT, HTML_NO_SUBJECT, LENIENT_POLICY, PLAIN, QEnv, config_toml, make_env


@pytest.fixture(params=["local", "shared"])
async def qenv(request, tmp_path, start_relay, sink, cli_env) -> QEnv:
    """The same review cycle on the local quarantine and on the shared one in PostgreSQL."""
    store = request.getfixturevalue("pg_url") if request.param == "shared" else ""
    return await make_env(tmp_path, start_relay, sink, cli_env, store=store)


async def fill(env: QEnv) -> tuple[str, str]:
    """One marketing message without unsubscribe headers, and one transactional message without
    a subject (two recipients, DSN parameters): both held by the real relay."""
    a = await env.send("news@shop.example.com", ["reader@example.org"], PLAIN)
    b = await env.send("billing@receipts.example.com", ["alice@example.net", "bob@example.net"], HTML_NO_SUBJECT,
                       mail_options=["RET=HDRS", "ENVID=rcpt-42"], rcpt_options=["NOTIFY=FAILURE,DELAY"])
    return a, b


async def test_list_filters_and_paging(qenv: QEnv, sink) -> None:
    a, b = await fill(qenv)
    r = await qenv.cli("quarantine", "list")
    assert r.code == 0
    lines = r.out.splitlines()
    assert lines[0].startswith("ID")
    assert [line.split()[0] for line in lines[1:3]] == [b, a]  # newest first
    assert "unsubscribe.header_missing" in lines[2] and "news@shop.example.com" in lines[2]
    assert "reader@example.org" not in r.out  # list never shows recipients, only their count
    assert "page 1 of 1, 2 message(s)" in lines[-1]

    async def ids(*args: str) -> list[str]:
        run = await qenv.cli("quarantine", "list", "--json", *args)
        assert run.code == 0, run.err
        return [json.loads(line)["id"] for line in run.out.splitlines()]

    cases = {
        (): [b, a],
        ("--rule", "unsub"): [a],
        ("--rule", "subject.missing"): [b],
        ("--rule", "sender"): [],
        ("--stream", "transactional"): [b],
        ("--sender", "@receipts.example.com"): [b],
        ("--sender", "NEWS@shop.example.com"): [a],
        ("--since", "1h"): [b, a],
        ("--status", "released"): [],
        ("--limit", "1"): [b],
        ("--limit", "1", "--page", "2"): [a],
    }
    found = await asyncio.gather(*(ids(*args) for args in cases))  # independent: run them at once
    assert dict(zip(cases, found, strict=True)) == cases
    page = await qenv.cli("quarantine", "list", "--limit", "1")
    assert "page 1 of 2" in page.out and "next: --page 2" in page.out

    doc = json.loads((await qenv.cli("quarantine", "list", "--json", "--stream", "transactional")).out)
    assert doc["rcpt_count"] == 2 and doc["rules"] == ["subject.missing"] and doc["status"] == "held"
    assert doc["sender"] == "billing@receipts.example.com" and 0 <= doc["age_s"] < 60

    bad = await qenv.cli("quarantine", "list", "--since", "2 days")
    assert bad.code == 1 and "--since" in bad.err and "unit" in bad.err


async def test_show_masks_recipients_unless_revealed(qenv: QEnv) -> None:
    _, b = await fill(qenv)
    r = await qenv.cli("quarantine", "show", b)
    assert r.code == 0, r.err
    for clear in ("alice@example.net", "bob@example.net", "alice%40example.net"):
        assert clear not in r.out
    assert "RCPT TO:<a***@example.net> NOTIFY=FAILURE,DELAY" in r.out
    assert "MAIL FROM:<billing@receipts.example.com> RET=HDRS ENVID=rcpt-42" in r.out
    assert "To: a***@example.net, b***@example.net" in r.out
    assert "subject.missing  (empty or missing subject)" in r.out
    assert "the Subject header is missing or empty" in r.out
    # The HTML body as readable text: no markup, no script or style, links listed.
    assert "| Your receipt" in r.out and "| Dear a***@example.net, thanks." in r.out and "| * One item" in r.out
    assert "evil()" not in r.out and "color:red" not in r.out and "<p>" not in r.out
    assert "View online [1]" in r.out
    assert "[1] https://receipts.example.com/r?to=a%2A%2A%2A%40example.net" in r.out
    assert "receipt.pdf  application/pdf  23 bytes" in r.out
    assert not [e for e in r.events() if e["event"] == "quarantine_reveal"]

    shown = await qenv.cli("quarantine", "show", b, "--reveal", "--as", "carol")
    assert shown.code == 0
    assert "RCPT TO:<alice@example.net>" in shown.out and "To: alice@example.net, bob@example.net" in shown.out
    [event] = [e for e in shown.events() if e["event"] == "quarantine_reveal"]
    assert event["id"] == b and event["actor"] == "carol" and event["os_user"]
    again = await qenv.cli("quarantine", "show", b)
    assert "revealed       carol: recipient addresses" in again.out  # the history keeps it


async def test_show_raw_prints_the_exact_stored_bytes(qenv: QEnv) -> None:
    a, _ = await fill(qenv)
    r = await qenv.cli("quarantine", "show", a, "--raw")
    assert r.code == 0
    assert r.out.encode() == PLAIN
    assert qenv.stored(a) == PLAIN
    assert [e["what"] for e in r.events() if e["event"] == "quarantine_reveal"] == ["raw bytes"]


async def test_release_reaches_the_sink_once_with_its_envelope(qenv: QEnv, sink) -> None:
    a, b = await fill(qenv)
    assert sink.received == []
    r = await qenv.cli("quarantine", "release", b, "--reason", "receipt, checked", "--as", "alice")
    assert r.code == 0, r.err
    assert f"{b}: released: 250 2.0.0 Ok: queued as SINK1" in r.out
    [got] = sink.received
    assert got.mail_from == "billing@receipts.example.com"
    assert sorted(got.mail_params) == ["ENVID=rcpt-42", "RET=HDRS", f"SIZE={len(got.data)}"]
    assert got.rcpts == [("alice@example.net", ["NOTIFY=FAILURE,DELAY"]), ("bob@example.net", ["NOTIFY=FAILURE,DELAY"])]
    assert got.data.endswith(HTML_NO_SUBJECT)
    head = got.data[: -len(HTML_NO_SUBJECT)]
    assert head.startswith(b"Received: from ") and f"(released from quarantine {b})".encode() in head
    assert b"by relay.test (sendwarden) with ESMTP id " in head
    assert [e["event"] for e in r.events()] == ["quarantine_released"]

    assert qenv.status(b) == "released"
    doc = json.loads((await qenv.cli("quarantine", "list", "--json", "--status", "released")).out)
    assert doc["id"] == b and doc["released_by"] == "alice"
    shown = await qenv.cli("quarantine", "show", b)
    assert "released       alice: receipt, checked | upstream: 250 2.0.0 Ok: queued as SINK1" in shown.out

    # A second release is idempotent: nothing is sent again.
    again = await qenv.cli("quarantine", "release", b)
    assert again.code == 0 and "already released by alice" in again.out
    assert len(sink.received) == 1
    # Only the held one is left to review.
    assert [json.loads(x)["id"] for x in (await qenv.cli("quarantine", "list", "--json")).out.splitlines()] == [a]


async def test_release_keeps_smtputf8_and_8bit(qenv: QEnv, sink) -> None:
    raw = "From: Café <café@shop.example.com>\r\nTo: jürgen@example.de\r\nSubject: Grüße\r\n\r\nSchöne Grüße\r\n".encode()
    hold_id = await qenv.send("café@shop.example.com", ["jürgen@example.de"], raw, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    shown = await qenv.cli("quarantine", "show", hold_id)
    assert "MAIL FROM:<café@shop.example.com> SMTPUTF8" in shown.out and "RCPT TO:<j***@example.de>" in shown.out
    r = await qenv.cli("quarantine", "release", hold_id)
    assert r.code == 0, r.err
    [got] = sink.received
    assert "SMTPUTF8" in got.mail_params and "BODY=8BITMIME" in got.mail_params
    assert got.mail_from == "café@shop.example.com" and got.rcpts[0][0] == "jürgen@example.de"
    assert got.data.endswith(raw) and "\r\n\tfor <jürgen@example.de>;".encode() in got.data


async def test_racing_releases_send_exactly_once(qenv: QEnv, sink) -> None:
    a, _ = await fill(qenv)
    sink.behaviour.data_delay = 1.0  # keep the first release in flight while the others claim
    runs = await asyncio.gather(*(qenv.cli("quarantine", "release", a, "--as", f"op{n}") for n in range(4)))
    assert len(sink.received) == 1
    assert qenv.status(a) == "released"
    winners = [r for r in runs if "released: 250" in r.out]
    assert len(winners) == 1
    for r in runs:
        if r is winners[0]:
            continue
        # Lost the race: either saw the release in flight (exit 2) or already done (exit 0).
        assert (r.code == 2 and "being released by op" in r.err) or (r.code == 0 and "already released" in r.out), (r.out, r.err)


async def test_a_refused_release_fails_and_the_message_stays_held(qenv: QEnv, sink) -> None:
    a, _ = await fill(qenv)
    sink.behaviour.data_end = "452 4.3.1 Insufficient system storage"
    r = await qenv.cli("quarantine", "release", a, "--reason", "try")
    assert r.code == 2
    assert "FAILED" in r.err and "452 4.3.1 Insufficient system storage" in r.err
    assert "released" not in r.out
    assert sink.received == [] and qenv.status(a) == "held"
    [failed] = [e for e in r.events() if e["event"] == "quarantine_release_failed"]
    assert failed["upstream_reply"].startswith("452") and failed["id"] == a

    sink.behaviour.data_end = ""  # the upstream recovers: the claim was given back, so it can go
    ok = await qenv.cli("quarantine", "release", a)
    assert ok.code == 0 and len(sink.received) == 1 and qenv.status(a) == "released"


async def test_a_release_to_an_unreachable_upstream_fails(qenv: QEnv, sink, tmp_path) -> None:
    a, _ = await fill(qenv)
    await sink.stop()
    r = await qenv.cli("quarantine", "release", a)
    assert r.code == 2 and "FAILED" in r.err
    assert qenv.status(a) == "held"


async def test_recheck_applies_the_current_policy(qenv: QEnv, sink, tmp_path) -> None:
    a, _ = await fill(qenv)
    still = await qenv.cli("quarantine", "release", a, "--recheck")
    assert still.code == 2 and "REFUSED BY POLICY" in still.err and "unsubscribe.header_missing" in still.err
    assert sink.received == [] and qenv.status(a) == "held"

    lenient = tmp_path / "lenient.toml"
    lenient.write_text(LENIENT_POLICY, encoding="utf-8")
    config = tmp_path / "lenient-config.toml"
    config.write_text(config_toml(tmp_path, sink.url, lenient, store=qenv.store), encoding="utf-8")
    ok = await qenv.cli("quarantine", "release", a, "--recheck", config=config)
    assert ok.code == 0, ok.err
    [got] = sink.received
    assert b"X-Sendwarden-Findings: unsubscribe.header_missing" in got.data  # the relay's tag header too


async def test_delete_removes_bytes_and_addresses(qenv: QEnv, sink) -> None:
    a, b = await fill(qenv)
    r = await qenv.cli("quarantine", "delete", b, "--reason", "spam run", "--as", "dave")
    assert r.code == 0 and f"{b}: deleted" in r.out
    assert qenv.stored(b) is None
    assert qenv.sql("SELECT rcpts, rcpt_count FROM held WHERE id=?", b) == [("[]", 2)]
    doc = json.loads((await qenv.cli("quarantine", "list", "--json", "--status", "deleted")).out)
    assert doc["id"] == b and doc["deleted_by"] == "dave" and doc["rcpt_count"] == 2
    shown = await qenv.cli("quarantine", "show", b)
    assert "addresses removed" in shown.out and "deleted        dave: spam run" in shown.out
    rel = await qenv.cli("quarantine", "release", b)
    assert rel.code == 2 and "deleted by dave" in rel.err and sink.received == []
    again = await qenv.cli("quarantine", "delete", b)
    assert again.code == 0 and "already deleted" in again.out


async def test_purge_honours_age_and_dry_run(qenv: QEnv) -> None:
    a, b = await fill(qenv)
    qenv.sql("UPDATE held SET created = created - 40 * 86400 WHERE id = ?", a)  # `a` was held 40 days ago
    dry = await qenv.cli("quarantine", "purge", "--older-than", "30d", "--dry-run")
    assert dry.code == 0 and f"would remove {a}" in dry.out and b not in dry.out
    assert qenv.stored(a) is not None and qenv.status(a) == "held"

    none = await qenv.cli("quarantine", "purge", "--older-than", "41d")
    assert "removed 0 message(s)" in none.out and qenv.status(a) == "held"

    done = await qenv.cli("quarantine", "purge")  # the config's retention: 30d
    assert done.code == 0 and f"removed {a}" in done.out and "removed 1 message(s) held more than 30d ago" in done.out
    assert qenv.stored(a) is None
    assert qenv.sql("SELECT count(*) FROM held WHERE id = ?", a)[0][0] == 0
    assert qenv.sql("SELECT count(*) FROM events WHERE hold_id = ?", a)[0][0] == 0
    assert qenv.stored(b) is not None and qenv.status(b) == "held"
    assert [e["event"] for e in done.events()] == ["quarantine_purged"]


BAD_IDS = ["../../etc/passwd", "../index.sqlite3", "/etc/passwd", "0193abc", "0" * 23 + "/",
           "0193ABCDEF0123456789ABCD", "%2e%2e%2f", ""]


async def test_bad_and_path_like_ids_are_refused(qenv: QEnv, capsys) -> None:
    await fill(qenv)
    for action, bad in (("show", "../../etc/passwd"), ("release", "../index.sqlite3")):
        r = await qenv.cli("quarantine", action, bad)
        assert r.code == 1 and "not a quarantine id" in r.err and r.out == "", (action, bad, r.err)
    # The whole matrix in-process (the ID is refused before any file or network access).
    capsys.readouterr()  # the relay's own log lines so far
    for bad in BAD_IDS:
        for action in ("show", "release", "delete"):
            assert main(["quarantine", action, bad, "--config", str(qenv.config)]) == 1
            out, err = capsys.readouterr()
            assert "not a quarantine id" in err and out == "", (action, bad, err)
    assert qenv.stored_count() == 2


async def test_unknown_id_is_a_clear_error(qenv: QEnv, sink) -> None:
    await fill(qenv)
    unknown = "%012x" % int(time.time() * 1000) + "0123456789ab"
    shown = await qenv.cli("quarantine", "show", unknown)
    assert shown.code == 1 and "no such message in the quarantine" in shown.err
    rel = await qenv.cli("quarantine", "release", unknown)
    assert rel.code == 1 and "no such message" in rel.err and sink.received == []


async def test_relayed_message_is_not_held(qenv: QEnv, sink) -> None:
    import aiosmtplib

    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=qenv.relay.port, start_tls=False)
    await client.connect()
    _, text = await client.sendmail("news@shop.example.com", ["reader@example.org"], COMPLIANT)
    await client.quit()
    assert "relayed" in text and len(sink.received) == 1
    r = await qenv.cli("quarantine", "list", "--status", "all", "--json")
    assert r.out == ""


@pytest.mark.parametrize("shared", [False, True], ids=["local", "shared"])
async def test_release_passes_the_held_client_on_with_xforward(request, tmp_path, start_relay, sink, cli_env,
                                                                shared: bool) -> None:
    """The MTA logs the client that sent the message, as the quarantine recorded it, not the
    machine the reviewer released it from."""
    import aiosmtplib

    store = request.getfixturevalue("pg_url") if shared else ""
    env = await make_env(tmp_path, start_relay, sink, cli_env, relay_extra={"relay_networks": ["127.0.0.0/8"]},
                         store=store)
    sink.behaviour.xforward = "NAME ADDR PROTO HELO"
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=env.relay.port, start_tls=False,
                             local_hostname="app.example.com", source_address=("127.0.0.2", 0))
    await client.connect()
    _, text = await client.sendmail("news@shop.example.com", ["reader@example.org"], PLAIN)
    await client.quit()
    hold_id = text.split("id=")[1].split()[0]
    r = await env.cli("quarantine", "release", hold_id)
    assert r.code == 0, r.err
    assert len(sink.received) == 1
    assert [c for c in sink.commands if c.startswith("XFORWARD")] == [
        "XFORWARD NAME=[UNAVAILABLE] ADDR=127.0.0.2 PROTO=ESMTP HELO=app.example.com"]
