"""The privacy-policy link checks: a link is there, approved, and not marked dead. Options and
the URLs found (shared with the relay's bookkeeping): proxy/policy/families/privacy.py."""

from __future__ import annotations

from typing import Iterator, Mapping

from proxy.message.mime import Message
from proxy.message.urls import normalise_url
from proxy.policy.context import Context
from proxy.policy.families.privacy import DEAD_FACT, PrivacyOptions, privacy_urls
from proxy.policy.registry import check
from proxy.policy.verdict import Finding


@check("privacy", rules=("privacy.link_missing", "privacy.link_unapproved"), marketing_only=True)
def link(msg: Message, ctx: Context, opts: PrivacyOptions) -> Iterator[Finding]:
    urls = privacy_urls(msg, opts)
    if not urls:
        yield Finding(
            "privacy.link_missing",
            "no link to a privacy policy (by link text or URL)",
            "link to your current privacy policy in the body, e.g. <a href=\"https://.../privacy\">Privacy policy</a>",
        )
        return
    if opts.require_https and not any(u.lower().startswith("https://") for u in urls):
        yield Finding(
            "privacy.link_unapproved",
            f"the privacy link {urls[0][:120]} is not https",
            "link to the privacy policy over https",
        )
        return
    approved = opts.approved_for(msg.from_domain) if opts.approved else None
    if approved is not None and not any(normalise_url(u) in approved for u in urls):
        yield Finding(
            "privacy.link_unapproved",
            f"privacy link {urls[0][:120]} is not one of the approved URLs of {msg.from_domain}",
            "link to the privacy policy URL registered for your sender domain: " + ", ".join(sorted(approved))[:200],
        )


@check("privacy", rules=("privacy.link_dead",), marketing_only=True)
def link_dead(msg: Message, ctx: Context, opts: PrivacyOptions) -> Iterator[Finding]:
    found: Mapping[str, str] | None = (ctx.facts or {}).get(DEAD_FACT)
    for url, why in (found or {}).items():
        yield Finding(
            "privacy.link_dead",
            f"the privacy link {url[:120]} was found dead by the link check ({why[:120]})",
            "fix the privacy page (it must keep working for 30 days after each send) or link to one that works",
        )
