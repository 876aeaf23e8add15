"""A real Postfix (Debian's `postfix` package) as a throw-away instance for tests.

Everything lives in one temporary directory: its own config_directory (main.cf, master.cf),
queue_directory, data_directory and log file. It listens only on a loopback port chosen at
start (never port 25), relays everything to a loopback sink through `relayhost`, uses no DNS,
and is started and stopped with Postfix's own commands (`postfix -c DIR start|stop`).

Postfix must run as root here (master(8) refuses otherwise) with the `postfix` user and the
`postdrop` group that the Debian package creates. Its daemons drop privileges to `postfix`
but keep working inside the queue directory, which master enters while still root; the
instance directory is nevertheless made traversable (0755) so that nothing depends on that.

There is no syslog daemon here (no /dev/log), so Postfix logs to `maillog_file` in the instance
directory (Postfix >= 3.4, through postlogd once master runs, directly before); Postfix refuses a
maillog_file outside `maillog_file_prefixes` (default "/var, /dev/stdout"), hence that setting.
A failed start therefore reports that log, where Postfix says why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

POSTFIX = "/usr/sbin/postfix"

# Only what the tests need, with chroot off (no copies of /etc inside the queue directory).
# Service name for smtpd is the loopback address:port; postlogd writes maillog_file.
MASTER_CF = """\
{listen} inet  n       -       n       -       -       smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def free_port() -> int:
    """A loopback TCP port that is free right now (the OS picks it; never 25)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> str | None:
    """Why a Postfix instance cannot run here, or None when it can."""
    if not os.path.exists(POSTFIX):
        return "Debian package postfix is not installed (make sysdeps installs it)"
    if os.geteuid() != 0:
        return "postfix master(8) must be started as root"
    return None


@dataclass
class PostfixInstance:
    """One running Postfix, configured by `main` (extra main.cf settings) and relaying to
    `relay_port` on 127.0.0.1."""

    relay_port: int
    main: dict[str, str] = field(default_factory=dict)
    master_extra: str = ""  # more master.cf services, e.g. a second smtpd on its own port
    base: Path = field(init=False)
    port: int = field(init=False, default=0)
    running: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="sendwarden-postfix-"))
        self.base.chmod(0o755)

    @property
    def config_dir(self) -> Path:
        return self.base / "etc"

    @property
    def queue_dir(self) -> Path:
        return self.base / "spool"

    @property
    def log_file(self) -> Path:
        return self.base / "maillog"

    def settings(self) -> dict[str, str]:
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.base / "data"),
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.base),
            "myhostname": "mta.test",
            "mydomain": "test",
            "myorigin": "mta.test",
            "mydestination": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relayhost": f"[127.0.0.1]:{self.relay_port}",
            "smtp_dns_support_level": "disabled",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "biff": "no",
            "append_dot_mydomain": "no",
            "delay_warning_time": "0",
            "smtp_connect_timeout": "5s",
            "maximal_queue_lifetime": "1h",
            "bounce_queue_lifetime": "1h",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
        }
        settings.update(self.main)
        return settings

    def write_config(self) -> None:
        self.config_dir.mkdir(exist_ok=True)
        self.queue_dir.mkdir(exist_ok=True)
        self.queue_dir.chmod(0o755)
        (self.base / "data").mkdir(exist_ok=True)
        shutil.chown(self.base / "data", "postfix", "postfix")
        lines = [f"{key} = {value}" for key, value in self.settings().items()]
        (self.config_dir / "main.cf").write_text("\n".join(lines) + "\n", encoding="utf-8")
        master = MASTER_CF.format(listen=f"127.0.0.1:{self.port}") + self.master_extra
        (self.config_dir / "master.cf").write_text(master, encoding="utf-8")

    def postfix(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run the `postfix` command against this instance."""
        return subprocess.run([POSTFIX, "-c", str(self.config_dir), *args], capture_output=True, text=True,
                              timeout=timeout, check=check)

    def start(self, timeout: float = 15) -> "PostfixInstance":
        self.port = free_port()
        self.write_config()
        done = self.postfix("start", check=False)
        if done.returncode != 0:
            raise RuntimeError(f"postfix start failed ({done.returncode}): {done.stderr.strip()}\n{self.log()}")
        self.running = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"postfix did not listen on 127.0.0.1:{self.port} within {timeout}s\n{self.log()}")

    def stop(self) -> None:
        """Stop by Postfix's own command, then remove the instance directory."""
        try:
            if self.running:
                self.postfix("stop", check=False)
                self._wait_for_master_exit()
                self.running = False
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def _wait_for_master_exit(self, timeout: float = 10) -> None:
        """`postfix stop` returns before master(8) has exited; wait for its pid file to go stale."""
        pid_file = self.queue_dir / "pid" / "master.pid"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pid = int(pid_file.read_text().split()[0])
                # A zombie (exited, not yet reaped by its parent) counts as gone.
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
                return
            if state == "Z":
                return
            time.sleep(0.05)
        raise RuntimeError(f"postfix master still running {timeout}s after `postfix stop`")

    def log(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no maillog)"

    def held(self) -> list[Path]:
        """Queue files in the hold queue (where SMFIR_QUARANTINE puts a message)."""
        hold = self.queue_dir / "hold"
        return sorted(p for p in hold.rglob("*") if p.is_file()) if hold.exists() else []


async def transaction(port: int, data: bytes, rcpts: tuple[str, ...] = ("reader@example.org",),
                      helo: str = "client.test", sender: str = "news@shop.example.com") -> list[str]:
    """One SMTP transaction through the test Postfix: every reply, the last one to end of data."""
    from tests.support.smtpclient import RawClient

    client = await RawClient.connect(port)
    try:
        answers = [await client.reply(), await client.cmd(f"EHLO {helo}"), await client.cmd(f"MAIL FROM:<{sender}>")]
        answers += [await client.cmd(f"RCPT TO:<{rcpt}>") for rcpt in rcpts]
        data_reply = await client.cmd("DATA")
        answers.append(data_reply)
        if data_reply.startswith("354"):
            await client.send(data.replace(b"\r\n.", b"\r\n..") + b".\r\n")
            answers.append(await client.reply(timeout=30))
        await client.cmd("QUIT")
    finally:
        await client.close()
    return answers


async def delivered(sink: "object", count: int, timeout: float = 15) -> None:
    """Wait until the sink has received `count` messages."""
    import asyncio

    async with asyncio.timeout(timeout):
        while len(sink.received) < count:  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)
