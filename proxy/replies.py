"""The one catalogue of SMTP replies: every reply the relay, the milter and the CLI give.

A reply is a basic code (RFC 5321), an enhanced code (RFC 3463) and a line of text. The front
ends and the transaction code ask `Replies` for one by name, and tests compare codes by those
names, so that a code is chosen in one place and nowhere else: a test (tests/test_replies.py)
finds any reply literal outside this module. Replies that only pass on what the upstream MTA
said keep its text inside ours.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EHLO_AUTH_BARE", "EHLO_EXTENSIONS", "Replies", "Reply"]

# The EHLO keyword lines the relay adds to aiosmtpd's (RFC 2920, RFC 2034, RFC 3461), and the
# bare AUTH line aiosmtpd offers before TLS, which the relay drops.
EHLO_EXTENSIONS = ("250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250-DSN")
EHLO_AUTH_BARE = "250-AUTH"


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply: basic code, enhanced code (RFC 3463) and text."""

    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        # 3xx intermediate replies carry no enhanced code (RFC 2034 3).
        return f"{self.code} {self.enhanced} {self.text}" if self.enhanced else f"{self.code} {self.text}"

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 300

    @property
    def is_temporary(self) -> bool:
        return 400 <= self.code < 500

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "enhanced": self.enhanced, "text": self.text}


def _clean(text: str) -> str:
    """Reply text must be one line of printable characters; findings can carry anything."""
    text = " ".join(text.split())
    if text.isascii() and text.isprintable():  # the common case (every relayed message's 250): as it is
        return text[:400]
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)[:400]


class Replies:
    """Every reply sendwarden composes, by name."""

    # -- the envelope --------------------------------------------------------------------------

    @staticmethod
    def sender_ok() -> Reply:
        return Reply(250, "2.1.0", "Sender ok")

    @staticmethod
    def recipient_ok() -> Reply:
        return Reply(250, "2.1.5", "Recipient ok")

    @staticmethod
    def reset() -> Reply:
        return Reply(250, "2.0.0", "Ok")

    @staticmethod
    def sender_refused(reason: str) -> Reply:
        """An envelope sender that cannot be carried upstream: control characters, not UTF-8
        (RFC 3463 5.1.7, bad sender's mailbox address syntax)."""
        return Reply(553, "5.1.7", f"Sender address refused: {reason}")

    @staticmethod
    def recipient_address_refused(reason: str) -> Reply:
        """The same for a recipient (5.1.3, bad destination mailbox address syntax)."""
        return Reply(553, "5.1.3", f"Recipient address refused: {reason}")

    @staticmethod
    def sender_needs_smtputf8() -> Reply:
        """A non-ASCII sender without SMTPUTF8 on MAIL FROM (RFC 6531 3.7.4.1: 553 5.6.7)."""
        return Reply(553, "5.6.7", "Sender address refused: a non-ASCII address needs the SMTPUTF8 parameter on MAIL FROM (RFC 6531)")

    @staticmethod
    def recipient_needs_smtputf8() -> Reply:
        return Reply(553, "5.6.7", "Recipient address refused: a non-ASCII address needs the SMTPUTF8 parameter on MAIL FROM (RFC 6531)")

    @staticmethod
    def bad_recipient(reason: str) -> Reply:
        """A recipient the store cannot file (`recipient.invalid`)."""
        return Reply(553, "5.1.3", f"Bad recipient address: {reason}"[:200])

    @staticmethod
    def too_many_recipients() -> Reply:
        return Reply(452, "4.5.3", "Too many recipients")

    @staticmethod
    def local_and_relayed_apart() -> Reply:
        """Mail to sendwarden itself is never mixed with mail it relays (RFC 5321 3.3: the
        client sends the 452'd recipient again in a new transaction)."""
        return Reply(452, "4.5.3", "Local and relayed recipients go in separate transactions; send this one again")

    @staticmethod
    def need_mail() -> Reply:
        return Reply(503, "5.5.1", "Error: need MAIL command")

    @staticmethod
    def need_rcpt() -> Reply:
        return Reply(503, "5.5.1", "Error: need RCPT command")

    @staticmethod
    def syntax(reason: str) -> Reply:
        return Reply(501, "5.5.4", reason)

    @staticmethod
    def start_data() -> Reply:
        return Reply(354, "", "End data with <CR><LF>.<CR><LF>")

    # -- authentication ------------------------------------------------------------------------

    @staticmethod
    def auth_required() -> Reply:
        return Reply(530, "5.7.0", "Authentication required")

    @staticmethod
    def auth_undecodable() -> Reply:
        return Reply(501, "5.5.2", "Can't decode base64")

    @staticmethod
    def auth_unsplittable() -> Reply:
        return Reply(501, "5.5.2", "Can't split auth value")

    @staticmethod
    def too_many_auth_failures() -> Reply:
        return Reply(421, "4.7.0", "Too many authentication failures")

    @staticmethod
    def relay_denied() -> Reply:
        return Reply(554, "5.7.1", "Relay access denied")

    # -- policy and relay outcomes -------------------------------------------------------------

    @staticmethod
    def relayed(queue_id: str, upstream: str) -> Reply:
        return Reply(250, "2.0.0", _clean(f"Ok: relayed id={queue_id} upstream: {upstream}"))

    @staticmethod
    def quarantined(hold_id: str) -> Reply:
        return Reply(250, "2.6.0", f"Ok: message accepted and held for review id={hold_id}")

    @staticmethod
    def policy_reject(rules: list[str], reason: str) -> Reply:
        return Reply(550, "5.7.1", _clean(f"Message refused by policy [{', '.join(rules)}]: {reason}"))

    @staticmethod
    def policy_tempfail(rules: list[str], reason: str) -> Reply:
        return Reply(451, "4.4.3", _clean(f"Message deferred by policy [{', '.join(rules)}], try again later: {reason}"))

    @staticmethod
    def recipient_refused(rule: str, reason: str) -> Reply:
        return Reply(550, "5.7.1", _clean(f"Recipient refused by policy [{rule}]: {reason}"))

    @staticmethod
    def recipient_unroutable(rule: str, reason: str) -> Reply:
        """RFC 3463 5.1.2: the destination system (the recipient's domain) cannot take mail."""
        return Reply(550, "5.1.2", _clean(f"Recipient refused by policy [{rule}]: {reason}"))

    @staticmethod
    def recipient_lookup_failed(rule: str, reason: str) -> Reply:
        """A fact about the recipient could not be looked up (DNS): never final, the client retries."""
        return Reply(451, "4.4.3", _clean(f"Recipient deferred [{rule}]: {reason}; try again later"))

    @staticmethod
    def auth_locked_out(seconds: float) -> Reply:
        return Reply(454, "4.7.0", f"Too many failed authentications from your address; try again in {max(1, round(seconds))} s")

    @staticmethod
    def auth_busy() -> Reply:
        return Reply(454, "4.7.0", "Temporary authentication failure: too many checks in progress, try again later")

    @staticmethod
    def in_flight_full() -> Reply:
        return Reply(452, "4.3.1", "Insufficient system storage: too many message bytes in flight, try again later")

    @staticmethod
    def recipient_deferred(rule: str, reason: str) -> Reply:
        return Reply(450, "4.7.1", _clean(f"Recipient deferred by policy [{rule}]: {reason}; try again later"))

    @staticmethod
    def rate_limited(reason: str) -> Reply:
        return Reply(451, "4.7.1", _clean(f"Rate limit reached, try again later: {reason}"))

    @staticmethod
    def rate_refused(reason: str) -> Reply:
        """A rate limit reached, and the policy says `rate.exceeded` = reject."""
        return Reply(550, "5.7.1", _clean(f"Rate limit reached, refused by policy [rate.exceeded]: {reason}"))

    @staticmethod
    def upstream_unavailable(reason: str) -> Reply:
        return Reply(451, "4.4.1", _clean(f"Upstream MTA not available, try again later: {reason}"))

    @staticmethod
    def upstream_refused(code: int, enhanced: str, text: str) -> Reply:
        """A permanent refusal by the upstream, passed through with its own code."""
        return Reply(code, enhanced if enhanced.startswith("5") else "5.0.0", f"upstream: {text}"[:400])

    @staticmethod
    def upstream_temporary(code: int, text: str) -> Reply:
        return Reply(451, "4.4.1", _clean(f"Upstream MTA deferred the message ({code} {text})"))

    @staticmethod
    def store_unavailable(reason: str) -> Reply:
        return Reply(451, "4.3.0", _clean(f"Local store unavailable, try again later: {reason}"))

    @staticmethod
    def policy_timeout(reason: str) -> Reply:
        return Reply(451, "4.4.3", _clean(f"Policy lookups timed out, try again later: {reason}"))

    @staticmethod
    def internal_error() -> Reply:
        return Reply(451, "4.3.0", "Internal error, the message was not accepted; try again later")

    @staticmethod
    def too_large(limit: int) -> Reply:
        return Reply(552, "5.3.4", f"Message too big for system (limit {limit} bytes)")

    @staticmethod
    def bare_line_ending() -> Reply:
        """Message data with a bare CR or LF: the shape of SMTP smuggling (5.6.0, other media error)."""
        return Reply(550, "5.6.0", "Bare CR or LF in message data is not allowed (RFC 5321 2.3.8); send CRLF line endings")

    @staticmethod
    def line_too_long(limit: int) -> Reply:
        return Reply(550, "5.6.0", f"Message has a line longer than {limit} characters (RFC 5321 4.5.3.1.6)")

    @staticmethod
    def cannot_suppress(reason: str) -> Reply:
        """An unsubscribe mail naming an address the store cannot file."""
        return Reply(550, "5.1.3", _clean(f"cannot suppress that address: {reason}"))


    @staticmethod
    def shutting_down() -> Reply:
        return Reply(421, "4.3.2", "Service shutting down, closing transmission channel")

    @staticmethod
    def too_many_connections() -> Reply:
        return Reply(421, "4.7.0", "Too many connections, try again later")

    # -- the milter, `scan`, the upstream and the intake ----------------------------------------

    @staticmethod
    def milter_accepted() -> Reply:
        """What the milter logs for a message it lets the MTA deliver (the MTA answers)."""
        return Reply(250, "2.0.0", "accepted")

    @staticmethod
    def held_by_mta(rules: str) -> Reply:
        return Reply(250, "2.6.0", f"held in the MTA's hold queue [{rules}]")

    @staticmethod
    def would_relay() -> Reply:
        """`scan`: what the relay would answer before the upstream's own reply."""
        return Reply(250, "2.0.0", "Ok: would be relayed")

    @staticmethod
    def upstream_no_smtputf8() -> Reply:
        return Reply(550, "5.6.7", "upstream does not support SMTPUTF8")

    @staticmethod
    def upstream_address_refused(reason: str) -> Reply:
        return Reply(553, "5.1.7", f"upstream: {reason}")

    @staticmethod
    def delivered_to_file(name: str) -> Reply:
        """The maildir upstream (tests, `upstream = "maildir:..."`) has the message."""
        return Reply(250, "2.0.0", f"Ok: delivered as {name}")

    @staticmethod
    def received(queue_id: str) -> Reply:
        """Mail to sendwarden itself (unsubscribe, complaints) was taken in."""
        return Reply(250, "2.0.0", f"Ok: received id={queue_id}")

    @staticmethod
    def no_such_user() -> Reply:
        return Reply(550, "5.1.1", "No such user here; to unsubscribe, use the address in the List-Unsubscribe header")

    @staticmethod
    def unsubscribe_expired() -> Reply:
        return Reply(550, "5.7.1", "This unsubscribe address has expired; use the one in a recent message")

    @staticmethod
    def unsubscribe_invalid() -> Reply:
        return Reply(550, "5.7.1", "Not a valid unsubscribe address")
