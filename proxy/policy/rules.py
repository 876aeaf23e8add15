"""The catalogue of rule IDs: the shared vocabulary of policy files, logs, metrics, quarantine
and `scan --json`. IDs are stable; add new ones under the same family prefixes."""

from __future__ import annotations

RULES: dict[str, str] = {
    # unsubscribe
    "unsubscribe.header_missing": "marketing message without a List-Unsubscribe header",
    "unsubscribe.header_invalid": "List-Unsubscribe is not RFC 2369 angle-bracketed https:/mailto: URIs",
    "unsubscribe.one_click_missing": "no RFC 8058 List-Unsubscribe-Post one-click with an https URI",
    "unsubscribe.body_link_missing": "no visible unsubscribe link in the body",
    # privacy
    "privacy.link_missing": "no link to the privacy policy",
    "privacy.link_unapproved": "privacy link is not https, or not one of the sender domain's approved URLs",
    "privacy.link_dead": "a recorded privacy link stopped answering within its 30 days",
    # sender identity
    "sender.from_invalid": "not exactly one parseable From address",
    "sender.domain_not_allowed": "From domain is not one the sender may use",
    "sender.misaligned": "envelope sender, Sender or Reply-To not aligned with From",
    "sender.display_name_spoof": "display name carries another address, domain or brand",
    "sender.lookalike_domain": "From domain imitates a protected brand's domain (homoglyphs, other suffix)",
    "sender.dkim_fail": "an existing DKIM signature fails or does not align",
    # subject
    "subject.deceptive": "subject misleads about the content (fake RE:/FWD:, configured patterns)",
    "subject.missing": "empty or missing subject",
    # recipients
    "optout.suppressed": "recipient unsubscribed or objected",
    "optout.suppressed_after_data": "a recipient is suppressed in a scope (or on a stream) only the headers revealed",
    "consent.missing": "no consent record for the recipient",
    "consent.wrong_scope": "consent exists, but not for this brand/use",
    "frequency.exceeded": "recipient's frequency cap reached",
    "recipient.invalid": "recipient address syntax is invalid",
    "recipient.domain_unroutable": "recipient domain has no MX or address records",
    "recipient.blocked_destination": "recipient domain or TLD is blocked (export controls, sanctions)",
    # compliance and content
    "compliance.complaint_address_missing": "the complaints address does not appear in the message",
    "content.deceptive_link": "link text shows another domain than the link goes to, or a suspicious target",
    "content.credential_form": "the message asks for passwords in a form",
    "content.prohibited": "prohibited content category matched",
    "attachment.dangerous": "executable, script or macro attachment",
    "rate.exceeded": "rate limit reached",
    # message hygiene and engine faults
    "message.unparseable": "the message could not be parsed well enough to judge",
    "message.header_count": "a header that must appear once appears zero or several times",
    "check.error": "a check failed unexpectedly; the message could not be fully judged",
    "lookup.failed": "a fact needed for judging (store, DNS) could not be looked up",
}


# Rules whose action, when a policy file maps neither the rule nor its family (nor "*"), is not
# the policy's default_action: a rate limit says nothing about the message, so by default the
# client is asked to retry later (451), as before rate.exceeded followed the policy.
UNMAPPED_ACTIONS: dict[str, str] = {"rate.exceeded": "tempfail"}


def family(rule: str) -> str:
    return rule.split(".", 1)[0]


FAMILIES: frozenset[str] = frozenset(family(r) for r in RULES)
