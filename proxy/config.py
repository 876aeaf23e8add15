"""The service configuration: TOML → frozen, validated objects with clear errors.

The embedded default (proxy/defaults/sendwarden.toml) lets 127.0.0.1 and ::1 relay without
AUTH, listens on 127.0.0.1:10025 and delivers into a development Maildir under ./var/outbox.
Relative paths in a config file are relative to that file's directory; in the embedded default,
to the working directory.
"""

from __future__ import annotations

import ipaddress
import os
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from proxy.tomlfile import ConfigError, load_toml, parse_duration, validate

EMBEDDED = "embedded default"


class _Strict(BaseModel):
    # strict: `verify = "off"` is an error, not a true; a number in quotes is not a number.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def parse_hostport(text: str, default_port: int | None = None) -> tuple[str, int]:
    """'127.0.0.1:25', '[::1]:25', 'host:25' → (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if not sep:
            raise ValueError(f"{text!r}: missing ']'")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
    if not port_text:
        if default_port is None:
            raise ValueError(f"{text!r}: expected HOST:PORT")
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: port must be a number from 0 to 65535")
    if not host:
        raise ValueError(f"{text!r}: missing host")
    return host, int(port_text)


def _optional_hostport(v: str) -> str:
    if v:
        parse_hostport(v)
    return v


# An address to listen on, or "" for off.
HostPortOrOff = Annotated[str, AfterValidator(_optional_hostport)]


def valid_networks(v: list[str]) -> list[str]:
    """A list of networks ("10.0.0.0/8", "192.0.2.1"), each checked; ValueError names a bad one."""
    for net in v:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError as exc:
            raise ValueError(f"{net!r}: {exc}") from None
    return v


# A list of networks ("10.0.0.0/8", "::1/128", or a single address).
Networks = Annotated[list[str], AfterValidator(valid_networks)]


class Listener(_Strict):
    name: str = "default"
    address: str = "127.0.0.1:10025"
    # PROXY protocol v1/v2 (HAProxy, cloud balancers): the real client address comes from the
    # header, and policy applies to it. Without this, a PROXY line is just a bad command.
    proxy_protocol: bool = False
    # Who may send the PROXY header (the balancers). Required with proxy_protocol: a header
    # from anyone else would let them claim any client address, relay_networks included.
    proxy_networks: list[str] = Field(default_factory=list)

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        parse_hostport(v)
        return v

    @model_validator(mode="after")
    def _proxy_trust(self) -> "Listener":
        if self.proxy_protocol and not self.proxy_networks:
            raise ValueError(f"listener {self.name!r}: proxy_protocol = true needs proxy_networks "
                             "(the balancers' addresses); without it anyone could claim any client address")
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_hostport(self.address)


class TLS(_Strict):
    cert: str = ""
    key: str = ""
    # With no cert/key, make a self-signed development pair under the state directory on the
    # first start, so STARTTLS (and so AUTH) work out of the box. Never for production.
    dev_cert: bool = True

    @model_validator(mode="after")
    def _pair(self) -> "TLS":
        if bool(self.cert) != bool(self.key):
            raise ValueError("cert and key go together: set both or neither")
        return self


class Auth(_Strict):
    # A TOML file of `user = "argon2 hash"` (see `sendwarden passwd`). Empty: no AUTH offered.
    credentials: str = ""
    mechanisms: list[Literal["PLAIN", "LOGIN"]] = Field(default_factory=lambda: ["PLAIN", "LOGIN"])  # type: ignore[arg-type]


class UpstreamSection(_Strict):
    # smtp://HOST:PORT (the MTA), or maildir:PATH (a development sink).
    url: str = "maildir:var/outbox"
    starttls: Literal["opportunistic", "required", "off"] = "opportunistic"
    verify: bool = True
    helo: str = ""
    pool_size: int = Field(default=4, ge=0, le=256)
    # Pass the real client (address, HELO name, protocol) on with XFORWARD when the upstream
    # offers it (Postfix: smtpd_authorized_xforward_hosts), so its log names that client.
    xforward: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v.startswith("smtp://"):
            parse_hostport(v[len("smtp://"):].rstrip("/"), 25)
        elif v.startswith("maildir:"):
            if not v[len("maildir:"):]:
                raise ValueError("maildir: needs a path")
        else:
            raise ValueError("expected smtp://HOST:PORT or maildir:PATH")
        return v


class Limits(_Strict):
    max_message_size: int = Field(default=25 * 1024 * 1024, ge=1024)
    max_recipients: int = Field(default=1000, ge=1)
    max_connections: int = Field(default=1000, ge=1)
    max_connections_per_client: int = Field(default=100, ge=1)
    max_line_length: int = Field(default=998, ge=78)
    # Message bytes being received, judged and relayed at once, per process: past it, DATA is
    # answered 452 4.3.1 (the client retries). At least max_message_size is used.
    max_bytes_in_flight: int = Field(default=128 * 1024 * 1024, ge=1024)


class Timeouts(_Strict):
    """Seconds. `command` is the idle time allowed between client commands; `data` bounds the
    whole DATA upload. `policy` bounds the lookups made to judge one message; the upstream
    budgets bound each step of relaying. Together they keep every outcome explicit: a slow
    upstream yields a 451, never a client-side timeout with an unknown outcome."""

    command: float = Field(default=300, gt=0)
    data: float = Field(default=600, gt=0)
    policy: float = Field(default=10, gt=0)
    upstream_connect: float = Field(default=15, gt=0)
    upstream_command: float = Field(default=60, gt=0)
    upstream_data: float = Field(default=120, gt=0)
    shutdown: float = Field(default=30, ge=0)


class Smtp(_Strict):
    # Bare CR or LF inside DATA: refuse (the default, safe against SMTP smuggling) or
    # rewrite to CRLF before anything else looks at the message.
    bare_line_endings: Literal["reject", "normalize"] = "reject"
    # Names the relay uses for itself in the greeting and the Received header.
    banner: str = "sendwarden ESMTP"




NotifyEvent = Literal["quarantined", "released", "release_failed", "deleted"]


class Notify(_Strict):
    """Tell people about quarantine events (chat, ticketing): a command run with the event as
    JSON on its stdin, and/or a webhook that gets it as an HTTP POST. Failures are logged; they
    never hold up the relay."""

    command: list[str] = Field(default_factory=list)  # argv, no shell; the program by absolute path
    webhook: str = ""
    timeout: float = Field(default=10, gt=0, le=300)
    max_pending: int = Field(default=100, ge=1, le=10_000)  # more in flight are dropped and logged
    events: list[NotifyEvent] = Field(default_factory=lambda: ["quarantined", "released", "release_failed", "deleted"])  # type: ignore[arg-type]

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, v: str) -> str:
        if v and not v.startswith(("https://", "http://")):
            raise ValueError("expected an http:// or https:// URL")
        return v

    @field_validator("command")
    @classmethod
    def _command(cls, v: list[str]) -> list[str]:
        if v and not v[0].startswith("/"):
            raise ValueError("give the program by its absolute path")
        return v


class QuarantineSection(_Strict):
    directory: str = "quarantine"
    # With `store = "postgresql://..."`: keep held messages (index and bytes) in that database,
    # shared by every node, so that any node's CLI can review any node's messages. False keeps
    # them in `directory` on each node.
    shared: bool = True
    # How long held, released and deleted messages are kept before `quarantine purge` removes
    # them (and their recipients' addresses) for good.
    retention: str = "30d"
    # A release that started this long ago and never finished (the releasing process died) is
    # reported as stuck; `release --retry-stale` may then send it again.
    stale_claim: str = "15m"
    notify: Notify = Notify()

    @field_validator("retention", "stale_claim")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v


class Audit(_Strict):
    # How recipient (and sender) addresses appear in the audit log: a keyed hash, or clear.
    addresses: Literal["hash", "clear"] = "hash"
    level: Literal["debug", "info", "warning", "error"] = "info"
    # "auto": pretty when stdout is a terminal, JSON lines otherwise (journald, files).
    format: Literal["json", "console", "auto"] = "auto"


class MilterSection(_Strict):
    """`sendwarden milter`: the policy engine called by Postfix or Sendmail (docs/milter.md)."""

    # inet:HOST:PORT or unix:/path, as Postfix's smtpd_milters names it.
    address: str = "inet:127.0.0.1:8891"
    # Where a quarantined message goes: the MTA's hold queue, sendwarden's quarantine (the MTA
    # discards its copy once ours is on disk), or both.
    quarantine: Literal["mta", "sendwarden", "both"] = "mta"
    # What a failure or timeout of the engine becomes: never mail let through unchecked by default.
    on_error: Literal["tempfail", "quarantine", "accept"] = "tempfail"
    command_timeout: float = Field(default=10, gt=0)
    message_timeout: float = Field(default=60, gt=0)

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        if not v.startswith(("inet:", "unix:")):
            raise ValueError("expected inet:HOST:PORT or unix:/path")
        return v


class MetricsSection(_Strict):
    # Where /metrics (Prometheus) and /healthz listen. Empty: off.
    address: HostPortOrOff = ""
    # How often the upstream is probed for /healthz, in seconds.
    probe_interval: float = Field(default=15, gt=0)



class RateLimit(_Strict):
    """At most `messages` and/or `recipients` per `window` seconds, per key (a token bucket:
    the full amount may come at once, then it refills evenly over the window)."""

    name: str
    per: Literal["client_ip", "auth_user", "sender_domain", "recipient_domain"]
    messages: int = Field(default=0, ge=0)
    recipients: int = Field(default=0, ge=0)
    window: float = Field(default=60, gt=0)
    # Traffic classes it counts: stream names, or "bounce" for the null sender. Empty: all.
    classes: list[str] = Field(default_factory=list)
    # recipient_domain only: limit just these domains (each separately). Empty: every domain.
    domains: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> "RateLimit":
        if not (self.messages or self.recipients):
            raise ValueError("set messages and/or recipients")
        if self.domains and self.per != "recipient_domain":
            raise ValueError("domains only goes with per = \"recipient_domain\"")
        return self


class ConnectionRate(_Strict):
    # New connections per client IP per window; over it, 421 and close. 0: off.
    per_client: int = Field(default=0, ge=0)
    window: float = Field(default=60, gt=0)


class AddressDomain(_Strict):
    """Per-domain exceptions to [addresses]; unset keys inherit."""

    fold_local_case: bool | None = None
    plus_tag: str | None = Field(default=None, max_length=1)
    ignore_dots: bool | None = None


def _provider_domains() -> dict[str, AddressDomain]:
    # Gmail delivers re.ader@ and reader@ to one mailbox.
    return {"gmail.com": AddressDomain(ignore_dots=True), "googlemail.com": AddressDomain(ignore_dots=True)}


class Addresses(_Strict):
    """How recipient addresses are normalised before the store files or finds them, so that
    `Reader+news@Example.org` finds the suppression of `reader@example.org`. Decide before the
    first import: changing the rules changes the keys."""

    fold_local_case: bool = True
    plus_tag: str = Field(default="+", max_length=1)  # "" keeps sub-addresses apart
    ignore_dots: bool = False
    domains: dict[str, AddressDomain] = Field(default_factory=_provider_domains)

    @field_validator("domains")
    @classmethod
    def _domains(cls, v: dict[str, AddressDomain]) -> dict[str, AddressDomain]:
        from proxy.store.address import InvalidAddress, a_label

        for name in v:
            try:
                a_label(name)
            except InvalidAddress as exc:
                raise ValueError(str(exc)) from None
        return v


class Unsubscribe(_Strict):
    """The unsubscribe loop: the one-click HTTP endpoint, the mailto address, the token key."""

    # HOST:PORT the HTTP endpoint listens on (behind a TLS-terminating proxy); "" = no endpoint.
    listen: HostPortOrOff = ""
    # The public https URL of that endpoint, as written into List-Unsubscribe.
    base_url: str = ""
    # Mail to LOCAL+TOKEN@mailto_domain is taken on the SMTP listener as an unsubscribe.
    mailto_domain: str = ""
    mailto_local: str = Field(default="unsubscribe", pattern=r"^[A-Za-z0-9._-]{1,32}$")
    # The HMAC key for tokens; created (0600) on first start when missing. A fleet shares one.
    key_file: str = ""
    token_days: int = Field(default=90, ge=1, le=3650)
    max_body: int = Field(default=8192, ge=256, le=1_048_576)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        if v and not v.startswith("https://"):
            raise ValueError("must be an https:// URL (RFC 8058 one-click needs https)")
        return v.rstrip("/")

    @field_validator("mailto_domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        from proxy.store.address import InvalidAddress, a_label

        try:
            return a_label(v) if v else v
        except InvalidAddress as exc:
            raise ValueError(str(exc)) from None


class Complaints(_Strict):
    # Mail to this address is taken on the SMTP listener: ARF abuse reports suppress the
    # complainant, everything else lands in `directory` (a Maildir) for people to read.
    address: str = ""
    directory: str = "complaints"
    # Who may make an ARF report suppress (anyone can send one): reporter domains whose DKIM
    # signature on the report verifies (the mailbox providers' feedback loops, e.g.
    # "fbl.yahoo.com"), and client networks (e.g. your own MTA that forwards them). A report
    # from anyone else, or naming no recipient this relay sent to, is kept for people only.
    feedback_domains: list[str] = Field(default_factory=list)
    feedback_networks: list[str] = Field(default_factory=list)
    # Mail to the complaints and unsubscribe addresses comes from outsiders: its own size
    # limit, and at most `per_client` messages per `window` from one client address.
    max_size: int = Field(default=1_048_576, ge=65_536, le=52_428_800)
    per_client: int = Field(default=20, ge=1)
    window: float = Field(default=3600.0, gt=0)

    @field_validator("feedback_networks")
    @classmethod
    def _feedback_networks(cls, v: list[str]) -> list[str]:
        return valid_networks(v)

    @field_validator("feedback_domains")
    @classmethod
    def _feedback_domains(cls, v: list[str]) -> list[str]:
        return [d.strip().lower().rstrip(".") for d in v if d.strip()]

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        if v and ("@" not in v or v.startswith("@") or v.endswith("@")):
            raise ValueError(f"{v!r} is not an address")
        return v.strip().lower()
SIGNED_HEADERS = (
    "From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
    "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-ID", "Content-Description",
    "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Help", "List-Subscribe", "List-Post",
    "List-Owner", "List-Archive", "Feedback-ID",
)
# Oversigned: signed once more than they occur, so that nobody can add one on the way (a second
# From, a Reply-To, unsubscribe headers: Gmail and Yahoo want these covered) without breaking the
# signature. Date, Message-ID and the MIME headers are signed but not oversigned: an MTA may add
# a missing Date or Message-ID, and must not break the signature by doing so.
OVERSIGNED_HEADERS = (
    "From", "Sender", "Reply-To", "To", "Cc", "Subject", "List-Unsubscribe", "List-Unsubscribe-Post",
)


class Dns(_Strict):
    """The one resolver (proxy/dns.py). No nameservers: the system's /etc/resolv.conf."""

    nameservers: list[str] = Field(default_factory=list)  # "ADDRESS" or "ADDRESS:PORT"
    timeout: float = Field(default=3.0, gt=0, le=60)  # one whole lookup, retries included
    cache_size: int = Field(default=10_000, ge=0)  # answers kept; 0 turns the cache off
    max_ttl: float = Field(default=3600, gt=0)  # no answer is kept longer, whatever its TTL

    @field_validator("nameservers")
    @classmethod
    def _nameservers(cls, v: list[str]) -> list[str]:
        from proxy.dns import parse_nameserver

        for n in v:
            parse_nameserver(n)
        return v


class Recipients(_Strict):
    """RCPT-time checks that need the network (the policy says what a finding does)."""

    # recipient.domain_unroutable: resolve each recipient domain (MX, else A/AAAA) at RCPT and
    # refuse domains that cannot receive mail. Turn off for a relay whose upstream does its
    # own routing (a smarthost that rewrites or routes domains the public DNS does not know).
    verify_domains: bool = True


class Links(_Strict):
    """`sendwarden links check`: the prober of the privacy links senders put in their mail."""

    # The prober connects to global addresses only, so that a sender's link cannot reach into
    # the network it runs in (10.0.0.5, a name resolving to 127.0.0.1, a redirect to
    # 169.254.169.254). Internal ranges it may reach anyway, e.g. ["10.20.0.0/16"] for privacy
    # pages served from your own network.
    allow_networks: Networks = Field(default_factory=list)
    concurrency: int = Field(default=8, ge=1, le=256)
    timeout: float = Field(default=10, gt=0, le=120)  # seconds per URL


class ReputationSection(_Strict):
    """Dead privacy links and complaint rates, shared by a fleet through the store."""

    # How often each relay re-reads them from the store (seconds): a mark made by `links
    # check`, or a complaint rate crossing its limit, acts on new messages within this time.
    refresh: float = Field(default=60, gt=0, le=3600)


class DkimKey(_Strict):
    """One signing key: mail whose From domain is `domain` (or a subdomain of it) is signed with
    d=`domain`, s=`selector`. Several keys for one domain (RSA and Ed25519) all sign."""

    domain: str
    selector: str
    key: str  # PEM private key file (RSA or Ed25519), see `sendwarden dkim keygen`

    @field_validator("domain")
    @classmethod
    def _domain(cls, v: str) -> str:
        from proxy.message.domains import to_alabel

        a = to_alabel(v)
        if a is None or "." not in a:
            raise ValueError(f"{v!r} is not a domain name")
        return a

    @field_validator("selector")
    @classmethod
    def _selector(cls, v: str) -> str:
        from proxy.message.domains import to_alabel

        if to_alabel(v) != v.lower():
            raise ValueError(f"{v!r}: a selector is one or more DNS labels (letters, digits, '-', '.')")
        return v.lower()


class Dkim(_Strict):
    """DKIM signing on the way out (the last change made to a message)."""

    sign: bool = True
    keys: list[DkimKey] = Field(default_factory=list)
    # Header fields signed when present, and those signed once more than present
    # ("oversigned"), so that nobody can add one later without breaking the signature.
    headers: list[str] = Field(default_factory=lambda: list(SIGNED_HEADERS))
    oversign: list[str] = Field(default_factory=lambda: list(OVERSIGNED_HEADERS))

    @model_validator(mode="after")
    def _check(self) -> "Dkim":
        names = {h.lower() for h in self.headers}
        if "from" not in names:
            raise ValueError("headers must include From (RFC 6376 5.4)")
        bad = names & {"received", "return-path", "dkim-signature", "bcc", "resent-bcc"}
        if bad:
            raise ValueError(f"headers must not include {', '.join(sorted(bad))} (RFC 6376 5.4)")
        seen = [(k.domain, k.selector) for k in self.keys]
        if len(set(seen)) != len(seen):
            raise ValueError("each (domain, selector) pair may appear once")
        return self


class ConfigFile(_Strict):
    hostname: str = "localhost"
    # Processes serving the SMTP listeners together (SO_REUSEPORT), to use every core. 0 (the
    # default): one per CPU this service may use (taskset, systemd's CPUAffinity=). They share
    # rate limits and per-client connection counts (a file in state_dir) and /metrics counts
    # them all; 1: one process, nothing shared.
    workers: int = Field(default=0, ge=0, le=64)
    # Which CPU each worker process runs on. "none": wherever the kernel likes. "auto": worker
    # I on the I-th CPU this service may use (as nginx's worker_cpu_affinity auto), so that a
    # worker's event loop and its store threads share a core: each store call is then a
    # same-core thread hop (~25 us) instead of two cross-core wake-ups (~100 us on a VM).
    # A list of CPU numbers: worker I on the (I mod length)-th of them, e.g. to leave the
    # MTA's cores free. Read at start (a reload does not move running processes).
    cpu_affinity: Literal["none", "auto"] | Annotated[list[Annotated[int, Field(ge=0, le=4095)]], Field(min_length=1)] = "none"
    policy: str = "builtin:default"
    state_dir: str = "var"
    # Recipient state (suppressions, consent, frequency, privacy links): sqlite:PATH, or
    # postgresql://USER@HOST/DB shared by a fleet of relays (docs/fleet.md).
    # Default: sqlite:STATE_DIR/recipients.sqlite3.
    store: str = ""
    # Client networks that may relay without AUTH. Everybody else must authenticate.
    relay_networks: Networks = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    listeners: list[Listener] = Field(default_factory=lambda: [Listener()])
    tls: TLS = TLS()
    auth: Auth = Auth()
    upstream: UpstreamSection = UpstreamSection()
    limits: Limits = Limits()
    timeouts: Timeouts = Timeouts()
    smtp: Smtp = Smtp()
    quarantine: QuarantineSection = QuarantineSection()
    audit: Audit = Audit()
    metrics: MetricsSection = MetricsSection()
    milter: MilterSection = MilterSection()
    rate_limits: list[RateLimit] = Field(default_factory=list)
    connection_rate: ConnectionRate = ConnectionRate()
    addresses: Addresses = Addresses()
    unsubscribe: Unsubscribe = Unsubscribe()
    complaints: Complaints = Complaints()
    dns: Dns = Dns()
    recipients: Recipients = Recipients()
    reputation: ReputationSection = ReputationSection()
    links: Links = Links()
    dkim: Dkim = Dkim()

    @field_validator("rate_limits")
    @classmethod
    def _limit_names(cls, v: list[RateLimit]) -> list[RateLimit]:
        names = [x.name for x in v]
        if len(set(names)) != len(names):
            raise ValueError("rate limit names must be unique")
        return v

    @field_validator("store")
    @classmethod
    def _store(cls, v: str) -> str:
        if v.startswith(("postgresql://", "postgres://")):
            from urllib.parse import urlsplit

            parts = urlsplit(v)
            _ = parts.port  # raises ValueError on a malformed port
            if not parts.hostname or parts.path.strip("/") == "":
                raise ValueError("expected postgresql://USER@HOST[:PORT]/DATABASE")
            return v
        if v and not (v.startswith("sqlite:") and len(v) > len("sqlite:")):
            raise ValueError("expected sqlite:PATH or postgresql://USER@HOST[:PORT]/DATABASE")
        return v

    @field_validator("listeners")
    @classmethod
    def _listeners(cls, v: list[Listener]) -> list[Listener]:
        if not v:
            raise ValueError("at least one listener is needed")
        for listener in v:
            for net in listener.proxy_networks:
                try:
                    ipaddress.ip_network(net, strict=False)
                except ValueError as exc:
                    raise ValueError(f"proxy_networks: {net!r}: {exc}") from None
        names = [listener.name for listener in v]
        if len(set(names)) != len(names):
            raise ValueError("listener names must be unique")
        return v


class Config:
    """The loaded configuration with paths resolved. `file` is the validated TOML model."""

    def __init__(self, file: ConfigFile, source: str, base: Path) -> None:
        self.file = file
        self.source = source
        self.base = base
        self.relay_networks = tuple(ipaddress.ip_network(n, strict=False) for n in file.relay_networks)

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.base / p

    @property
    def state_dir(self) -> Path:
        return self.path(self.file.state_dir)

    @property
    def quarantine_dir(self) -> Path:
        return self._under_state(self.file.quarantine.directory)

    def _under_state(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else self.state_dir / p

    @property
    def quarantine_url(self) -> str:
        """The database of the shared quarantine, or "" for the local directory."""
        url = self.store_url
        return url if self.file.quarantine.shared and not url.startswith("sqlite:") else ""

    @property
    def store_url(self) -> str:
        store = self.file.store
        if not store:
            return f"sqlite:{self.state_dir / 'recipients.sqlite3'}"
        if not store.startswith("sqlite:"):
            return store  # postgresql://
        return "sqlite:" + str(self.path(store[len("sqlite:"):]))

    @property
    def unsubscribe_key_path(self) -> Path:
        return self.path(self.file.unsubscribe.key_file) if self.file.unsubscribe.key_file else self.state_dir / "unsubscribe.key"

    @property
    def complaints_dir(self) -> Path:
        return self._under_state(self.file.complaints.directory)

    @property
    def policy_path(self) -> str:
        p = self.file.policy
        return p if p.startswith("builtin:") else str(self.path(p))

    def upstream_url(self) -> str:
        url = self.file.upstream.url
        if url.startswith("maildir:"):
            return "maildir:" + str(self.path(url[len("maildir:"):]))
        return url

    def may_relay(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.relay_networks)

    def replace(self, **changes: object) -> "Config":
        """A copy with top-level keys replaced (used by command-line overrides)."""
        data = self.file.model_dump()
        data.update(changes)
        return Config(validate(ConfigFile, data, self.source), self.source, self.base)


SYSTEM_CONFIG = Path("/etc/sendwarden/sendwarden.toml")
CONFIG_ENV = "SENDWARDEN_CONFIG"


def locate_config(explicit: str | None, environ: dict[str, str] | None = None,
                  system: Path = SYSTEM_CONFIG) -> tuple[Path | None, str]:
    """Which service configuration a command uses, and why: `--config`, then
    $SENDWARDEN_CONFIG, then /etc/sendwarden/sendwarden.toml, then the embedded development
    default (None). Every command resolves it this way, so that a command run in the wrong
    directory cannot quietly work on a development store under ./var."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit), "--config"
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]), f"${CONFIG_ENV}"
    if system.exists():
        return system, "the system configuration"
    return None, f"no --config, no ${CONFIG_ENV}, no {system}"


def load_config(path: str | Path | None) -> Config:
    """Load a service configuration file, or the embedded default when `path` is None."""
    if path is None:
        text = resources.files("proxy").joinpath("defaults/sendwarden.toml").read_text(encoding="utf-8")
        return Config(validate(ConfigFile, load_toml(EMBEDDED, text), EMBEDDED), EMBEDDED, Path.cwd())
    p = Path(path)
    return Config(validate(ConfigFile, load_toml(p), p), str(p), p.resolve().parent)


__all__ = ["CONFIG_ENV", "Config", "ConfigError", "ConfigFile", "SYSTEM_CONFIG", "load_config", "locate_config",
           "parse_duration", "parse_hostport"]
