"""Sender identity (AUP: you are the only or designated sender; the From line identifies your
organisation accurately and does not hide the source; Gmail/Yahoo: DKIM and DMARC alignment).

- `sender.from_invalid`: not exactly one parseable From address.
- `sender.domain_not_allowed`: the From domain is not one this stream / user may send as.
- `sender.misaligned`: envelope sender, Sender or Reply-To not aligned with From.
- `sender.display_name_spoof`: the display name carries another address, an unaligned domain,
  or a protected brand that From does not belong to.
- `sender.lookalike_domain`: the From domain imitates a protected brand's domain.
- `sender.dkim_fail`: an existing DKIM signature fails, or verifies but does not align.
Domains are compared in A-label form; options are in sender_options.py.
"""

from __future__ import annotations

from typing import Iterator

from proxy.message.domains import addresses_in, aligned, domain_of, domains_in, to_alabel, to_ulabel
from proxy.policy.context import LookupFailed
from proxy.message.mime import Message
from proxy.policy.checks.sender_options import SenderOptions
from proxy.policy.context import Context
from proxy.policy.registry import Options, check
from proxy.policy.verdict import Finding


@check("sender", rules=("sender.from_invalid",))
def from_header(msg: Message, ctx: Context, opts: Options) -> Iterator[Finding]:
    count = msg.count("From")
    if count != 1:
        yield Finding(
            "sender.from_invalid",
            f"{count} From headers",
            "send exactly one From header naming your organisation's address",
        )
        return
    pairs = msg.from_addresses
    if len(pairs) != 1:
        yield Finding(
            "sender.from_invalid",
            f"From holds {len(pairs)} addresses",
            "use a single address in From (RFC 5322 then requires a Sender header)",
        )
        return
    _, addr = pairs[0]
    local, at, domain = addr.rpartition("@")
    if not at or not local or "." not in domain or domain.startswith(".") or domain.endswith(".") or to_alabel(domain) is None:
        yield Finding(
            "sender.from_invalid",
            f"From address {addr!r} is not a valid address",
            "put a complete address (name@example.com) in From",
        )


def from_domain(msg: Message) -> str | None:
    """The A-label domain of the one From address; None when From is invalid (from_header
    reports that, so the other checks stay silent rather than repeat it). Found once per
    message for the five checks that ask."""
    return msg.memo("sender.from_domain", lambda: _from_domain(msg))


def _from_domain(msg: Message) -> str | None:
    if msg.count("From") != 1 or len(msg.from_addresses) != 1:
        return None
    return to_alabel(domain_of(msg.from_addresses[0][1]))


@check("sender", rules=("sender.domain_not_allowed",))
def domain_allowed(msg: Message, ctx: Context, opts: SenderOptions) -> Iterator[Finding]:
    allowed = opts.allowed(ctx.stream, ctx.auth_user)
    dom = from_domain(msg)
    if allowed is None or dom is None or allowed.permits(dom):
        return
    who = f"user {ctx.auth_user}" if ctx.auth_user else f"stream {ctx.stream}"
    yield Finding(
        "sender.domain_not_allowed",
        f"From domain {to_ulabel(dom)} is not one {who} may send as ({allowed.describe()})",
        "send from one of your own domains, or ask the relay's operator to add this one",
    )


def _identities(msg: Message, ctx: Context, opts: SenderOptions) -> Iterator[tuple[str, str]]:
    mail_from = ctx.mail_from.strip().strip("<>")
    if "mail_from" in opts.align and mail_from:  # the null sender <> of a bounce has none
        yield "envelope sender", mail_from
    if "sender" in opts.align:
        for _, addr in msg.addresses("Sender"):
            yield "Sender", addr
    if "reply_to" in opts.align:
        for _, addr in msg.addresses("Reply-To"):
            yield "Reply-To", addr


@check("sender", rules=("sender.misaligned",))
def alignment(msg: Message, ctx: Context, opts: SenderOptions) -> Iterator[Finding]:
    dom = from_domain(msg)
    if dom is None:
        return
    for what, addr in _identities(msg, ctx, opts):
        other = to_alabel(domain_of(addr)) if "@" in addr else None
        if other is not None and aligned(other, dom, opts.alignment):
            continue
        shown = to_ulabel(other) if other else repr(addr)
        yield Finding(
            "sender.misaligned",
            f"{what} {shown} is not aligned with From domain {to_ulabel(dom)} ({opts.alignment})",
            f"use an address under {to_ulabel(dom)} for the {what}"
            + (" (a subdomain such as bounces.<your domain> is fine)" if opts.alignment == "relaxed" else ""),
        )


@check("sender", rules=("sender.display_name_spoof",))
def display_name(msg: Message, ctx: Context, opts: SenderOptions) -> Iterator[Finding]:
    dom = from_domain(msg)
    if dom is None:
        return
    name, addr = msg.from_addresses[0]
    if not name:
        return
    remedy = "put only your organisation's name in the display name"
    for shown in addresses_in(name):
        if shown.lower() != addr.lower():
            yield Finding("sender.display_name_spoof", f"display name {name!r} carries the address {shown}", remedy)
    for d in domains_in(name):
        if not aligned(d, dom, "relaxed"):
            yield Finding("sender.display_name_spoof",
                          f"display name {name!r} names {to_ulabel(d)}, but From is {to_ulabel(dom)}", remedy)
    for brand in opts.brands_named(name):
        if not any(aligned(dom, own) for own in brand.orgs):
            yield Finding("sender.display_name_spoof",
                          f"display name {name!r} names the protected brand {brand.name}, but From is {to_ulabel(dom)}",
                          f"only {', '.join(sorted(brand.orgs))} may send as {brand.name}")


@check("sender", rules=("sender.lookalike_domain",))
def lookalike(msg: Message, ctx: Context, opts: SenderOptions) -> Iterator[Finding]:
    dom = from_domain(msg)
    hit = opts.imitated_brand(dom) if dom else None
    if hit is not None:
        brand, how = hit
        yield Finding("sender.lookalike_domain", f"From domain {to_ulabel(dom or '')} ({dom}) imitates {brand.name}: {how}",
                      "send from your own domain, not one that looks like another organisation's")


def _dns_failed(opts: SenderOptions, detail: str) -> Iterator[Finding]:
    if opts.dns_failure == "lookup_failed":
        yield Finding("lookup.failed", detail, "a DNS lookup failed; try again later")
    elif opts.dns_failure == "dkim_fail":
        yield Finding("sender.dkim_fail", detail, "publish the DKIM key where resolvers can reach it")


@check("sender", rules=("sender.dkim_fail", "lookup.failed"))
def dkim_signatures(msg: Message, ctx: Context, opts: SenderOptions) -> Iterator[Finding]:
    fact = (ctx.facts or {}).get("dkim")
    if not opts.dkim_verify or fact is None:
        return  # not looked up (offline scan): nothing to judge
    if isinstance(fact, LookupFailed):
        yield from _dns_failed(opts, f"DKIM verification: {fact.reason}")
        return
    dom = from_domain(msg)
    for sig in fact.signatures:
        where = f"DKIM signature d={sig.domain} s={sig.selector}"
        if sig.status == "temperror":
            yield from _dns_failed(opts, f"{where}: {sig.reason}")
        elif sig.status != "pass":
            yield Finding("sender.dkim_fail", f"{where}: {sig.status}: {sig.reason}",
                          "sign after the last change to the message with a published key, or remove the broken signature")
        elif opts.dkim_require_aligned and dom is not None:
            signer = to_alabel(sig.domain)
            if signer is None or not (aligned(signer, dom, opts.alignment) or opts.third_party(signer)):
                yield Finding("sender.dkim_fail", f"{where} verifies but does not align with From domain {to_ulabel(dom)}",
                              f"sign with d={to_ulabel(dom)} (or its organisational domain)")
    if fact.not_verified:
        yield Finding("sender.dkim_fail", f"{fact.not_verified} DKIM signatures beyond the {opts.dkim_max_signatures} verified",
                      "sign once per signing domain")
