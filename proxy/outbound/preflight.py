"""DNS preflight for a sending domain (`sendwarden dns-check`): what an ops person checks
before pointing production mail at sendwarden, against the Gmail/Yahoo bulk-sender rules.

- SPF: exactly one record, valid, within the RFC 7208 limits of 10 DNS-querying terms and 2 void
  lookups, and authorising the relay's IP when given. Evaluated by pyspf (the reference Python
  SPF implementation), whose lookups go through sendwarden's own resolver.
- DKIM: for each selector, a key record that parses, is long enough, and matches the local key.
- DMARC: a record at _dmarc.DOMAIN (or at the organisational domain) and its policy.
- MX: where replies and bounces to the domain go (a warning when missing: not a bulk-sender rule).
- PTR: the relay IP's reverse name, confirmed forward (it resolves back to the IP).

Every check ends in pass / warn / fail / skip; a failed `required` check is an unmet bulk-sender
requirement. A DNS failure is a failed check with the reason, never an exception.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import threading
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import dkim
import dkim.util

from proxy.outbound.dkimkeys import SigningKey
from proxy.dns import DnsFailure, Records, Resolver
from proxy.message.domains import org_domain

with warnings.catch_warnings():  # pyspf 2.0.14 has invalid escape sequences (SyntaxWarning)
    warnings.simplefilter("ignore")
    import spf

Status = Literal["pass", "warn", "fail", "skip"]
# An address no SPF record is expected to name, to walk a record to its end (counting lookups).
PROBE_IP = "0.0.0.0"
_spf_lock = threading.Lock()

__all__ = ["Item", "run"]


@dataclass
class Item:
    check: str
    status: Status
    detail: str
    required: bool = True
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def run(domain: str, resolver: Resolver, selectors: list[tuple[str, SigningKey | None]],
              relay_ip: str | None = None) -> list[Item]:
    """Every check for `domain` (A-label), concurrently."""
    checks = [spf_check(domain, resolver, relay_ip)]
    checks += [dkim_check(domain, sel, key, resolver) for sel, key in selectors] or [_no_selector(domain)]
    checks += [dmarc_check(domain, resolver), mx_check(domain, resolver), ptr_check(relay_ip, resolver)]
    return list(await asyncio.gather(*checks))


async def _no_selector(domain: str) -> Item:
    return Item("DKIM", "fail", f"no selector to check: give --selector, or configure [[dkim.keys]] for {domain}")


def _failed(check: str, exc: Exception) -> Item:
    return Item(check, "fail", f"DNS lookup failed, cannot tell: {exc}")


# -- SPF ------------------------------------------------------------------------------------------

def _bridge(resolver: Resolver, loop: asyncio.AbstractEventLoop, timeout: float) -> Any:
    """pyspf's DNSLookup(name, qtype, strict, timeout) over our resolver (called in a thread)."""

    def lookup(name: str, qtype: str, strict: Any = True, _timeout: Any = None) -> list[tuple[tuple[str, str], Any]]:
        future = asyncio.run_coroutine_threadsafe(resolver.query(name, qtype), loop)
        try:
            rec: Records = future.result(timeout + 1)
        except (DnsFailure, concurrent.futures.TimeoutError) as exc:
            raise spf.TempError(f"DNS {exc or 'timeout'}") from None
        if qtype in ("TXT", "SPF"):
            return [((name, qtype), [v.encode()]) for v in rec.values]
        return [((name, qtype), v) for v in rec.values]

    return lookup


def _evaluate(domain: str, ip: str, lookup: Any, timeout: float) -> tuple[str, str, int]:
    with _spf_lock:
        saved, spf.DNSLookup = spf.DNSLookup, lookup  # pyspf's backend hook, restored below
        try:
            q = spf.query(i=ip, s=f"postmaster@{domain}", h=domain, strict=True, timeout=timeout, querytime=timeout * 4)
            result, _code, explanation = q.check()
            return result, explanation, q.lookups
        finally:
            spf.DNSLookup = saved


async def spf_check(domain: str, resolver: Resolver, relay_ip: str | None) -> Item:
    try:
        records = [t for t in await resolver.txt(domain) if t.lower().startswith("v=spf1") and (len(t) == 6 or t[6] == " ")]
    except DnsFailure as exc:
        return _failed("SPF", exc)
    if not records:
        return Item("SPF", "fail", f"no SPF record (TXT v=spf1) at {domain}")
    if len(records) > 1:
        return Item("SPF", "fail", f"{len(records)} SPF records at {domain}: receivers treat that as permerror",
                    data={"records": records})
    record = records[0]
    loop = asyncio.get_running_loop()
    lookup = _bridge(resolver, loop, resolver.timeout)
    result, why, lookups = await asyncio.to_thread(_evaluate, domain, PROBE_IP, lookup, resolver.timeout)
    data: dict[str, Any] = {"record": record, "lookups": lookups}
    if result in ("permerror", "temperror"):
        return Item("SPF", "fail", f"{record!r}: {result}: {why}", data=data)
    parts = [f"{record} ({lookups} of {spf.MAX_LOOKUP} DNS lookups)"]
    status: Status = "pass"
    if result == "pass":  # even an address nobody would list passes: +all or a very wide range
        status, parts = "warn", [*parts, "it authorises any address (+all?)"]
    if relay_ip:
        result, why, _ = await asyncio.to_thread(_evaluate, domain, relay_ip, lookup, resolver.timeout)
        data["relay_ip"], data["result"] = relay_ip, result
        if result != "pass":
            return Item("SPF", "fail", f"{record}: the relay {relay_ip} is not authorised ({result}: {why})", data=data)
        parts.append(f"authorises the relay {relay_ip}")
    return Item("SPF", status, "; ".join(parts), data=data)


# -- DKIM -----------------------------------------------------------------------------------------

async def dkim_check(domain: str, selector: str, local: SigningKey | None, resolver: Resolver) -> Item:
    name = f"{selector}._domainkey.{domain}"
    check = f"DKIM {selector}"
    try:
        records = [t for t in await resolver.txt(name) if "p=" in t]
    except DnsFailure as exc:
        return _failed(check, exc)
    if not records:
        return Item(check, "fail", f"no DKIM key record at {name}")
    if len(records) > 1:
        return Item(check, "fail", f"{len(records)} key records at {name}: which one verifiers take is undefined")
    record = records[0]
    data: dict[str, Any] = {"name": name, "record": record}
    try:
        _pk, bits, ktype, _tls = dkim.evaluate_pk(name.encode(), record.encode())
        tags = dkim.util.parse_tag_value(record.encode())
    except Exception as exc:
        return Item(check, "fail", f"{name}: the key record does not parse: {exc or type(exc).__name__}", data=data)
    kind = ktype.decode()
    data.update(type=kind, bits=bits)
    if kind == "rsa" and bits < 1024:
        return Item(check, "fail", f"{name}: RSA key of {bits} bits; receivers need at least 1024", data=data)
    p = b"".join(tags.get(b"p", b"").split()).decode()
    notes, status = [f"{name}: {kind}" + (f" {bits} bits" if kind == "rsa" else "")], "pass"
    if local is not None:
        if p != local.public:
            return Item(check, "fail", f"{name} does not match the local key {local.path}: publish `{local.record}`",
                        data=data)
        notes.append(f"matches {local.path}")
    else:
        notes.append("no local key to compare")
    if kind == "rsa" and bits < 2048:
        status, notes = "warn", [*notes, "use 2048 bits"]
    if b"y" in tags.get(b"t", b"").split(b":"):
        status, notes = "warn", [*notes, "t=y: testing mode, verifiers may ignore failures"]
    return Item(check, status, "; ".join(notes), data=data)  # type: ignore[arg-type]


# -- DMARC, MX, PTR ---------------------------------------------------------------------------------

async def dmarc_check(domain: str, resolver: Resolver) -> Item:
    org = org_domain(domain)
    try:
        where, records = f"_dmarc.{domain}", await _dmarc_records(resolver, domain)
        if not records and org != domain:
            where, records = f"_dmarc.{org}", await _dmarc_records(resolver, org)
    except DnsFailure as exc:
        return _failed("DMARC", exc)
    if not records:
        return Item("DMARC", "fail", f"no DMARC record at _dmarc.{domain}" + (f" or _dmarc.{org}" if org != domain else ""))
    if len(records) > 1:
        return Item("DMARC", "fail", f"{len(records)} DMARC records at {where}: receivers ignore them all")
    try:
        tags = {k.decode(): v.decode() for k, v in dkim.util.parse_tag_value(records[0].encode()).items()}
    except Exception as exc:
        return Item("DMARC", "fail", f"{where}: the record does not parse: {exc}")
    tag_p = "sp" if where != f"_dmarc.{domain}" and "sp" in tags else "p"
    policy = tags.get(tag_p, "").lower()
    data = {"name": where, "record": records[0], "policy": policy, **{k: tags[k] for k in ("rua", "pct", "adkim", "aspf") if k in tags}}
    if policy not in ("none", "quarantine", "reject"):
        return Item("DMARC", "fail", f"{where}: {tag_p}= is {policy or 'missing'}; it must be none, quarantine or reject", data=data)
    detail = f"{tag_p}={policy} at {where}" + (f" (rua={tags['rua']})" if "rua" in tags else " (no rua=: no aggregate reports)")
    if policy == "none":
        return Item("DMARC", "pass", detail + "; p=none only monitors: move to quarantine or reject once reports are clean", data=data)
    return Item("DMARC", "pass", detail, data=data)


async def _dmarc_records(resolver: Resolver, domain: str) -> list[str]:
    return [t for t in await resolver.txt(f"_dmarc.{domain}") if t.strip().lower().startswith("v=dmarc1")]


async def mx_check(domain: str, resolver: Resolver) -> Item:
    try:
        mx = await resolver.mx(domain)
    except DnsFailure as exc:
        return _failed("MX", exc)
    hosts = ", ".join(f"{pref} {host}" for pref, host in mx)
    if not mx:
        return Item("MX", "warn", f"no MX for {domain}: replies and bounces to it cannot be delivered", required=False)
    if [host for _, host in mx] == ["."]:
        return Item("MX", "warn", f"null MX (RFC 7505): {domain} receives no mail", required=False, data={"mx": mx})
    return Item("MX", "pass", hosts, required=False, data={"mx": mx})


async def ptr_check(ip: str | None, resolver: Resolver) -> Item:
    if not ip:
        return Item("PTR", "skip", "give --relay-ip to check the relay's reverse DNS", required=False)
    try:
        addr = str(ipaddress.ip_address(ip))
        names = await resolver.ptr(addr)
        if not names:
            return Item("PTR", "fail", f"no PTR record for {addr}")
        for name in names:
            if addr in [str(ipaddress.ip_address(a)) for a in await resolver.addresses(name)]:
                return Item("PTR", "pass", f"{addr} → {name} → {addr}", data={"ip": addr, "name": name})
    except DnsFailure as exc:
        return _failed("PTR", exc)
    return Item("PTR", "fail", f"{addr} → {', '.join(names)}, which does not resolve back to {addr}",
                data={"ip": addr, "names": names})
