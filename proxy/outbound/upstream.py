"""Forwarding to the upstream MTA, and mapping its replies to ours.

The client's reply is the upstream's: a 2xx becomes our 250 with the upstream's text (its queue
id) included; a 4xx, a timeout or an unreachable upstream becomes 451 4.4.1 (the client retries,
nothing is lost); a 5xx is passed through. A message is only sent when the upstream accepted
every recipient: one refused recipient aborts the transaction with that recipient's reply, so
no recipient is ever dropped silently after we said 250 to it at RCPT.

Ambiguity: if the upstream drops the connection after the end of data but before its reply,
the message may or may not be queued there. sendwarden answers 451, so the client retries: a
possible duplicate is better than a possible loss (RFC 5321 §6.1 makes the same choice).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog

from proxy.config import Config, parse_hostport
from proxy.replies import Replies, Reply
from proxy.outbound import xforward
from proxy.outbound.client import ClientError, Connection, Stale, open_connection
from proxy.outbound.xforward import Origin

log = structlog.get_logger("sendwarden.relay")
_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\s+(.*)$", re.S)
IDLE_MAX = 30.0  # seconds a pooled connection may sit unused before it is dropped


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    dsn: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to relay: the envelope and the exact bytes (not dot-stuffed, CRLF lines):
    `head`, the header lines the relay prepends (trace, findings, DKIM-Signature), then `data`,
    the message as it arrived. They are written one after the other, never joined: for a
    20 MB message a join is 20 MB more memory and a copy on the event loop."""

    mail_from: str
    recipients: tuple[Recipient, ...]
    data: bytes
    smtputf8: bool = False
    body_8bit: bool = False
    dsn: dict[str, str] = field(default_factory=dict)
    origin: Origin | None = None  # the real client, passed on with XFORWARD where offered
    head: bytes = b""

    @property
    def size(self) -> int:
        return len(self.head) + len(self.data)


@dataclass(frozen=True, slots=True)
class Result:
    """What happened upstream: the reply for our client, and whether the upstream has it."""

    reply: Reply
    delivered: bool
    upstream: str  # the upstream's own reply, for the audit log
    code: int | None = None  # the upstream's reply code; None when it never answered


class Upstream(Protocol):
    async def send(self, msg: Outgoing, queue_id: str) -> Result: ...

    async def probe(self) -> bool: ...

    async def close(self) -> None: ...


def _split_reply(code: int, message: str) -> tuple[str, str]:
    text = " ".join(message.split())
    m = _ENHANCED.match(text)
    if m:
        return m.group(1), m.group(2)
    return f"{str(code)[0]}.0.0", text


def map_refusal(code: int, message: str) -> Reply:
    """An upstream refusal as our client's reply: 4xx → 451 4.4.1, 5xx passed through."""
    enhanced, text = _split_reply(code, message)
    if 500 <= code < 600:
        return Replies.upstream_refused(code, enhanced, text)
    return Replies.upstream_temporary(code, f"{enhanced} {text}")


class SmtpUpstream:
    """An MTA reached over SMTP, with a small pool of reused connections (proxy/outbound/client.py:
    pipelined transactions, the message written as it will go on the wire)."""

    def __init__(
        self,
        url: str,
        *,
        helo: str,
        starttls: str = "opportunistic",
        verify: bool = True,
        pool_size: int = 4,
        connect_timeout: float = 15,
        command_timeout: float = 60,
        data_timeout: float = 120,
        xforward: bool = True,
    ) -> None:
        self.host, self.port = parse_hostport(url[len("smtp://"):].rstrip("/"), 25)
        self.helo = helo
        self.starttls = starttls
        self.verify = verify
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.data_timeout = data_timeout
        self.xforward = xforward
        self._idle: list[tuple[Connection, float]] = []
        self._tls = ssl.create_default_context()
        if not verify:
            self._tls.check_hostname = False
            self._tls.verify_mode = ssl.CERT_NONE

    def __repr__(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    async def _connect(self) -> Connection:
        conn = await open_connection(self.host, self.port, helo=self.helo, connect_timeout=self.connect_timeout,
                                     command_timeout=self.command_timeout)
        try:
            if self.starttls != "off" and conn.supports("STARTTLS"):
                await conn.starttls(self._tls, self.host, self.connect_timeout)
                await conn.hello(self.helo)
            elif self.starttls == "required":
                raise ClientError("upstream does not offer STARTTLS, and the config requires it")
        except BaseException:
            conn.close()
            raise
        return conn

    async def _acquire(self) -> Connection:
        """A connection ready for a transaction: a pooled one that is still open (it may turn
        out dead on first use: the caller retries once, see `send`), else a new one."""
        now = time.monotonic()
        while self._idle:
            conn, since = self._idle.pop()
            if conn.is_open and now - since <= IDLE_MAX:
                return conn
            conn.close()
        return await self._connect()

    def _release(self, conn: Connection, reusable: bool) -> None:
        if reusable and conn.is_open and len(self._idle) < self.pool_size:
            self._idle.append((conn, time.monotonic()))
        else:
            conn.close()

    def _envelope(self, conn: Connection, msg: Outgoing) -> tuple[str, list[tuple[str, str]]]:
        opts = []
        if conn.supports("SIZE"):
            opts.append(f"SIZE={msg.size}")
        if msg.body_8bit and conn.supports("8BITMIME"):
            opts.append("BODY=8BITMIME")
        if msg.smtputf8:
            opts.append("SMTPUTF8")
        dsn = conn.supports("DSN")
        if msg.dsn and dsn:
            opts.extend(f"{k}={v}" for k, v in msg.dsn.items())
        sender = "" if msg.mail_from == "<>" else msg.mail_from
        rcpts = []
        for rcpt in msg.recipients:
            params = "".join(f" {k}={v}" for k, v in rcpt.dsn.items()) if dsn else ""
            rcpts.append((f"<{rcpt.address}>{params}", rcpt.address))
        return " ".join([f"<{sender}>", *opts]), rcpts

    def _xforward(self, conn: Connection, msg: Outgoing) -> list[str]:
        """XFORWARD commands for the message's client, when on and the upstream offers it."""
        if not self.xforward or msg.origin is None or not conn.supports("XFORWARD"):
            return []
        return xforward.commands(conn.extensions["XFORWARD"], msg.origin)

    async def send(self, msg: Outgoing, queue_id: str) -> Result:
        for attempt in (1, 2):
            try:
                conn = await self._acquire()
            except (ClientError, OSError, TimeoutError, ssl.SSLError) as exc:
                reason = str(exc) or type(exc).__name__
                log.warning("upstream_unavailable", queue_id=queue_id, upstream=repr(self), error=reason)
                return Result(Replies.upstream_unavailable(reason), False, reason)
            reusable = False
            try:
                if msg.smtputf8 and not conn.supports("SMTPUTF8"):
                    reusable = True
                    return Result(Replies.upstream_no_smtputf8(), False, "no SMTPUTF8", 550)
                mail, rcpts = self._envelope(conn, msg)
                outcome = await conn.transaction(mail, rcpts, msg.data, self.data_timeout, self._xforward(conn, msg),
                                               head=msg.head)
                reusable = conn.is_open
                if outcome.xforward:
                    log.warning("upstream_xforward_refused", queue_id=queue_id, upstream=repr(self), reply=outcome.xforward)
                text = f"{outcome.code} {' '.join(outcome.text.split())}"
                if outcome.delivered:
                    return Result(Replies.relayed(queue_id, text), True, text, outcome.code)
                log.info("upstream_refused", queue_id=queue_id, code=outcome.code, text=outcome.text, stage=outcome.stage)
                return Result(map_refusal(outcome.code, outcome.text), False, text, outcome.code)
            except Stale as exc:
                if attempt == 1:
                    log.info("upstream_stale_connection", queue_id=queue_id, upstream=repr(self), error=str(exc))
                    continue  # nothing was sent: a fresh connection is safe
                reason = str(exc)
            except ValueError as exc:  # an envelope that cannot be put on the wire
                reusable = True
                return Result(Replies.upstream_address_refused(str(exc)), False, str(exc), 553)
            except (ClientError, OSError, TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
            finally:
                self._release(conn, reusable)
            log.warning("upstream_failed", queue_id=queue_id, upstream=repr(self), error=reason)
            return Result(Replies.upstream_unavailable(reason), False, reason)
        raise AssertionError("unreachable")  # pragma: no cover

    async def probe(self) -> bool:
        """Whether the upstream answers now: NOOP on a pooled connection, else a new one."""
        try:
            conn = await self._acquire()
        except (ClientError, OSError, TimeoutError):
            return False
        try:
            ok = (await conn.command("NOOP", timeout=min(self.command_timeout, 5)))[0] == 250
        except (ClientError, OSError, TimeoutError):
            ok = False
        self._release(conn, ok)
        return ok or await self._fresh_probe()

    async def _fresh_probe(self) -> bool:
        try:
            conn = await self._connect()
        except (ClientError, OSError, TimeoutError):
            return False
        self._release(conn, True)
        return True

    async def close(self) -> None:
        while self._idle:
            conn, _ = self._idle.pop()
            await conn.quit()


class MaildirUpstream:
    """A development sink: each relayed message lands as a file in a Maildir (new/), written
    durably (fsync, then rename) before the 250, like a real local delivery agent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        self._host = socket.gethostname().replace("/", "_").replace(":", "_")

    def __repr__(self) -> str:
        return f"maildir:{self.path}"

    def _deliver(self, msg: Outgoing) -> str:
        name = f"{time.time():.6f}.{secrets.token_hex(6)}.{self._host}"
        rcpts = ", ".join(r.address for r in msg.recipients)
        sender = "" if msg.mail_from == "<>" else msg.mail_from
        trace = f"Return-Path: <{sender}>\r\nDelivered-To: {rcpts}\r\n".encode("utf-8", "surrogateescape")
        tmp = self.path / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(trace)
                fh.write(msg.head)
                fh.write(msg.data)
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(tmp, self.path / "new" / name)
            dfd = os.open(self.path / "new", os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return name

    async def send(self, msg: Outgoing, queue_id: str) -> Result:
        try:
            name = await asyncio.to_thread(self._deliver, msg)
        except OSError as exc:
            log.error("maildir_failed", queue_id=queue_id, error=str(exc))
            return Result(Replies.upstream_unavailable(f"maildir: {exc.strerror or exc}"), False, str(exc))
        text = str(Replies.delivered_to_file(name))
        return Result(Replies.relayed(queue_id, text), True, text, 250)

    async def probe(self) -> bool:
        return os.access(self.path / "new", os.W_OK)

    async def close(self) -> None:
        return None


def make_upstream(url: str, *, helo: str, starttls: str, verify: bool, pool_size: int,
                  connect_timeout: float, command_timeout: float, data_timeout: float,
                  xforward: bool = True) -> Upstream:
    if url.startswith("maildir:"):
        return MaildirUpstream(Path(url[len("maildir:"):]))
    return SmtpUpstream(
        url, helo=helo, starttls=starttls, verify=verify, pool_size=pool_size,
        connect_timeout=connect_timeout, command_timeout=command_timeout, data_timeout=data_timeout,
        xforward=xforward,
    )


def upstream_for(config: Config) -> Upstream:
    """The upstream the service configuration names, with its timeouts: the relay and the
    quarantine's release share it, so a released message takes the same way out."""
    f = config.file
    return make_upstream(
        config.upstream_url(),
        helo=f.upstream.helo or f.hostname,
        starttls=f.upstream.starttls,
        verify=f.upstream.verify,
        pool_size=f.upstream.pool_size,
        connect_timeout=f.timeouts.upstream_connect,
        command_timeout=f.timeouts.upstream_command,
        data_timeout=f.timeouts.upstream_data,
        xforward=f.upstream.xforward,
    )


def upstream_budget(config: Config) -> float:
    """How long one message may take upstream: connect, three commands and the data."""
    t = config.file.timeouts
    return t.upstream_connect + 3 * t.upstream_command + t.upstream_data
