"""`sendwarden dns-check DOMAIN`: check a sending domain's DNS against the bulk-sender rules
(SPF, DKIM, DMARC, MX, PTR) before production mail goes out through sendwarden.

Exit status: 0 when every requirement checked is met, 11 when one is not (or DNS could not
tell); 64 and 78 for usage and configuration errors, as every command.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
from typing import Any

from proxy.commands.common import EXIT_NOT_READY, CliError, add_config, add_json, config_for, exits
from proxy.outbound.dkimkeys import KeyFileError, SigningKey, load_key
from proxy.dns import Resolver, parse_nameserver
from proxy.message.domains import to_alabel



def _selectors(args: argparse.Namespace, domain: str, config: Any) -> list[tuple[str, SigningKey | None]]:
    """The selectors to check, each with the local private key it must match (if known)."""
    configured = {k.selector: k for k in config.file.dkim.keys if k.domain == domain}
    wanted = [s.lower() for s in args.selector] or sorted(configured)
    out = []
    for sel in wanted:
        key = None
        if args.key:
            path = args.key
        elif sel in configured:
            path = str(config.path(configured[sel].key))
        else:
            path = ""
        if path:
            try:
                key = load_key(path, domain, sel)
            except KeyFileError as exc:
                raise CliError(str(exc)) from None
        out.append((sel, key))
    return out


def render(domain: str, items: list[dict[str, Any]], nameservers: list[str]) -> str:
    lines = [f"dns-check {domain} (nameservers: {', '.join(nameservers) or 'system'})", ""]
    width = max(len(i["check"]) for i in items) + 2
    lines.append("CHECK".ljust(width) + "STATUS  DETAIL")
    for i in items:
        lines.append(i["check"].ljust(width) + i["status"].ljust(8) + i["detail"])
    unmet = [i["check"] for i in items if i["required"] and i["status"] == "fail"]
    lines.append("")
    lines.append(f"NOT READY: unmet bulk-sender requirements: {', '.join(unmet)}" if unmet
                 else "ready: every bulk-sender requirement checked here is met")
    return "\n".join(lines)


def cmd_dns_check(args: argparse.Namespace) -> int:
    from proxy.outbound import preflight

    domain = to_alabel(args.domain)
    if domain is None or "." not in domain:
        raise CliError(f"{args.domain!r} is not a domain name")
    if args.relay_ip:
        try:
            ipaddress.ip_address(args.relay_ip)
        except ValueError:
            raise CliError(f"--relay-ip: {args.relay_ip!r} is not an IP address") from None
    config = config_for(args.config)
    nameservers = args.nameserver or config.file.dns.nameservers
    for n in nameservers:
        try:
            parse_nameserver(n)
        except ValueError as exc:
            raise CliError(f"--nameserver: {exc}") from None
    selectors = _selectors(args, domain, config)

    async def main() -> tuple[list[Any], list[str]]:
        # No cache needed for one run; the timeout is the configured one unless given.
        resolver = Resolver(nameservers, args.timeout or config.file.dns.timeout, cache_size=1000)
        return await preflight.run(domain, resolver, selectors, args.relay_ip), resolver.nameservers

    items, used = asyncio.run(main())
    found = [i.as_dict() for i in items]
    ok = not any(i["required"] and i["status"] == "fail" for i in found)
    if args.json:
        print(json.dumps({"domain": domain, "ok": ok, "relay_ip": args.relay_ip, "checks": found}, indent=2))
    else:
        print(render(domain, found, used if nameservers else []))
    return 0 if ok else EXIT_NOT_READY


def register(sub: Any) -> None:
    s = sub.add_parser("dns-check", help="check a sending domain's SPF, DKIM, DMARC, MX and PTR before production")
    s.add_argument("domain", help="the sending domain (the From domain of the mail)")
    s.add_argument("--selector", action="append", default=[], metavar="S",
                   help="DKIM selector to check (repeatable; default: the config's keys for DOMAIN)")
    s.add_argument("--key", metavar="FILE", help="local private key the published DKIM key must match")
    s.add_argument("--relay-ip", metavar="IP", help="the address sendwarden's upstream sends from: SPF and PTR")
    add_config(s)
    s.add_argument("--nameserver", action="append", metavar="IP[:PORT]", help="ask this resolver (repeatable)")
    s.add_argument("--timeout", type=float, metavar="SECONDS", help="per lookup (default: the config's)")
    add_json(s)
    exits(s, {0: "every bulk-sender requirement checked is met",
              EXIT_NOT_READY: "not ready: a requirement is not met, or DNS could not tell"})
    s.set_defaults(func=cmd_dns_check)
