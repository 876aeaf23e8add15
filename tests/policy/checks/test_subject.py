"""subject.*: missing subjects, fake reply/forward prefixes (decoded, in many languages),
and the policy's deceptive patterns."""

from __future__ import annotations

import pytest

from proxy.tomlfile import ConfigError
from tests.policy.checks.judging import FOOTER, mail, policy, rules


def subject_rules(subject: str | None, headers: dict[str, str | None] | None = None, pol=None) -> list[str]:
    h = dict(headers or {})
    h["Subject"] = subject
    return rules(mail(FOOTER, "", h), pol, family="subject")


@pytest.mark.parametrize("subject", [
    "RE: your order", "Re: your order", "re:your order", "RE : your order", "Re[2]: your order",
    "Re(3): your order", "Re^2: your order", "FW: offer", "Fwd: offer", "FWD: offer",
    "AW: Ihre Bestellung", "WG: Angebot", "SV: Din beställning", "VS: Tilauksesi", "VL: Tarjous",
    "TR: Votre commande", "RV: Su pedido", "ENC: Seu pedido", "RES: Seu pedido", "R: Il tuo ordine",
    "Antw: Uw bestelling", "Doorst: Aanbieding", "Odp: Twoje zamówienie", "YNT: Siparişiniz",
    "Отв: Ваш заказ", "ΑΠ: Η παραγγελία σας", "回复：您的订单", "转发: 优惠", "返信: ご注文", "전달: 주문",
    "[Newsletter] Re: your order", "\u200bRE: invisible space first", "\u202eRE: bidi first",
])
def test_fake_reply_and_forward_prefixes(subject: str) -> None:
    assert subject_rules(subject) == ["subject.deceptive"]


@pytest.mark.parametrize("encoded", [
    "=?utf-8?B?UkU6IFlvdXIgb3JkZXI=?=",  # "RE: Your order"
    "=?iso-8859-1?Q?AW=3A_Ihre_Bestellung_=FCber_uns?=",
    "=?utf-8?Q?=E5=9B=9E=E5=A4=8D=EF=BC=9A_=E8=AE=A2=E5=8D=95?=",  # 回复：订单
    "=?utf-8?B?Rnc=?= =?utf-8?B?ZDogb2ZmZXI=?=",  # "Fwd: offer" split over two encoded words
])
def test_encoded_subjects_are_decoded_first(encoded: str) -> None:
    assert subject_rules(encoded) == ["subject.deceptive"]


@pytest.mark.parametrize("headers", [
    {"In-Reply-To": "<abc@shop.example.com>"},
    {"References": "<abc@shop.example.com> <def@shop.example.com>"},
])
def test_real_replies_pass(headers: dict[str, str]) -> None:
    assert subject_rules("RE: your question about sizes", headers) == []


@pytest.mark.parametrize("subject", [
    "Reply by Friday for early access", "Re-opening our Utrecht store", "FWD Motors: winter tyres",
    "Trending: autumn jackets", "Retour gratis", "AWARD winning knitwear", "Our winter sale: 40% off",
    "Sale — re: imagined", "Revisit your wishlist", "Interview: our designer",
])
def test_honest_subjects_pass(subject: str) -> None:
    assert subject_rules(subject) == []


@pytest.mark.parametrize("subject", [
    "Your account has been suspended",
    "Final notice: unpaid invoice on your account",
    "You have won a voucher!",
    "Je account is geblokkeerd",
])
def test_default_deceptive_patterns(subject: str) -> None:
    assert subject_rules(subject) == ["subject.deceptive"]


def test_patterns_come_from_the_policy() -> None:
    pol = policy({"subject": {"patterns": [r"\blast chance\b"], "reply_prefixes": ["re"]}})
    assert subject_rules("Last chance to save", pol=pol) == ["subject.deceptive"]
    assert subject_rules("You have won a voucher!", pol=pol) == []
    assert subject_rules("AW: x", pol=pol) == []
    assert subject_rules("Re: x", pol=pol) == ["subject.deceptive"]


def test_bad_pattern_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"checks.subject.*patterns\[0\].*not a valid regular expression"):
        policy({"subject": {"patterns": ["(unclosed"]}})


@pytest.mark.parametrize("subject", [None, "", "   ", "\u200b\u200b", "=?utf-8?B??="])
def test_missing_subject(subject: str | None) -> None:
    assert subject_rules(subject) == ["subject.missing"]


def test_prefix_and_pattern_are_two_findings() -> None:
    assert subject_rules("RE: your account has been suspended") == ["subject.deceptive", "subject.deceptive"]
