"""aiosmtpd's SMTP protocol, adapted to a relay that people can trust.

What changes against aiosmtpd's defaults, and why:
- DATA is read in bulk and refused on bare CR/LF (SMTP smuggling) or oversize, see datareader.
- Every reply carries an RFC 3463 enhanced status code, since we advertise ENHANCEDSTATUSCODES
  (aiosmtpd's own replies such as "503 Error: need MAIL command" lack one).
- DSN parameters (RFC 3461: RET, ENVID, NOTIFY, ORCPT) are accepted and kept with their case,
  to be passed upstream; aiosmtpd refuses any RCPT parameter with 555.
- AUTH verifies password hashes off the event loop (argon2 is deliberately slow).
- Connection limits answer 421 before the greeting; during shutdown idle sessions get 421.
- The command timeout is lifted while a message is judged and relayed: the policy and upstream
  budgets bound that time instead, so the client always gets an explicit reply.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import math
import re
import socket
import ssl
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from aiosmtpd import smtp as aiosmtpd_smtp
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, TLSSetupException, syntax

from proxy.replies import Replies
from proxy.smtp.authguard import ChecksBusy
from proxy.smtp.datareader import read_data

if TYPE_CHECKING:
    from proxy.smtp.handler import RelayHandler

# The default enhanced code for a basic reply code, when a reply does not carry its own.
_ENHANCED = {
    211: "2.0.0", 214: "2.0.0", 221: "2.0.0", 235: "2.7.0", 250: "2.0.0", 251: "2.1.5", 252: "2.5.0",
    421: "4.3.2", 432: "4.7.12", 450: "4.2.0", 451: "4.3.0", 452: "4.3.1", 454: "4.7.0", 455: "4.5.4",
    500: "5.5.2", 501: "5.5.4", 502: "5.5.1", 503: "5.5.1", 504: "5.5.4", 521: "5.3.2", 530: "5.7.0",
    534: "5.7.9", 535: "5.7.8", 538: "5.7.11", 550: "5.0.0", 551: "5.1.6", 552: "5.3.4", 553: "5.1.3",
    554: "5.0.0", 555: "5.5.4",
}
log = structlog.get_logger("sendwarden.smtp")
_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}(?: |$)")
_DSN_MAIL = {"RET", "ENVID"}
_DSN_RCPT = {"NOTIFY", "ORCPT"}
_XTEXT = re.compile(r"^(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})+$")
_NOTIFY = {"NEVER", "SUCCESS", "FAILURE", "DELAY"}
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# `<local@domain>` in its everyday ASCII shape; anything else goes to aiosmtpd's full parser.
_SIMPLE_PATH = re.compile(rf"\s*<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)>(?=\s|\Z)")
AUTH_FAILURE_DELAY = 1.0
MAX_AUTH_FAILURES = 3


def with_enhanced(status: str) -> str:
    """Add the default enhanced status code to a reply that lacks one (not to the greeting,
    EHLO lines or 3xx intermediate replies)."""
    if len(status) < 4 or not status[:3].isdigit() or status[0] not in "245" or _HAS_ENHANCED.match(status):
        return status
    code = int(status[:3])
    enhanced = _ENHANCED.get(code)
    if enhanced is None or status[3] == "-":
        return status
    return f"{status[:3]} {enhanced} {status[4:]}"


def _split_dsn(params: str, allowed: set[str]) -> tuple[dict[str, str], str] | str:
    """Take RFC 3461 parameters out of a MAIL/RCPT parameter string, keeping their case.

    Returns (dsn, remaining parameters) or an error text.
    """
    dsn: dict[str, str] = {}
    rest = []
    for token in params.split():
        key, eq, value = token.partition("=")
        ukey = key.upper()
        if ukey not in allowed:
            rest.append(token)
            continue
        if not eq or not value or ukey in dsn:
            return f"bad {ukey} parameter"
        if ukey == "RET" and value.upper() not in ("FULL", "HDRS"):
            return "RET must be FULL or HDRS"
        if ukey == "NOTIFY":
            items = value.upper().split(",")
            if not set(items) <= _NOTIFY or ("NEVER" in items and len(items) > 1):
                return "NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY"
            value = ",".join(items)
        if ukey in ("ENVID", "ORCPT"):
            if len(value) > 500 or not _XTEXT.match(value):
                return f"{ukey} must be xtext"
            if ukey == "ORCPT" and ";" not in value:
                return "ORCPT must be addr-type;xtext"
        if ukey == "RET":
            value = value.upper()
        dsn[ukey] = value
    return dsn, " ".join(rest)


def protocol_names(cls: type, prefixes: tuple[str, ...]) -> list[str]:
    """The names aiosmtpd looks for on a protocol or handler object (its smtp_* commands,
    auth_* mechanisms, handle_* hooks), found once per class."""
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = sorted(n for n in dir(cls) if n.startswith(prefixes))
    return names


_NAMES: dict[type, list[str]] = {}


class BoundMethods(Mapping[str, Any]):
    """Command name -> bound smtp_* method of one connection, looked up when asked. aiosmtpd
    keeps a dict of every such method for every connection (~2 KB each, a fifth of an idle
    connection's memory); this answers the same questions (get, in, items) from one table
    per class."""

    __slots__ = ("_obj", "_names")

    def __init__(self, obj: object, names: dict[str, str]) -> None:
        self._obj = obj
        self._names = names

    def __getitem__(self, key: str) -> Any:
        return getattr(self._obj, self._names[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


@dataclass(frozen=True, slots=True)
class ProtocolTables:
    """What aiosmtpd's SMTP.__init__ finds by introspection for every connection, found once
    per connection class and handler: the smtp_* commands, the handler's hooks (bound to the
    handler, so shared by its connections), the AUTH mechanisms (mechanism, attribute, whether
    it is the protocol's own, as aiosmtpd's `_AuthMechAttr.is_builtin`) and the form of the
    EHLO hook."""

    commands: dict[str, str]
    hooks: dict[str, Any]
    mechanisms: tuple[tuple[str, str, bool], ...]
    ehlo_hook_ver: str | None


def protocol_tables(cls: type, handler: Any) -> ProtocolTables:
    """The tables of `cls` serving `handler`, as aiosmtpd 1.4's SMTP.__init__ builds them."""
    commands = {m.replace("smtp_", ""): m for m in protocol_names(cls, ("smtp_", "auth_")) if m.startswith("smtp_")}
    hooks = {m.replace("handle_", ""): getattr(handler, m) for m in dir(handler) if m.startswith("handle_")}
    mechanisms: dict[str, tuple[str, str, bool]] = {}
    # getmembers order: the protocol's, then the handler's (which win), each sorted by name
    for owner, names in ((cls, protocol_names(cls, ("smtp_", "auth_"))), (handler, dir(handler))):
        for name in sorted(n for n in names if n.startswith("auth_")):
            fn = getattr(owner, name)
            mech = getattr(fn, "__auth_mechanism_name__", name.replace("auth_", "").replace("__", "-"))
            mechanisms[mech] = (mech, name, owner is cls)
    ehlo = hooks.get("EHLO")
    version = None
    if ehlo is not None:
        params = len(inspect.signature(ehlo).parameters)
        if params not in (4, 5):
            raise RuntimeError("Unsupported EHLO Hook")
        version = "new" if params == 5 else "old"
    return ProtocolTables(commands, hooks, tuple(mechanisms.values()), version)


class RelaySMTP(SMTP):
    """One client connection."""

    def __dir__(self) -> list[str]:
        # What aiosmtpd looks for on a connection: its smtp_* commands and auth_* mechanisms.
        return protocol_names(type(self), ("smtp_", "auth_"))

    # The reader's buffer limit. DATA is read in chunks of up to this size; command lines are
    # still held to RFC 5321's 512 octets by aiosmtpd's command_size_limit check.
    line_length_limit = 64 * 1024

    def __init__(self, handler: "RelayHandler", *, loop: asyncio.AbstractEventLoop, hostname: str | None = None,
                 ident: str | None = None, data_size_limit: int | None = aiosmtpd_smtp.DATA_SIZE_DEFAULT,
                 enable_SMTPUTF8: bool = False, decode_data: bool = False, tls_context: ssl.SSLContext | None = None,
                 require_starttls: bool = False, timeout: float = 300, auth_require_tls: bool = True,
                 auth_exclude_mechanism: Iterable[str] | None = None,
                 proxy_protocol_timeout: float | None = None) -> None:
        """The state aiosmtpd 1.4's SMTP.__init__ sets up (the options the relay uses), without
        its introspection of the connection and the handler for every connection (getmembers,
        dir, inspect.signature: ~20 us of each connection). This reaches into aiosmtpd's
        internals, so pyproject.toml keeps aiosmtpd below 1.5;
        tests/smtp/test_protocol_setup.py compares the result with aiosmtpd's own."""
        tables = handler.protocol_tables
        if tables is None or tables[0] is not type(self):
            tables = handler.protocol_tables = (type(self), protocol_tables(type(self), handler))
        t = tables[1]
        self.__ident__ = ident or aiosmtpd_smtp.__ident__
        self.loop = loop
        asyncio.StreamReaderProtocol.__init__(self, asyncio.StreamReader(loop=loop, limit=self.line_length_limit),
                                              client_connected_cb=self._cb_client_connected, loop=loop)
        self.event_handler = handler
        assert data_size_limit is None or isinstance(data_size_limit, int)
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = decode_data
        self.command_size_limits.clear()
        self.hostname = hostname or socket.getfqdn()
        self.tls_context = tls_context
        if tls_context:
            if tls_context.verify_mode not in {ssl.CERT_NONE, ssl.CERT_OPTIONAL}:
                aiosmtpd_smtp.log.warning("tls_context.verify_mode not in {CERT_NONE, CERT_OPTIONAL}; "
                                          "this might cause client connection problems")
            elif tls_context.check_hostname:
                aiosmtpd_smtp.log.warning("tls_context.check_hostname == True; this might cause client connection problems")
        self.require_starttls = tls_context and require_starttls
        self._timeout_duration = timeout
        self._timeout_handle = None
        self._deadline = self._armed_for = 0.0  # loop times: the idle deadline, the armed timer's (_reset_timeout)
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = auth_require_tls
        if proxy_protocol_timeout is not None:
            if proxy_protocol_timeout <= 0:
                raise ValueError("proxy_protocol_timeout must be > 0")
            elif proxy_protocol_timeout < 3.0:
                aiosmtpd_smtp.log.warning("proxy_protocol_timeout < 3.0")
        self._proxy_timeout = proxy_protocol_timeout
        self._authenticator = None
        self._auth_callback = aiosmtpd_smtp.login_always_fail
        self._auth_required = False
        excluded = set(auth_exclude_mechanism or ())
        self._auth_methods = {
            mech: aiosmtpd_smtp._AuthMechAttr(getattr(self if own else handler, name), own)
            for mech, name, own in t.mechanisms if mech not in excluded
        }
        if aiosmtpd_smtp.log.isEnabledFor(logging.INFO):
            aiosmtpd_smtp.log.info("Available AUTH mechanisms: " + " ".join(
                m + "(builtin)" if impl.is_builtin else m for m, impl in sorted(self._auth_methods.items())))
        self._handle_hooks = t.hooks  # bound to the handler, shared by its connections
        self._ehlo_hook_ver = t.ehlo_hook_ver
        # aiosmtpd keeps a dict of every bound smtp_* method for every connection (~2 KB, a
        # fifth of an idle connection's memory): this answers the same from one table per class.
        self._smtp_methods = BoundMethods(self, t.commands)  # type: ignore[assignment]
        self._enforce_call_limit = False
        self.relay_handler = handler
        self.refused = False
        self.in_transaction = False
        self.closing = False
        self.failed_logins = 0
        self.pending_dsn: dict[str, str] = {}
        self._greeting_reply = False

    # -- connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None and not self.relay_handler.admit(self, transport):
            self.refused = True
            transport.write(f"{Replies.too_many_connections()}\r\n".encode())  # type: ignore[attr-defined]
            transport.close()
            return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.refused:
            return
        self.relay_handler.release(self)
        super().connection_lost(error)

    def _reset_timeout(self, duration: float | None = None) -> None:
        """Move the idle deadline to `duration` (the command timeout by default) from now.

        aiosmtpd cancels its timer and starts a new one at every command, nine times a message
        (a TimerHandle each, ~1.3 us). Here the armed timer stays when it is due no later than
        the new deadline, and when it fires before the deadline it re-arms for the rest
        (_timer_fired); a deadline earlier than the armed timer re-arms it at once."""
        deadline = self.loop.time() + (duration or self._timeout_duration)
        self._deadline = deadline
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or self._armed_for > deadline:
            if handle is not None:
                handle.cancel()
            self._arm(deadline)

    def _arm(self, when: float) -> None:
        self._armed_for = when
        self._timeout_handle = self.loop.call_at(when, self._timer_fired)

    def _timer_fired(self) -> None:
        if self._deadline > self._armed_for:  # the deadline moved on since the timer was armed
            self._arm(self._deadline)
            return
        self._armed_for = math.inf  # spent: a later _reset_timeout arms a new one
        self._timeout_cb()  # type: ignore[no-untyped-call]

    async def push(self, status: str | bytes) -> None:
        if isinstance(status, str) and not self._greeting_reply:
            status = with_enhanced(status)
        await super().push(status)  # type: ignore[type-var]

    # HELO/EHLO replies carry no enhanced codes (RFC 2034 §3 exempts them).
    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        self._greeting_reply = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._greeting_reply = False

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        self._greeting_reply = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._greeting_reply = False

    async def close_gracefully(self) -> None:
        """Tell an idle client we are going away, then close (used at shutdown)."""
        if self.transport is None or self.transport.is_closing():
            return
        try:
            self._writer.write(f"{Replies.shutting_down()}\r\n".encode())
            await asyncio.wait_for(self._writer.drain(), 2)
        except (ConnectionError, asyncio.TimeoutError):
            pass
        if self.transport is not None:
            self.transport.close()

    # -- envelope commands: accept DSN parameters ------------------------------------------------

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd parses every MAIL/RCPT path with the email package's RFC 5322 header
        parser (about 0.3 ms a call); the everyday `<local@domain>` needs one regex. An
        argument that parser trips over (IndexError on `MAIL FROM:0@`) is a malformed address
        (553), not an internal error (451, which a client retries for ever)."""
        m = _SIMPLE_PATH.match(arg)
        if m is not None:
            return m.group(1), arg[m.end():].lstrip()
        try:
            return super()._getaddr(arg)
        except Exception:
            return None, None

    async def _with_dsn(self, keyword: str, arg: str | None, allowed: set[str]) -> tuple[bool, str | None]:
        """Move DSN parameters from a MAIL/RCPT argument into `pending_dsn`.

        Returns (go on, the argument without them); on a bad parameter the 501 is already sent.
        """
        self.pending_dsn = {}
        # Every DSN parameter has an "="; without one there is nothing to take out, and parsing
        # the address (slow in aiosmtpd) is left to aiosmtpd's own, single pass.
        if arg is None or "=" not in arg or not self.session or not self.session.extended_smtp:
            return True, arg
        stripped = self._strip_command_keyword(keyword, arg)
        if stripped is None:
            return True, arg
        address, params = self._getaddr(stripped)
        if address is None or not params:
            return True, arg
        split = _split_dsn(params, allowed)
        if isinstance(split, str):
            await self.push(str(Replies.syntax(split)))
            return False, None
        self.pending_dsn, rest = split
        head = stripped[: len(stripped) - len(params)].rstrip()
        return True, f"{keyword}{head} {rest}".rstrip()

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        go_on, arg = await self._with_dsn("FROM:", arg, _DSN_MAIL)
        if go_on:
            await super().smtp_MAIL(arg)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        envelope = self.envelope
        if envelope is not None and envelope.mail_from and len(envelope.rcpt_tos) >= self.relay_handler.settings.max_recipients:
            # Full: refuse before parsing the address (about a millisecond in aiosmtpd), so that
            # a flood of recipients costs the event loop next to nothing.
            await self.push(str(Replies.too_many_recipients()))
            return
        go_on, arg = await self._with_dsn("TO:", arg, _DSN_RCPT)
        if go_on:
            await super().smtp_RCPT(arg)

    async def handle_exception(self, error: Exception) -> str:
        """A failed TLS handshake after STARTTLS (a scanner, a client with an old protocol) is
        the client's problem: one warning line with the reason, no traceback."""
        if isinstance(error, TLSSetupException):
            peer = self.session.peer if self.session else ""
            cause = error.__cause__
            log.warning("tls_handshake_failed", client=str(peer[0]) if isinstance(peer, tuple) else str(peer),
                        reason=(getattr(cause, "reason", None) or type(cause).__name__) if cause else "")
            return ""  # aiosmtpd closes the connection and sends nothing after a failed handshake
        return await super().handle_exception(error)

    # -- AUTH: verify off the event loop -------------------------------------------------------

    async def _verify(self, mechanism: str, login: bytes, password: bytes) -> AuthResult:
        guard = self.relay_handler.service.auth_guard
        client = str(self.session.peer[0]) if self.session and isinstance(self.session.peer, tuple) else ""
        locked = guard.locked_for(client)
        if locked:  # no password check at all: not even a right one may pass during a lockout
            await self.push(str(Replies.auth_locked_out(locked)))
            return AuthResult(success=False, handled=True)
        try:
            ok = await self.relay_handler.verify_login(login, password)
        except ChecksBusy:
            await self.push(str(Replies.auth_busy()))
            return AuthResult(success=False, handled=True)
        if ok:
            guard.succeeded(client)
            return AuthResult(success=True, auth_data=LoginPassword(login, password))
        self.failed_logins += 1
        self.relay_handler.login_failed(self, login, locked_out=guard.failed(client))
        # Slow down guessing; after a few failures, hang up.
        await asyncio.sleep(AUTH_FAILURE_DELAY)
        if self.failed_logins >= MAX_AUTH_FAILURES:
            await self.push(str(Replies.too_many_auth_failures()))
            if self.transport is not None:
                self.transport.close()
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            data = await self.challenge_auth("")
            if not isinstance(data, bytes):  # the client cancelled; challenge_auth answered
                return AuthResult(success=False, handled=True)
        else:
            try:
                data = base64.b64decode(args[1].encode(), validate=True)
            except Exception:
                await self.push(str(Replies.auth_undecodable()))
                return AuthResult(success=False, handled=True)
        try:
            _, login, password = data.split(b"\x00")
        except ValueError:
            await self.push(str(Replies.auth_unsplittable()))
            return AuthResult(success=False, handled=True)
        return await self._verify("PLAIN", login, password)

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
            if not isinstance(login, bytes):
                return AuthResult(success=False, handled=True)
        else:
            try:
                login = base64.b64decode(args[1].encode(), validate=True)
            except Exception:
                await self.push(str(Replies.auth_undecodable()))
                return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._verify("LOGIN", login, password)

    # -- DATA ------------------------------------------------------------------------------------

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None and self.session is not None
        if not self.envelope.rcpt_tos:
            await self.push(str(Replies.need_rcpt()))
            return
        if arg:
            await self.push(str(Replies.syntax("Syntax: DATA")))
            return
        settings = self.relay_handler.settings
        await self.push(str(Replies.start_data()))
        self._reset_timeout(settings.data_timeout)
        try:
            tx = getattr(self.envelope, "tx", None)
            local = tx is not None and bool(tx.local)  # mail to our own addresses: its own, small limit
            result = await read_data(
                self._reader,
                max_size=min(settings.max_message_size, self.relay_handler.service.intake.max_size) if local
                else settings.max_message_size,
                max_line=settings.max_line_length,
                normalize=settings.normalize,
                in_flight=self.relay_handler.service.in_flight,
            )
        except asyncio.CancelledError:
            self._writer.close()
            raise
        if result.error == "eof":
            if self.transport is not None:
                self.transport.close()
            return
        # Judging and relaying are bounded by their own budgets, not by the idle timer.
        self._reset_timeout(settings.processing_budget)
        try:
            status = await self.relay_handler.handle_message(self, self.session, self.envelope, result)
        finally:
            self._reset_timeout()
            self.relay_handler.service.in_flight.give(result.reserved)
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        self.in_transaction = False
        await self.push(status)
        if self.closing:
            await self.close_gracefully()
