"""One MTA connection: read packets, drive the application, answer.

Packets are handled strictly in order, one at a time, so pipelined packets (Postfix sends
headers and body chunks without waiting when NR_* was agreed) need no extra care. The message is
reassembled into a buffer bounded by `max_message_size`: past it, the rest is dropped (or, when
the MTA waits for body replies, refused with SMFIR_SKIP) and end of message is answered
"552 5.3.4" without asking the application, so an over-long message is never accepted unjudged.

A protocol error closes the connection: the MTA then applies its milter_default_action.

Over TCP, every read is followed by TCP_QUICKACK: Postfix writes a stage's macros and its
command (or the DATA macros, then the headers) in separate writes without TCP_NODELAY, so
Nagle holds the second write back until the first is acknowledged, and our kernel, seeing a
request/response connection, delays that ACK by up to 40 ms (we owe no reply to a macro
packet). Measured with Postfix 3.7: a 43 ms stall before the headers of every message, which
left the milter idle most of the time (111 msg/s with the core 72 % busy, issue 19).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import structlog

import proxy.milter.replies as replies
import proxy.milter.wire as wire
from proxy.milter.application import MilterApplication, MilterTransaction
from proxy.milter.assembly import MessageAssembly
from proxy.milter.commands import (
    Abort, Body, Command, Connect, Data, EndOfHeaders, EndOfMessage, Header, Helo, Macro, Mail, OptNeg, Quit,
    QuitNewConnection, Rcpt, Unknown, parse_command,
)
from proxy.milter.options import MilterOptions, Negotiated, negotiate
from proxy.milter.wire import ProtocolError, ProtocolFlag
from proxy.replies import Replies, Reply

log = structlog.get_logger("sendwarden.milter")

READ_SIZE = 65536
_CONNECTION_MACROS = (wire.SMFIC_CONNECT, wire.SMFIC_HELO)
# Postfix sends a handful of macros per stage; a peer that defines thousands is not an MTA.
MAX_MACROS = 1000
TOO_MANY_RECIPIENTS = Replies.too_many_recipients()


class AppFailed(Exception):
    """An application call timed out or raised; `reply` is the temporary failure to give."""

    def __init__(self, stage: str, reply: Reply) -> None:
        super().__init__(stage)
        self.stage = stage
        self.reply = reply


def _tcp_socket(writer: asyncio.StreamWriter) -> Any:
    """The connection's socket when it is TCP and the platform has TCP_QUICKACK (Linux)."""
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "TCP_QUICKACK") or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    return sock


def _ack_now(sock: Any) -> None:
    """Acknowledge what was read at once instead of after the delayed-ACK timer (see above)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def _overrides(app: MilterApplication, name: str) -> bool:
    return getattr(type(app), name) is not getattr(MilterApplication, name)


class MilterSession:
    """Serves one MTA connection until QUIT, EOF, an idle timeout or a protocol error."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 app_factory: Callable[[], MilterApplication], options: MilterOptions, peer: str = "") -> None:
        self.reader = reader
        self.writer = writer
        self.app_factory = app_factory
        self.options = options
        self.peer = peer
        self.decoder = wire.PacketDecoder(options.max_packet_size)
        self.negotiated: Negotiated | None = None
        self.app: MilterApplication | None = None
        self.may_negotiate = True
        self.connected = False
        self.connection_failure: tuple[str, Reply] | None = None
        self.conn_macros: dict[str, str] = {}
        self.txn_macros: dict[str, str] = {}
        self.txn: MessageAssembly | None = None
        self.out = bytearray()
        self.quickack = _tcp_socket(writer)

    async def run(self) -> None:
        try:
            while await self._read_and_dispatch():
                await self._flush()
        except ProtocolError as exc:
            log.warning("milter_protocol_error", peer=self.peer, error=str(exc))
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("milter_connection_lost", peer=self.peer, error=repr(exc))
        finally:
            with contextlib.suppress(ConnectionError, OSError):
                await self._flush()  # replies owed for packets before a QUIT in the same read
            await self._end_connection()
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()

    async def _read_and_dispatch(self) -> bool:
        try:
            async with asyncio.timeout(self.options.idle_timeout):
                data = await self.reader.read(READ_SIZE)
        except TimeoutError:
            log.info("milter_idle_timeout", peer=self.peer, seconds=self.options.idle_timeout)
            return False
        if self.quickack is not None:
            _ack_now(self.quickack)
        if not data:
            if self.decoder.pending:
                log.warning("milter_truncated_packet", peer=self.peer, pending=self.decoder.pending)
            return False
        for command, payload in self.decoder.feed(data):
            if not await self._dispatch(parse_command(command, payload)):
                return False
        return True

    # -- dispatch ----------------------------------------------------------------------------

    async def _dispatch(self, cmd: Command) -> bool:
        if isinstance(cmd, OptNeg):
            self._negotiate(cmd)
            return True
        agreed = self.negotiated
        if agreed is None:
            raise ProtocolError(f"{type(cmd).__name__} before option negotiation")
        match cmd:
            case Macro():
                (self.conn_macros if cmd.for_command in _CONNECTION_MACROS else self.txn_macros).update(cmd.values)
                if len(self.conn_macros) + len(self.txn_macros) > MAX_MACROS:
                    raise ProtocolError(f"more than {MAX_MACROS} macros defined")
            case Connect():
                await self._connect(cmd, agreed)
            case Helo():
                packet = await self._step("helo", agreed, ProtocolFlag.NR_HELO, cmd.name, self._macros())
                self._answer(agreed, ProtocolFlag.NR_HELO, packet)
            case Mail():
                await self._mail(cmd, agreed)
            case Rcpt():
                await self._rcpt(cmd, agreed)
            case Data():
                self._require_txn("SMFIC_DATA")
                self._answer(agreed, ProtocolFlag.NR_DATA, replies.CONTINUE)
            case Unknown():
                self._answer(agreed, ProtocolFlag.NR_UNKN, replies.CONTINUE)
            case Header():
                await self._header(cmd, agreed)
            case EndOfHeaders():
                txn = self._require_txn("SMFIC_EOH")
                txn.end_headers()
                await self._observe(txn, "end_of_headers")
                self._answer(agreed, ProtocolFlag.NR_EOH, replies.CONTINUE)
            case Body():
                await self._body(cmd.chunk, agreed, reply=True)
            case EndOfMessage():
                await self._end_of_message(cmd, agreed)
            case Abort():
                await self._abort()
            case Quit():
                return False
            case QuitNewConnection():
                await self._end_connection()
                self.may_negotiate = True
        return True

    def _negotiate(self, cmd: OptNeg) -> None:
        if not self.may_negotiate:
            raise ProtocolError("SMFIC_OPTNEG again (only allowed first, or after SMFIC_QUIT_NC)")
        self.may_negotiate = False
        self.negotiated, macros = negotiate(cmd, self.options)
        self._send(replies.optneg(self.negotiated.version, self.negotiated.actions,
                                         self.negotiated.protocol, macros))

    def _answer(self, agreed: Negotiated, no_reply: ProtocolFlag, packet: bytes) -> None:
        if agreed.replies_to(no_reply):
            self._send(packet)

    def _send(self, packet: bytes) -> None:
        """Queue a reply; the replies to one read's worth of packets go out in one write."""
        self.out += packet

    async def _flush(self) -> None:
        if self.out:
            self.writer.write(bytes(self.out))
            self.out.clear()
        await self.writer.drain()

    def _application(self) -> MilterApplication:
        if self.app is None:
            self.app = self.app_factory()
        return self.app

    def _macros(self) -> MappingProxyType[str, str]:
        return MappingProxyType({**self.conn_macros, **self.txn_macros})

    def _require_txn(self, what: str) -> MessageAssembly:
        if self.txn is None:
            raise ProtocolError(f"{what} outside a transaction (no SMFIC_MAIL before it)")
        return self.txn

    # -- calling the application -------------------------------------------------------------

    async def _call(self, stage: str, timeout: float, *args: Any) -> Any:
        """Await the application's method `stage` under `timeout`; AppFailed when it runs over
        or raises (making the application, for the first call, counts as part of it)."""
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await getattr(self._application(), stage)(*args)
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                log.warning("milter_app_timeout", peer=self.peer, stage=stage, seconds=timeout)
                raise AppFailed(stage, Replies.policy_timeout(f"{stage} took longer than {timeout:g}s")) from None
            log.error("milter_app_failed", peer=self.peer, stage=stage, error=repr(exc), exc_info=exc)
            raise AppFailed(stage, Replies.internal_error()) from None

    async def _step(self, stage: str, agreed: Negotiated, no_reply: ProtocolFlag, *args: Any) -> bytes:
        """An answering stage (connect, helo, MAIL, RCPT): CONTINUE or the application's refusal;
        a failure follows on_error (tempfail now, or remember it for end of message). Where the
        MTA waits for no reply (`no_reply` agreed: the application said it never refuses
        there), a failure or refusal is remembered and settled at end of message."""
        try:
            result = await self._call(stage, self.options.command_timeout, *args)
            try:
                packet = replies.step_reply(result)
            except (ValueError, AttributeError) as exc:
                log.error("milter_bad_reply", peer=self.peer, stage=stage, reply=repr(result), error=str(exc))
                raise AppFailed(stage, Replies.internal_error()) from None
            if packet is not replies.CONTINUE and not agreed.replies_to(no_reply):
                log.error("milter_refusal_unsent", peer=self.peer, stage=stage, reply=str(result),
                          reason="the MTA waits for no reply here (MilterOptions.no_reply)")
                raise AppFailed(stage, result)
            return packet
        except AppFailed as failed:
            if self.options.on_error == "tempfail" and agreed.replies_to(no_reply):
                return replies.replycode(failed.reply)
            if self.txn is not None:
                self.txn.failure = self.txn.failure or (stage, failed.reply)
            else:
                self.connection_failure = self.connection_failure or (stage, failed.reply)
            return replies.CONTINUE

    async def _observe(self, txn: MessageAssembly, stage: str, *args: Any) -> None:
        """A stage without an answer of its own; a failure is settled at end of message. Not
        called at all when the application keeps the default (no-op) hook."""
        if txn.failure or txn.oversize or (self.app is not None and not _overrides(self.app, stage)):
            return
        try:
            await self._call(stage, self.options.command_timeout, *args)
        except AppFailed as failed:
            txn.failure = (stage, failed.reply)

    # -- the stages --------------------------------------------------------------------------

    async def _connect(self, cmd: Connect, agreed: Negotiated) -> None:
        if self.connected:
            raise ProtocolError("second SMFIC_CONNECT without SMFIC_QUIT_NC")
        self.connected = True
        packet = await self._step("connect", agreed, ProtocolFlag.NR_CONN, cmd.hostname, cmd.family, cmd.port,
                                  cmd.address, self._macros())
        self._answer(agreed, ProtocolFlag.NR_CONN, packet)

    async def _mail(self, cmd: Mail, agreed: Negotiated) -> None:
        if self.txn is not None:  # MAIL without ABORT after the previous one: end it here
            await self._abort(keep_macros=True)
        self.txn = MessageAssembly(cmd.address, cmd.args, self.options.max_message_size)
        packet = await self._step("mail_from", agreed, ProtocolFlag.NR_MAIL, cmd.address, cmd.args, self._macros())
        self._answer(agreed, ProtocolFlag.NR_MAIL, packet)

    async def _rcpt(self, cmd: Rcpt, agreed: Negotiated) -> None:
        txn = self._require_txn("SMFIC_RCPT")
        if len(txn.recipients) >= self.options.max_recipients:
            self._answer(agreed, ProtocolFlag.NR_RCPT, replies.replycode(TOO_MANY_RECIPIENTS))
            return
        packet = await self._step("rcpt", agreed, ProtocolFlag.NR_RCPT, cmd.address, cmd.args, self._macros())
        if packet is replies.CONTINUE:
            txn.recipients.append(cmd.address)
        self._answer(agreed, ProtocolFlag.NR_RCPT, packet)

    async def _header(self, cmd: Header, agreed: Negotiated) -> None:
        txn = self._require_txn("SMFIC_HEADER")
        value = cmd.value if agreed.leading_space else " " + cmd.value
        value = value.replace("\n", "\r\n")
        txn.add_header(cmd.name, value)
        await self._observe(txn, "header", cmd.name, value)
        self._answer(agreed, ProtocolFlag.NR_HDR, replies.CONTINUE)

    async def _body(self, chunk: bytes, agreed: Negotiated, reply: bool) -> None:
        txn = self._require_txn("SMFIC_BODY")
        txn.end_headers()
        txn.add(chunk)
        await self._observe(txn, "body", chunk)
        if reply:
            skip = txn.oversize and agreed.can_skip
            self._answer(agreed, ProtocolFlag.NR_BODY, replies.SKIP if skip else replies.CONTINUE)

    async def _end_of_message(self, cmd: EndOfMessage, agreed: Negotiated) -> None:
        txn = self._require_txn("SMFIC_BODYEOB")
        if cmd.chunk:
            await self._body(cmd.chunk, agreed, reply=False)
        failure = txn.failure or self.connection_failure
        if txn.oversize:
            log.warning("milter_message_too_large", peer=self.peer, size=txn.size, limit=txn.limit,
                        queue_id=self._macros().get("i", ""))
            self._send(replies.replycode(Replies.too_large(txn.limit)))
            with contextlib.suppress(AppFailed):
                await self._call("abort", self.options.command_timeout)
        elif failure is not None:
            self._send(self._failure_final(agreed, *failure))
        else:
            self._send(await self._judge(txn.freeze(dict(self._macros())), agreed))
        self.txn = None
        self.txn_macros = {}

    async def _judge(self, transaction: MilterTransaction, agreed: Negotiated) -> bytes:
        """end_of_message, with SMFIR_PROGRESS every progress_interval so that the MTA's own
        timeout does not fire while the application works; then the decision as packets."""
        task = asyncio.ensure_future(self._call("end_of_message", self.options.message_timeout, transaction))
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=self.options.progress_interval)
                if not task.done():
                    self._send(replies.PROGRESS)
                    await self._flush()
            decision = task.result()
            return replies.decision_packets(decision, agreed)
        except AppFailed as failed:
            return self._failure_final(agreed, failed.stage, failed.reply)
        except (ValueError, TypeError, AttributeError) as exc:
            log.error("milter_bad_decision", peer=self.peer, error=str(exc), queue_id=transaction.queue_id)
            return self._failure_final(agreed, "end_of_message", Replies.internal_error())
        finally:
            if not task.done():
                task.cancel()

    def _failure_final(self, agreed: Negotiated, stage: str, reply: Reply) -> bytes:
        if self.options.on_error == "accept":
            log.warning("milter_accepted_unjudged", peer=self.peer, stage=stage)
        return replies.failure_packets(self.options.on_error, agreed, stage, reply)

    async def _abort(self, keep_macros: bool = False) -> None:
        if self.txn is not None and self.app is not None:
            with contextlib.suppress(AppFailed):
                await self._call("abort", self.options.command_timeout)
        self.txn = None
        if not keep_macros:
            self.txn_macros = {}

    async def _end_connection(self) -> None:
        """The SMTP session the MTA served is over (QUIT, QUIT_NC, EOF or error)."""
        await self._abort()
        if self.app is not None:
            with contextlib.suppress(AppFailed):
                await self._call("close", self.options.command_timeout)
        self.app = None
        self.connected = False
        self.connection_failure = None
        self.conn_macros = {}
