"""The sender family as pure checks: domains, alignment, display-name and look-alike spoofing,
and DKIM facts turned into findings. (DKIM against real DNS: test_dkim.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from proxy.policy.context import DkimVerification, LookupFailed, SignatureResult
from proxy.message.mime import Message
from proxy.policy.engine import judge
from proxy.policy.loader import BUILTIN_DEFAULT, build, load_policy
from proxy.policy.registry import Context
from proxy.policy.verdict import Action
from proxy.replies import Replies

from proxy.tomlfile import ConfigError
from tests.conftest import ROOT


def message(from_: str = '"Example Shop" <news@shop.example.com>', extra: str = "") -> Message:
    head = (f"From: {from_}\r\nTo: reader@example.org\r\nSubject: Hello\r\nDate: Sun, 29 Nov 2026 09:00:00 +0000\r\n"
            f"Message-ID: <1@shop.example.com>\r\n{extra}")
    return Message.from_bytes(head.encode() + b"\r\nbody\r\n")


def policy(**sender: Any) -> Any:
    return build({"checks": {"sender": sender}, "actions": {"*": "reject", "lookup.failed": "tempfail"}}, "test")


def rules(pol: Any, msg: Message, **ctx: Any) -> list[str]:
    ctx.setdefault("mail_from", "news@shop.example.com")
    verdict = judge(pol, msg, Context(**ctx))
    # Only this family's findings (and the lookups it reports): other families judge other things.
    return [j.rule for j in verdict.judged if j.rule.startswith(("sender.", "lookup."))]


# -- allowed domains -------------------------------------------------------------------------------

def test_no_domain_list_means_no_domain_finding() -> None:
    assert rules(policy(), message()) == []


def test_domain_lists_most_specific_wins() -> None:
    pol = policy(domains=["example.com", "*.example.com"], streams={"transactional": ["receipts.example.net"]},
                 users={"billing-app": ["Bücher.example"]})
    assert rules(pol, message()) == []  # *.example.com
    assert rules(pol, message("a@example.com"), mail_from="a@example.com") == []
    assert rules(pol, message("a@other.example"), mail_from="a@other.example") == ["sender.domain_not_allowed"]
    # the transactional stream has its own list, so example.com is not allowed there
    assert rules(pol, message(), stream="transactional", marketing=False) == ["sender.domain_not_allowed"]
    # IDN: the user's U-label entry matches the A-label From domain, and vice versa
    assert rules(pol, message("b@xn--bcher-kva.example"), mail_from="b@bücher.example", auth_user="billing-app") == []
    assert rules(pol, message("b@shop.example.com"), auth_user="billing-app") == ["sender.domain_not_allowed"]


def test_bad_domains_in_options_are_load_errors() -> None:
    with pytest.raises(ConfigError, match=r"checks\.sender\.domains: .*'not a domain' is not a domain name"):
        policy(domains=["not a domain"])
    with pytest.raises(ConfigError, match="unknown key"):
        policy(domain=["example.com"])


# -- alignment --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mail_from, sender, reply_to, mode, expected", [
    ("bounces@news.example.com", "", "", "relaxed", []),  # subdomain, same organisation
    ("bounces@example.com", "", "", "relaxed", []),
    ("bounces@esp.example.net", "", "", "relaxed", ["sender.misaligned"]),
    ("bounces@news.example.com", "", "", "strict", ["sender.misaligned"]),
    ("news@shop.example.com", "", "", "strict", []),
    ("", "", "", "strict", []),  # null sender of a bounce: nothing to align
    ("<>", "", "", "strict", []),  # as aiosmtpd hands it over
    ("news@shop.example.com", "ops@example.com", "help@support.example.com", "relaxed", []),
    ("news@shop.example.com", "ops@example.net", "", "relaxed", ["sender.misaligned"]),
    ("news@shop.example.com", "", "help@elsewhere.example.org", "relaxed", ["sender.misaligned"]),
    ("news@shop.example.com", "", "broken", "relaxed", ["sender.misaligned"]),
])
def test_alignment(mail_from: str, sender: str, reply_to: str, mode: str, expected: list[str]) -> None:
    extra = (f"Sender: {sender}\r\n" if sender else "") + (f"Reply-To: {reply_to}\r\n" if reply_to else "")
    assert rules(policy(alignment=mode), message(extra=extra), mail_from=mail_from) == expected


@pytest.mark.parametrize("from_domain, other, aligned", [
    ("example.co.uk", "news.example.co.uk", True),
    ("example.co.uk", "other.co.uk", False),  # co.uk is a public suffix, not an organisation
    ("a.github.io", "b.github.io", False),  # the private section of the list counts too
    ("shop.example.com", "SHOP.EXAMPLE.COM", True),
    ("xn--bcher-kva.example", "mail.bücher.example", True),  # IDN: compared as A-labels
    ("bücher.example", "bucher.example", False),
])
def test_alignment_public_suffix_and_idn(from_domain: str, other: str, aligned: bool) -> None:
    found = rules(policy(), message(f"x@{from_domain}"), mail_from=f"b@{other}")
    assert found == ([] if aligned else ["sender.misaligned"])


def test_options_choose_which_identities_align() -> None:
    extra = "Reply-To: help@helpdesk.example.net\r\n"
    assert rules(policy(align=["mail_from", "sender"]), message(extra=extra)) == []
    assert rules(policy(align=[]), message(), mail_from="x@elsewhere.example.net") == []


# -- display name and look-alikes -------------------------------------------------------------------

BRANDS = {"PayPal": ["paypal.com"], "ABN AMRO": ["abnamro.nl"], "ING": ["ing.nl"]}


@pytest.mark.parametrize("from_, expected", [
    ('"Example Shop" <news@shop.example.com>', []),
    ('"news@shop.example.com" <news@shop.example.com>', []),  # its own address: harmless
    ('"service@paypal.com" <news@shop.example.com>', ["sender.display_name_spoof"] * 2),  # address and brand
    ('"support@shop.example.com" <news@shop.example.com>', ["sender.display_name_spoof"]),  # another address
    ('"PayPal.com Security" <news@shop.example.com>', ["sender.display_name_spoof"] * 2),  # domain and brand
    ('"Shop.Example.com" <news@shop.example.com>', []),  # its own domain
    ('"Mr.Smith v2.0" <news@shop.example.com>', []),  # not domains
    ('"PayPal" <news@shop.example.com>', ["sender.display_name_spoof"]),
    ('"PаyPаl" <news@shop.example.com>', ["sender.display_name_spoof"]),  # Cyrillic а
    ('"PAYPAI Support" <news@shop.example.com>', ["sender.display_name_spoof"]),  # capital I for l
    ('"ABN-AMRO" <news@shop.example.com>', ["sender.display_name_spoof"]),
    ('"abnamro" <news@shop.example.com>', ["sender.display_name_spoof"]),
    ('"ING Bank" <x@shop.example.com>', ["sender.display_name_spoof"]),
    ('"Shopping king" <x@shop.example.com>', []),  # "ing" only as a whole word
    ('"PayPal" <service@paypal.com>', []),  # the brand itself
    ('"PayPal Nederland" <service@mail.paypal.com>', []),
    ('=?utf-8?b?UGF5UGFs?= <news@shop.example.com>', ["sender.display_name_spoof"]),  # RFC 2047 "PayPal"
])
def test_display_name_spoof(from_: str, expected: list[str]) -> None:
    addr = from_.rpartition("<")[2].rstrip(">")
    assert rules(policy(protected_brands=BRANDS), message(from_), mail_from=addr) == expected


@pytest.mark.parametrize("domain, expected", [
    ("paypal.com", []),
    ("xn--pypal-4ve.com", ["sender.lookalike_domain"]),  # pаypal.com, Cyrillic а, as A-label
    ("pаypal.com", ["sender.lookalike_domain"]),  # the same, as U-label
    ("paypa1.com", ["sender.lookalike_domain"]),
    ("paypal.co.uk", ["sender.lookalike_domain"]),  # the brand's name under another suffix
    ("mail.paypal.com", []),
    ("paypal.com.account-check.example", ["sender.lookalike_domain"]),
    ("abnamro.nl", []),
    ("abnarnro.nl", ["sender.lookalike_domain"]),  # rn for m
    ("shop.example.com", []),
])
def test_lookalike_domains(domain: str, expected: list[str]) -> None:
    assert rules(policy(protected_brands=BRANDS), message(f"x@{domain}"), mail_from=f"x@{domain}") == expected


def test_invalid_from_is_reported_once() -> None:
    pol = policy(domains=["example.com"], protected_brands=BRANDS)
    assert rules(pol, message("x@bad..example.com")) == ["sender.from_invalid"]
    assert rules(pol, Message.from_bytes(b"To: a@example.org\r\n\r\nx")) == ["sender.from_invalid"]


# -- DKIM facts -------------------------------------------------------------------------------------

def dkim_fact(*sigs: tuple[str, str, str], extra: int = 0) -> dict[str, Any]:
    return {"dkim": DkimVerification(tuple(SignatureResult(d, "s1", st, why) for d, st, why in sigs), extra)}


@pytest.mark.parametrize("facts, expected", [
    (None, []),  # not looked up (offline scan)
    (dkim_fact(), []),  # not signed
    (dkim_fact(("shop.example.com", "pass", "")), []),
    (dkim_fact(("example.com", "pass", "")), []),  # organisational domain: aligned (relaxed)
    (dkim_fact(("esp.example.net", "pass", "")), ["sender.dkim_fail"]),  # verifies, not aligned
    (dkim_fact(("shop.example.com", "fail", "body hash mismatch")), ["sender.dkim_fail"]),
    (dkim_fact(("shop.example.com", "permerror", "no key")), ["sender.dkim_fail"]),
    (dkim_fact(("shop.example.com", "temperror", "timeout")), ["lookup.failed"]),
    ({"dkim": LookupFailed("dkim: no answer within 3s")}, ["lookup.failed"]),
    (dkim_fact(("shop.example.com", "pass", ""), extra=3), ["sender.dkim_fail"]),
])
def test_dkim_findings(facts: dict[str, Any] | None, expected: list[str]) -> None:
    assert rules(policy(), message(), facts=facts) == expected


def test_dkim_options() -> None:
    fact = dkim_fact(("esp.example.net", "pass", ""))
    assert rules(policy(dkim_third_party=["example.net"]), message(), facts=fact) == []
    assert rules(policy(dkim_require_aligned=False), message(), facts=fact) == []
    timeout = {"dkim": LookupFailed("timeout")}
    assert rules(policy(dns_failure="dkim_fail"), message(), facts=timeout) == ["sender.dkim_fail"]
    assert rules(policy(dns_failure="ignore"), message(), facts=timeout) == []
    assert rules(policy(dkim_verify=False), message(), facts=dkim_fact(("x.example", "fail", ""))) == []


def test_lookup_failure_defers_with_451_443_under_the_default_policy() -> None:
    # A transactional message: no marketing-only rule applies, only the failed lookup.
    verdict = judge(load_policy(BUILTIN_DEFAULT), message(), Context(stream="transactional", marketing=False,
                                                                     mail_from="news@shop.example.com",
                                                                     facts={"dkim": LookupFailed("timeout")}))
    assert verdict.action == Action.TEMPFAIL
    reply = verdict.tempfail_reply()
    deferred = Replies.policy_tempfail([], "")
    assert (reply.code, reply.enhanced) == (deferred.code, deferred.enhanced) and "lookup.failed" in reply.text


def test_reject_beats_tempfail_beats_quarantine() -> None:
    assert Action.REJECT > Action.TEMPFAIL > Action.QUARANTINE > Action.RELAY
    pol = build({"actions": {"sender.from_invalid": "reject", "lookup.failed": "tempfail"}}, "t")
    verdict = judge(pol, message("nobody"), Context(facts={"dkim": LookupFailed("timeout")}))
    assert verdict.action == Action.REJECT


def test_default_policy_relays_the_readme_example() -> None:
    raw = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")
    verdict = judge(load_policy(BUILTIN_DEFAULT), Message.from_bytes(raw),
                    Context(mail_from="news@shop.example.com", facts={"dkim": DkimVerification()}))
    assert verdict.action == Action.RELAY and verdict.judged == ()


@pytest.mark.parametrize("from_", ['"Example Shop" <news@shop.example.com>', "a@b.example, c@d.example", "not an address",
                                   "news@xn--bcher-kva.example", "=?utf-8?q?B=C3=BCcher?= <news@bücher.example>", ""])
def test_from_domain_found_once_is_the_domain_found_anew(from_: str) -> None:
    from proxy.policy.checks.sender import _from_domain, from_domain

    msg = message(from_)
    assert from_domain(msg) == from_domain(msg) == _from_domain(message(from_))
