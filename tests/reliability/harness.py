"""The accounting harness: send many messages through the relay while things break, keep a
ledger of what every client was told, then reconcile it with what the upstream sink and the
quarantine hold, message by message (by Message-ID).

The invariant, for every message:
- the client was told 250: the message is at the upstream exactly once or in the quarantine
  exactly once (more copies are allowed only when an earlier attempt of the same message was
  answered 4xx or got no answer at all, so the client rightly sent it again: a duplicate,
  counted and reported, never a loss);
- the client was told anything else: the message is in neither, unless an attempt was
  answered 4xx or got no answer (the ambiguous case, again a duplicate at most).
Every copy at the sink or in the quarantine must belong to a message that some client sent,
with exactly the bytes it sent.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib

from tests.support.sink import Sink

SENDER = "notify@shop.example.com"
MESSAGE_ID = re.compile(rb"^Message-I[dD]:\s*(<[^>\r\n]+>)", re.M | re.I)
QUEUE_ID = re.compile(r"relayed id=([0-9A-F]+)")
HOLD_ID = re.compile(r"held for review id=([0-9a-f]{24})")
RECEIVED_ID = re.compile(rb"\(sendwarden\) with E?SMTPS?A? id ([0-9A-F]+)")
BULK_BODY = b"La de da de da"  # the body smtp-source generates

# The harness policy: all mail transactional. A message with a subject is relayed, one without
# is held (subject.missing), one without From is refused (sender.from_invalid).
POLICY = """
[policy]
default_stream = "transactional"
[actions]
"sender.*" = "reject"
"subject.missing" = "quarantine"
"""
KINDS = ("relay", "quarantine", "reject")


def make_message(mid: str, kind: str, size: int = 0) -> bytes:
    """A small message of the kind the harness policy relays, holds or rejects."""
    head = [f"Message-ID: {mid}", "To: reader@example.org", f"Date: {email.utils.formatdate()}"]
    if kind != "reject":
        head.insert(0, f"From: Shop <{SENDER}>")
    if kind != "quarantine":
        head.append(f"Subject: order {mid[1:9]}")
    body = f"Your order {mid} has shipped.\r\n"
    if size > len(body):
        line = "0123456789abcdefghijklmnopqrstuvwxyz" * 2 + "\r\n"
        body += line * ((size - len(body)) // len(line))
    return ("\r\n".join(head) + "\r\n\r\n" + body).encode()


def message_id(data: bytes) -> str:
    head = data.split(b"\r\n\r\n", 1)[0]
    m = MESSAGE_ID.search(head)
    return m.group(1).decode() if m else ""


@dataclass
class Sent:
    """One message and what its client was told at each attempt ("conn" = no reply)."""

    mid: str
    kind: str
    data: bytes
    replies: list[str] = field(default_factory=list)

    @property
    def final(self) -> str:
        return self.replies[-1] if self.replies else ""

    @property
    def accepted(self) -> bool:
        return self.final.startswith("250")

    @property
    def retried_after_doubt(self) -> bool:
        """An earlier attempt was answered 4xx or not at all: a copy may exist already."""
        return any(r == "conn" or r.startswith("4") for r in self.replies[:-1])


@dataclass
class Ledger:
    sent: dict[str, Sent] = field(default_factory=dict)
    # smtp-source runs: the reply to each end of data, in order
    bulk_replies: list[str] = field(default_factory=list)

    def new(self, kind: str, size: int = 0) -> Sent:
        mid = f"<{len(self.sent):06d}.{random.getrandbits(40):010x}@harness.test>"
        s = self.sent[mid] = Sent(mid, kind, make_message(mid, kind, size))
        return s

    @property
    def attempts(self) -> int:
        return sum(len(s.replies) for s in self.sent.values()) + len(self.bulk_replies)


async def send_all(port: int, ledger: Ledger, messages: list[Sent], *, workers: int = 8,
                   tries: int = 6, backoff: float = 0.05, timeout: float = 30, stop_retrying: float = 0) -> None:
    """Send every message with a pool of client connections, the way an application would:
    retry a 4xx or a lost connection (after a pause), never a 5xx.

    `stop_retrying` > 0 keeps retrying connection failures for that many seconds (a relay that
    is being restarted), on top of `tries`.
    """
    queue: asyncio.Queue[Sent] = asyncio.Queue()
    for s in messages:
        queue.put_nowait(s)

    async def worker() -> None:
        client: aiosmtplib.SMTP | None = None
        while True:
            try:
                s = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            loop = asyncio.get_running_loop()
            deadline = loop.time() + stop_retrying
            failures = 0
            while True:
                try:
                    if client is None or not client.is_connected:
                        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=timeout)
                        await client.connect()
                    _, text = await client.sendmail(SENDER, ["reader@example.org"], s.data)
                    s.replies.append(f"250 {text}")
                    break
                except aiosmtplib.SMTPRecipientsRefused as exc:
                    reply = f"{exc.recipients[0].code} {exc.recipients[0].message}"
                except aiosmtplib.SMTPResponseException as exc:
                    reply = f"{exc.code} {exc.message}" if exc.code > 0 else "conn"
                except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
                    reply = "conn"
                s.replies.append(reply)
                if reply == "conn" or reply.startswith("421"):
                    if client is not None:
                        client.close()
                    client = None
                if reply.startswith("5"):
                    break
                failures += 1
                if failures >= tries and loop.time() >= deadline:
                    break
                await asyncio.sleep(backoff * min(failures, 4))
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
                client.close()

    await asyncio.gather(*(worker() for _ in range(workers)))


async def smtp_source(port: int, ledger: Ledger, *, messages: int, sessions: int, subject: bool = True) -> list[str]:
    """Run Postfix's smtp-source: `sessions` processes, each sending its share of `messages`
    sequentially over one connection (-d), not stopping at refusals (-A). Returns the reply to
    each end of data, read from its verbose output, and adds them to the ledger."""
    per = messages // sessions
    procs = []
    for _ in range(sessions):
        args = ["smtp-source", "-v", "-A", "-d", "-s", "1", "-m", str(per), "-f", SENDER, "-t", "reader@example.org"]
        if subject:
            args += ["-S", "bulk notice"]
        procs.append(await asyncio.create_subprocess_exec(
            *args, f"127.0.0.1:{port}", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT))
    outputs = await asyncio.gather(*(p.communicate() for p in procs))
    replies: list[str] = []
    for (out, _), proc in zip(outputs, procs, strict=True):
        lines = out.decode("utf-8", "replace").splitlines()
        after_dot = False
        for line in lines:
            text = line.removeprefix("smtp-source: ")
            if text == ".":
                after_dot = True
            elif after_dot and text.startswith("<<< "):
                replies.append(text[4:])
                after_dot = False
        assert proc.returncode == 0, "\n".join(lines[-20:])
    ledger.bulk_replies.extend(replies)
    return replies


def held_messages(quarantine_dir: Path) -> list[tuple[str, bytes]]:
    """(hold id, bytes) of every held message, read from the index and the files."""
    db_path = quarantine_dir / "index.sqlite3"
    if not db_path.exists():
        return []
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        ids = [r[0] for r in db.execute("SELECT id FROM held WHERE status = 'held'")]
    finally:
        db.close()
    out = []
    for hid in ids:
        path = quarantine_dir / "msg" / f"{hid}.eml"
        out.append((hid, path.read_bytes() if path.exists() else b""))
    return out


@dataclass
class Reconciliation:
    """What reconciling the ledger with the sink and the quarantine found."""

    messages: int = 0
    attempts: int = 0
    accepted: int = 0
    relayed: int = 0
    held: int = 0
    refused: int = 0
    gave_up: int = 0
    lost: list[str] = field(default_factory=list)  # told 250, found nowhere
    unexplained: list[str] = field(default_factory=list)  # found, but the client was only told 5xx
    duplicates: dict[str, int] = field(default_factory=dict)  # extra copies after a retry
    unexplained_duplicates: list[str] = field(default_factory=list)  # extra copies with no retry
    strangers: list[str] = field(default_factory=list)  # copies nobody sent
    altered: list[str] = field(default_factory=list)  # copies whose bytes differ
    misplaced: list[str] = field(default_factory=list)  # relayed but held, or held but relayed
    bulk_accepted: int = 0
    bulk_unmatched: list[str] = field(default_factory=list)  # a bulk 250 with no copy behind it

    @property
    def duplicate_copies(self) -> int:
        return sum(self.duplicates.values())

    def violations(self) -> dict[str, object]:
        found = {
            "accepted then lost": self.lost,
            "present after a 5xx only": self.unexplained,
            "duplicates without a retry": self.unexplained_duplicates,
            "copies nobody sent": self.strangers,
            "altered copies": self.altered,
            "relayed/held mix-ups": self.misplaced,
            "smtp-source 250 without a copy": self.bulk_unmatched,
        }
        return {k: v[:10] for k, v in found.items() if v}


def _body(data: bytes) -> bytes:
    """The message as the client sent it: drop the trace header(s) the relay prepends."""
    while data.startswith((b"Received: ", b"X-Sendwarden-")):
        end = data.find(b"\r\n", 0)
        while end != -1 and data[end + 2:end + 3] in (b"\t", b" "):
            end = data.find(b"\r\n", end + 2)
        data = data[end + 2:]
    return data


def reconcile(ledger: Ledger, sink: Sink, quarantine_dir: Path) -> Reconciliation:
    r = Reconciliation(messages=len(ledger.sent) + len(ledger.bulk_replies), attempts=ledger.attempts)
    at_sink: Counter[str] = Counter()
    sink_bodies: dict[str, list[bytes]] = {}
    bulk_queue_ids: Counter[str] = Counter()
    for got in sink.received:
        data = got.data
        mid = message_id(_body(data))
        if mid in ledger.sent:
            at_sink[mid] += 1
            sink_bodies.setdefault(mid, []).append(_body(data))
        elif BULK_BODY in data:
            m = RECEIVED_ID.search(data)
            bulk_queue_ids[m.group(1).decode() if m else ""] += 1
        else:
            r.strangers.append(mid or data[:80].decode("ascii", "replace"))
    held: Counter[str] = Counter()
    held_bodies: dict[str, list[bytes]] = {}
    bulk_held: set[str] = set()
    for hid, data in held_messages(quarantine_dir):
        mid = message_id(data)
        if mid in ledger.sent:
            held[mid] += 1
            held_bodies.setdefault(mid, []).append(data)
        elif BULK_BODY in data:
            bulk_held.add(hid)
        else:
            r.strangers.append(f"held {hid}: {mid}")

    for mid, s in ledger.sent.items():
        copies = at_sink[mid] + held[mid]
        for body in sink_bodies.get(mid, []) + held_bodies.get(mid, []):
            if body != s.data:
                r.altered.append(mid)
        if s.accepted:
            r.accepted += 1
            relayed = "relayed id=" in s.final
            r.relayed += relayed
            r.held += not relayed
            if copies == 0:
                r.lost.append(mid)
            elif (relayed and at_sink[mid] == 0) or (not relayed and held[mid] == 0):
                r.misplaced.append(mid)
        elif s.final.startswith("5"):
            r.refused += 1
            if copies and not s.retried_after_doubt:
                r.unexplained.append(mid)
        else:
            r.gave_up += 1
        if copies > 1:
            if s.retried_after_doubt:
                r.duplicates[mid] = copies - 1
            else:
                r.unexplained_duplicates.append(mid)

    # smtp-source: no Message-ID bookkeeping of its own, so reconcile by the relay's ids: every
    # 250 names a queue id (found in the trace header at the sink) or a hold id (in the index).
    ambiguous = sum(1 for step, fault, data in sink.faults if fault == "drop_queued" and BULK_BODY in data)
    for reply in ledger.bulk_replies:
        if not reply.startswith("250"):
            continue
        r.bulk_accepted += 1
        q, h = QUEUE_ID.search(reply), HOLD_ID.search(reply)
        if q and bulk_queue_ids[q.group(1)] >= 1:
            bulk_queue_ids[q.group(1)] -= 1
        elif h and h.group(1) in bulk_held:
            bulk_held.discard(h.group(1))
        else:
            r.bulk_unmatched.append(reply)
    extra_bulk = sum(bulk_queue_ids.values()) - ambiguous
    if extra_bulk > 0:
        r.strangers.append(f"{extra_bulk} smtp-source copies at the sink without a 250")
    if bulk_held:
        r.strangers.append(f"{len(bulk_held)} smtp-source messages held without a 250")
    return r
