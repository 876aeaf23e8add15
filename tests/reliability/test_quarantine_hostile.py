"""The quarantine is where the service user writes and an admin reads: nothing planted there
may make the review CLI read another file, and no held message may crash it or deceive the
reviewer's screen. Each probe goes through the real relay (to hold a message) and the real CLI.

- a symlink, a hard link or a file of another owner in place of a held file: `show --raw`
  and `release` refuse it (nothing of the target printed or mailed);
- a symlink in place of the lock file or the index: the CLI refuses to open the quarantine;
- 100,000 nested <div>: `show` renders it (no RecursionError), in bounded time, up to its
  size budget (and says where the view ends);
- bidi controls (U+202E) and other invisible characters: shown as <U+XXXX>, never as they are;
- `show --raw` on a terminal: refused unless --force.
"""

from __future__ import annotations

import asyncio
import os
import pty
import time
from email.header import Header

import pytest

from tests.conftest import SENDWARDEN
from tests.reliability.conftest import record
from tests.support.quarantine_env import HTML_NO_SUBJECT, QEnv, make_env

SECRET = b"root:$6$planted-target-of-a-link:19000:0:99999:7:::\n"


@pytest.fixture
async def qenv(tmp_path, start_relay, sink, cli_env) -> QEnv:
    return await make_env(tmp_path, start_relay, sink, cli_env)


def with_html(html: bytes, subject: str = "") -> bytes:
    head, _, _ = HTML_NO_SUBJECT.partition(b"--zz\r\n")
    if subject:
        head = head.replace(b"Subject: \r\n", f"Subject: {Header(subject, 'utf-8').encode()}\r\n".encode())
    return head + b"--zz\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html + b"\r\n--zz--\r\n"


async def hold(qenv: QEnv, data: bytes = HTML_NO_SUBJECT) -> str:
    return await qenv.send("billing@receipts.example.com", ["alice@example.net"], data)


@pytest.mark.parametrize("plant", ["symlink", "hardlink", "other_owner"])
async def test_a_planted_file_in_place_of_a_held_message_is_neither_shown_nor_mailed(qenv: QEnv, sink, tmp_path, plant) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    hold_id = await hold(qenv)
    held = qenv.qdir / "msg" / f"{hold_id}.eml"
    if plant == "symlink":
        held.unlink()
        held.symlink_to(secret)
    elif plant == "hardlink":
        held.unlink()
        os.link(secret, held)
    else:
        if os.geteuid() != 0:
            pytest.skip("changing a file's owner needs root")
        held.unlink()
        held.write_bytes(SECRET)
        os.chown(held, 65534, 65534)
    shown = await qenv.cli("quarantine", "show", hold_id, "--raw")
    assert shown.code != 0 and SECRET.decode() not in shown.out, shown
    assert "refusing" in shown.err, shown.err
    released = await qenv.cli("quarantine", "release", hold_id)
    assert released.code != 0 and "refusing" in released.err, released
    assert sink.received == []
    record(f"quarantine planted {plant}", show_exit=shown.code, release_exit=released.code,
           files_read_through_link=0, error=shown.err.strip().splitlines()[-1][-120:])


@pytest.mark.parametrize("name", [".lock", "index.sqlite3"])
async def test_a_symlinked_lock_file_or_index_is_refused(qenv: QEnv, tmp_path, name) -> None:
    await hold(qenv)
    await qenv.relay.stop()  # the relay holds the lock: plant while nobody uses the quarantine
    target = tmp_path / f"target-{name}"
    path = qenv.qdir / name
    os.rename(path, target)
    path.symlink_to(target)
    before = target.read_bytes()
    r = await qenv.cli("quarantine", "list")
    assert r.code != 0 and "symbolic link" in r.err, r
    assert target.read_bytes() == before


async def test_show_renders_100000_nested_divs(qenv: QEnv) -> None:
    n = 100_000
    lines = n // 100  # SMTP lines stay under 998 characters
    html = (b"<html><body><p>Your receipt</p>" + (b"<div>" * 100 + b"\r\n") * lines + b"deep inside <a href='https://receipts.example.com/x'>here</a>"
            + (b"</div>" * 100 + b"\r\n") * lines + b"</body></html>")
    hold_id = await hold(qenv, with_html(html))
    t = time.perf_counter()
    r = await qenv.cli("quarantine", "show", hold_id, timeout=120)
    seconds = time.perf_counter() - t
    assert r.code == 0, r.err[-2000:]
    assert "Your receipt" in r.out and "the review view ends here" in r.out
    record("quarantine show 100,000 nested div", seconds=round(seconds, 1), html_bytes=len(html))


async def test_bidi_and_invisible_characters_are_shown_for_what_they_are(qenv: QEnv) -> None:
    name = Header("Invoice \u202egpj.exe", "utf-8").encode()
    html = "<p>Open the attachment\u200b now: \u2066file\u2069 <a href='https://receipts.example.com/\u202ex'>pay</a></p>"
    data = with_html(html.encode()).replace(b"\r\n--zz--\r\n", (
        "\r\n--zz\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAA\r\n--zz--\r\n").encode())
    hold_id = await hold(qenv, data)
    r = await qenv.cli("quarantine", "show", hold_id)
    assert r.code == 0, r.err
    assert "Invoice <U+202E>gpj.exe" in r.out, r.out
    assert "attachment<U+200B> now: <U+2066>file<U+2069>" in r.out
    assert [c for c in r.out if c in "\u202e\u200b\u2066\u2069"] == []


async def test_raw_refuses_a_terminal_unless_forced(qenv: QEnv) -> None:
    hold_id = await hold(qenv, with_html(b"<p>\x1b]0;pwned\x07\x1b[2J cleared</p>"))

    async def on_terminal(*extra: str) -> tuple[int, bytes]:
        master, slave = pty.openpty()
        proc = await asyncio.create_subprocess_exec(
            *SENDWARDEN, "quarantine", "show", hold_id, "--raw", *extra, "--config", str(qenv.config),
            env=qenv.env, stdout=slave, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
        os.close(slave)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        os.set_blocking(master, False)
        out = b""
        try:
            while chunk := os.read(master, 65536):
                out += chunk
        except OSError:
            pass
        os.close(master)
        assert proc.returncode is not None
        return proc.returncode, out + err

    code, output = await on_terminal()
    assert code != 0 and b"not to a terminal" in output and b"\x1b]0;pwned" not in output
    code, output = await on_terminal("--force")
    assert code == 0 and b"\x1b]0;pwned" in output
    piped = await qenv.cli("quarantine", "show", hold_id, "--raw")
    assert piped.code == 0 and "\x1b]0;pwned" in piped.out
