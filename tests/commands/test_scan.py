"""`sendwarden scan`: the relay's own transaction code, offline by default (saying what it skipped) or with
--online lookups, with a stable JSON shape and exit statuses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from proxy.replies import Replies
from tests.conftest import ROOT, SENDWARDEN


def scan(*args: str, stdin: bytes | None = None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*SENDWARDEN, "scan", *args], input=stdin, capture_output=True, env=env, timeout=60)


def test_scan_json_shape_and_exit_status_for_reject(cli_env) -> None:
    out = scan("--json", str(ROOT / "examples" / "plain.eml"), env=cli_env)
    assert out.returncode == 3, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) == {"action", "stream", "smtp", "findings", "rcpts_refused", "skipped"}
    assert "dkim" in doc["skipped"] and doc["rcpts_refused"] == []  # offline: nothing looked up, and it says so
    assert doc["action"] == "reject" and doc["stream"] == "marketing"
    refused = Replies.policy_reject([], "")
    assert (doc["smtp"]["code"], doc["smtp"]["enhanced"]) == (refused.code, refused.enhanced)
    assert isinstance(doc["smtp"]["text"], str) and "unsubscribe.header_missing" in doc["smtp"]["text"]
    assert doc["findings"] == [{"rule": "unsubscribe.header_missing", "action": "reject", "detail": "no List-Unsubscribe header"}]


def test_scan_relay_exit_zero_from_stdin(cli_env) -> None:
    out = scan("--json", "-", stdin=(ROOT / "examples" / "compliant.eml").read_bytes(), env=cli_env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["action"] == "relay" and doc["findings"] == [] and doc["smtp"]["code"] == Replies.would_relay().code


def test_scan_quarantine_exit_two(cli_env, tmp_path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[actions]\n"unsubscribe.*" = "quarantine"\n')
    out = scan("--json", "--policy", str(policy), str(ROOT / "examples" / "plain.eml"), env=cli_env)
    assert out.returncode == 2
    assert json.loads(out.stdout)["smtp"]["enhanced"] == "2.6.0"


def test_scan_stream_from_mail_from(cli_env, tmp_path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[streams.transactional]\nkind = "transactional"\nsenders = ["*@receipts.example.com"]\n')
    out = scan("--json", "--policy", str(policy), "--mail-from", "r@receipts.example.com", str(ROOT / "examples" / "plain.eml"), env=cli_env)
    assert out.returncode == 0 and json.loads(out.stdout)["stream"] == "transactional"


def test_scan_errors_are_one_line_without_traceback(cli_env, tmp_path) -> None:
    out = scan(str(tmp_path / "missing.eml"), env=cli_env)
    assert out.returncode == 1
    note, error = out.stderr.decode().strip().splitlines()
    assert note.startswith("sendwarden: using the embedded development configuration")
    assert error == f"sendwarden: {tmp_path / 'missing.eml'}: No such file or directory"
    bad = tmp_path / "bad.toml"
    bad.write_text("[policy]\nmode = 3\n")
    out = scan("--policy", str(bad), str(ROOT / "examples" / "plain.eml"), env=cli_env)
    assert out.returncode == 78 and b"Traceback" not in out.stderr  # EX_CONFIG
    assert f"{bad}:2: policy.mode: expected \"enforce\" or \"monitor\"" in out.stderr.decode()


def test_scan_survives_garbage(cli_env) -> None:
    garbage = bytes(range(256)) * 50 + b"\r\n\r\n--\r\nContent-Type: multipart/mixed; boundary=\r\n"
    out = scan("--json", "-", stdin=garbage, env=cli_env)
    assert out.returncode in (0, 2, 3), out.stderr
    assert json.loads(out.stdout)["action"] in ("relay", "quarantine", "reject")


def test_policy_check_command(cli_env) -> None:
    out = subprocess.run([*SENDWARDEN, "policy", "check", str(ROOT / "policies" / "default.toml")],
                         capture_output=True, env=cli_env, timeout=60)
    assert out.returncode == 0
    text = out.stdout.decode()
    assert "unsubscribe.header_missing" in text and text.rstrip().endswith(": ok")


def test_scan_several_inputs_maildir_mbox_and_a_summary(cli_env, tmp_path) -> None:
    plain, compliant = (ROOT / "examples" / "plain.eml").read_bytes(), (ROOT / "examples" / "compliant.eml").read_bytes()
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new" / "1").write_bytes(compliant)
    (maildir / "cur" / "2:2,S").write_bytes(compliant)
    (maildir / "tmp" / "3").write_bytes(plain)  # still being delivered: not a message yet
    box = tmp_path / "sent.mbox"
    box.write_bytes(b"From news@shop.example.com Thu Jan  1 00:00:00 2026\n" + compliant + b"\n"
                    b"From news@shop.example.com Thu Jan  1 00:00:01 2026\n" + plain)
    out = scan(str(maildir), str(box), env=cli_env)
    lines = out.stdout.decode().splitlines()
    assert out.returncode == 3, out.stderr  # the strongest verdict: reject
    assert [x.split(": ")[0] for x in lines if not x.startswith(" ")][:-1] == [
        f"{maildir}/new/1", f"{maildir}/cur/2:2,S", f"{box}#1", f"{box}#2"]
    assert lines[-1] == "4 message(s): 3 relay, 0 quarantine, 1 reject, 0 tempfail, 0 unreadable"

    out = scan("--json", str(maildir), str(tmp_path / "missing.eml"), env=cli_env)
    docs = [json.loads(x) for x in out.stdout.decode().splitlines()]
    assert [d["file"] for d in docs] == [f"{maildir}/new/1", f"{maildir}/cur/2:2,S"]
    assert out.stderr.decode().splitlines()[-1] == "3 message(s): 2 relay, 0 quarantine, 0 reject, 0 tempfail, 1 unreadable"
    assert out.returncode == 1  # one input could not be read
    # A single mbox with one message, like a single file, keeps the single-message output.
    one = tmp_path / "one.mbox"
    one.write_bytes(b"From x@example.com Thu Jan  1 00:00:00 2026\n" + compliant)
    out = scan(str(one), env=cli_env)
    assert out.returncode == 0 and out.stdout.decode().startswith(f"relay (stream marketing): {Replies.would_relay()}")



def test_scan_online_screens_recipients_against_the_store_as_the_relay_does(cli_env, tmp_path: Path) -> None:
    config = tmp_path / "sendwarden.toml"
    # No resolver outside the machine: recipient domains are not resolved (tests/transaction has those).
    config.write_text('state_dir = "var"\n[recipients]\nverify_domains = false\n')
    policy = tmp_path / "p.toml"
    policy.write_text('[actions]\n"optout.*" = "reject"\n')
    rows = tmp_path / "gone.csv"
    rows.write_text("address,scope,reason,source,created\r\ngone@example.org,global,unsubscribe,test,\r\n")
    imported = subprocess.run([*SENDWARDEN, "suppress", "import", "--create", "--config", str(config), str(rows)], env=cli_env,
                              capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
    args = ("--json", "--config", str(config), "--policy", str(policy), "--mail-from", "news@shop.example.com",
            "--rcpt", "gone@example.org", "--rcpt", "reader@example.org", str(ROOT / "examples" / "compliant.eml"))

    offline = json.loads(scan(*args, env=cli_env).stdout)
    assert offline["rcpts_refused"] == [] and "recipient_state" in offline["skipped"]

    out = scan("--online", *args, env=cli_env)
    assert out.returncode == 0, out.stderr
    online = json.loads(out.stdout)
    assert online["skipped"] == []
    [refused] = online["rcpts_refused"]
    assert refused["address"] == "gone@example.org"
    assert refused["smtp"] == Replies.recipient_refused("optout.suppressed", "x").as_dict() | {"text": refused["smtp"]["text"]}
    assert "optout.suppressed" in refused["smtp"]["text"]
    assert online["action"] == "relay"  # the other recipient still gets it


def test_scan_text_names_the_skipped_lookups(cli_env) -> None:
    out = scan(str(ROOT / "examples" / "compliant.eml"), env=cli_env)
    assert b"skipped lookups (--online runs them): " in out.stdout and b"dkim" in out.stdout
