"""DKIM verification of what arrives already signed, as the `dkim` fact of the sender checks.

Each signature's key is looked up through the one async resolver (shared TTL cache), then
dkimpy checks the signature against the fetched key. (dkimpy's own async path,
`dkim.asyncsupport`, imports aiodns at import time even when given another lookup function;
fetching first and then verifying offline keeps a single resolver and one dependency less.) A
DNS failure makes that signature `temperror`; the policy decides what that means. The result
records (`DkimVerification`, `SignatureResult`) live in the policy core
(proxy/policy/context.py), which reads them.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable

import dkim
import dkim.util

from proxy.dns import DnsFailure, Resolver
from proxy.facts.sources import FactSources
from proxy.message.mime import Message
from proxy.outbound.dkim import THREAD_ABOVE, FastDKIM, quiet
from proxy.policy.context import NOT_SIGNED, Context, DkimVerification, SignatureResult

__all__ = ["dkim_fact", "verify"]


def _key_record(records: list[str]) -> str | None:
    keys = [r for r in records if r.lstrip().startswith("v=DKIM1") or "p=" in r]
    return keys[0] if keys else None


async def verify(raw: bytes, resolver: Resolver, max_signatures: int = 5) -> DkimVerification:
    """Verify every DKIM signature of `raw` (up to `max_signatures`)."""
    try:
        d = FastDKIM(raw, logger=quiet, minkey=1024)
    except Exception as exc:  # a header block dkimpy cannot split: no signature can verify
        return DkimVerification((SignatureResult("", "", "permerror", f"message cannot be parsed for DKIM: {exc}"),))
    sig_values = [v for n, v in d.headers if n.lower() == b"dkim-signature"]
    tags: list[dict[bytes, bytes] | str] = []
    for value in sig_values[:max_signatures]:
        try:
            tags.append(dkim.util.parse_tag_value(value))
        except Exception as exc:
            tags.append(f"unparseable signature: {exc}")
    names = sorted({_name(t) for t in tags if isinstance(t, dict) and _name(t)})
    fetched = dict(zip(names, await asyncio.gather(*(_fetch(resolver, n) for n in names)), strict=True))
    keys = {n: r for n, r in fetched.items() if isinstance(r, str)}

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        record = keys.get(name.decode("ascii", "replace").lower().rstrip("."))
        return record.encode() if record is not None else None

    def run() -> list[SignatureResult]:
        out = []
        for idx, t in enumerate(tags):
            if isinstance(t, str):
                out.append(SignatureResult("", "", "permerror", t))
                continue
            dom = t.get(b"d", b"").decode("ascii", "replace").lower()
            sel = t.get(b"s", b"").decode("ascii", "replace").lower()
            name = _name(t)
            if not name:
                out.append(SignatureResult(dom, sel, "permerror", "signature lacks d= or s="))
                continue
            got = fetched[name]
            if isinstance(got, DnsFailure):
                out.append(SignatureResult(dom, sel, "temperror", f"key lookup failed: {got}"))
            elif got is None:
                out.append(SignatureResult(dom, sel, "permerror", f"no DKIM key published at {name}"))
            else:
                out.append(_key_problem(name, got, dom, sel) or _check(d, idx, dom, sel, lookup))
        return out

    results = await asyncio.to_thread(run) if len(raw) > THREAD_ABOVE else run()
    return DkimVerification(tuple(results), max(0, len(sig_values) - max_signatures))


def _name(tags: dict[bytes, bytes]) -> str:
    s, d = tags.get(b"s"), tags.get(b"d")
    if not s or not d:
        return ""
    return f"{s.decode('ascii', 'replace')}._domainkey.{d.decode('ascii', 'replace')}".lower().rstrip(".")


async def _fetch(resolver: Resolver, name: str) -> str | DnsFailure | None:
    try:
        return _key_record(await resolver.txt(name))
    except DnsFailure as exc:
        return exc


def _key_problem(name: str, record: str, dom: str, sel: str) -> SignatureResult | None:
    """A key record that cannot verify anything is a permanent error with a reason (dkimpy
    itself would only log it and answer False)."""
    try:
        dkim.evaluate_pk(name.encode(), record.encode())
    except Exception as exc:  # KeyFormatError, binascii.Error, ...: all mean an unusable record
        return SignatureResult(dom, sel, "permerror", f"bad key record at {name}: {exc or type(exc).__name__}")
    return None


def _check(d: dkim.DKIM, idx: int, dom: str, sel: str, lookup: Any) -> SignatureResult:
    try:
        ok = d.verify(idx, dnsfunc=lookup)
    except dkim.KeyFormatError as exc:
        return SignatureResult(dom, sel, "permerror", f"bad key record: {exc}")
    except (dkim.MessageFormatError, dkim.ParameterError) as exc:
        return SignatureResult(dom, sel, "permerror", f"malformed signature: {exc}")
    except dkim.DKIMException as exc:  # ValidationError: body hash mismatch, expired, ...
        return SignatureResult(dom, sel, "fail", str(exc))
    except Exception as exc:  # hostile input can break dkimpy in other ways; still a verdict
        return SignatureResult(dom, sel, "permerror", f"{type(exc).__name__}: {exc}")
    if ok:
        return SignatureResult(dom, sel, "pass")
    return SignatureResult(dom, sel, "fail", "signature does not match the signed header fields or the key")


def dkim_fact(sources: FactSources, message: Message, ctx: Context, opts: Any) -> DkimVerification | Awaitable[DkimVerification]:
    """The DKIM fact for the sender checks: at once (and no DNS) for unsigned mail, else the
    verification to await."""
    if not getattr(opts, "dkim_verify", True) or message.count("DKIM-Signature") == 0:
        return NOT_SIGNED
    return verify(message.raw, sources.resolver, getattr(opts, "dkim_max_signatures", 5))
