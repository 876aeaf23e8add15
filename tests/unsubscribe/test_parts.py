"""The pieces of the unsubscribe loop on their own: tokens, inserted headers, ARF parsing, and
the policy options that steer recipient state."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from proxy.message.mime import Message
from proxy.policy.loader import build
from proxy.store import GLOBAL, Scope
from proxy.tomlfile import ConfigError
from proxy.unsubscribe import arf
from proxy.unsubscribe.headers import Endpoints, list_unsubscribe, token_scope, why_not
from proxy.unsubscribe.token import TokenError, TokenKeys
from tests.conftest import FIXTURES
from tests.support.recipient_helpers import BARE, COMPLIANT

KEYS = TokenKeys([b"s" * 32])


def test_tokens_carry_address_scope_and_expiry() -> None:
    token = KEYS.issue("Reader@Example.org", Scope("brand", "shop"), 2_000_000_000)
    assert token.isalnum() and token == token.lower()
    got = KEYS.verify(token.upper(), now=time.time())  # case-insensitive, like some MTAs
    assert (got.address, got.scope, got.expires) == ("Reader@Example.org", Scope("brand", "shop"), 2_000_000_000)
    with pytest.raises(TokenError) as exc:
        KEYS.verify(token, now=2_000_000_001)
    assert exc.value.kind == "expired"
    for bad, kind in ((TokenKeys([b"o" * 32]).issue("a@b.example", GLOBAL, 2**31), "forged"),
                      (token[:-2] + ("ab" if token[-2:] != "ab" else "cd"), "forged"),
                      ("abc", "malformed"), ("not base32!", "malformed"), ("a" * 5000, "malformed")):
        with pytest.raises(TokenError) as exc:
            KEYS.verify(bad, now=0)
        assert exc.value.kind == kind
    # Rotation: a token from the old key still verifies while the old key is listed second.
    rotated = TokenKeys([b"n" * 32, b"s" * 32])
    assert rotated.verify(token, now=0).address == "Reader@Example.org"


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "unsubscribe.key"
    first = TokenKeys.load(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert TokenKeys.load(path).keys == first.keys
    path.write_text("# comment\nnot-hex\n")
    with pytest.raises(ValueError, match="unsubscribe.key:2"):
        TokenKeys.load(path)


def test_inserted_headers_and_when_not() -> None:
    both = Endpoints("https://u.example", "unsubscribe", "u.example")
    block = list_unsubscribe(KEYS, both, "r@example.org", GLOBAL, 2**31).decode()
    token = block.split("/unsubscribe/")[1].split(">")[0]
    assert block == (f"List-Unsubscribe: <https://u.example/unsubscribe/{token}>,\r\n"
                     f" <mailto:unsubscribe+{token}@u.example?subject=unsubscribe>\r\n"
                     "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    # The headers parse as the unsubscribe checks will read them.
    msg = Message.from_bytes(block.encode() + BARE)
    assert msg.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    # mailto only: no one-click claim.
    mailto = list_unsubscribe(KEYS, Endpoints("", "unsubscribe", "u.example"), "r@example.org", GLOBAL, 2**31)
    assert b"List-Unsubscribe-Post" not in mailto
    assert why_not(Message.from_bytes(BARE), 1, both) is None
    assert "own List-Unsubscribe" in why_not(Message.from_bytes(COMPLIANT), 1, both)
    assert "2 recipients" in why_not(Message.from_bytes(BARE), 2, both)
    assert "configured" in why_not(Message.from_bytes(BARE), 1, Endpoints())
    assert token_scope("list", "shop", "news.shop") == Scope("list", "news.shop")
    assert token_scope("list", "shop", "") == Scope("brand", "shop")
    assert token_scope("brand", "", "") == GLOBAL


def test_arf_parsing_and_the_complainant() -> None:
    raw = (FIXTURES / "arf" / "abuse-report.eml").read_bytes()
    report = arf.parse(raw)
    assert report is not None and report.feedback_type == "abuse"
    assert report.first("Source-IP") == "203.0.113.17" and report.reporter == "dns; mta1.fbl.mailprovider.example"
    assert arf.complainant(report, KEYS, 0) == ("complainer@example.net", "Original-Rcpt-To")
    # Without Original-Rcpt-To, the original's single To recipient is used.
    report = arf.parse(raw.replace(b"Original-Rcpt-To: <complainer@example.net>\n", b""))
    assert arf.complainant(report, KEYS, 0) == ("complainer@example.net", "To")
    # A redacted report with a forged token names nobody.
    redacted = (FIXTURES / "arf" / "redacted-report.eml").read_bytes()
    forged = TokenKeys([b"x" * 32]).issue("victim@example.org", GLOBAL, 2**31)
    report = arf.parse(redacted.replace(b"{TOKEN}", forged.encode()))
    assert report is not None and arf.complainant(report, KEYS, 0) is None
    assert arf.parse(COMPLIANT) is None
    assert arf.parse(b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x--\r\n") is None


def policy(text: str) -> None:
    build(__import__("tomllib").loads(text), "test.toml")


def test_policy_options_are_validated_at_load() -> None:
    policy('[checks.frequency]\ncaps = [{scope = "brand", max = 3, per = "7d"}]\n[checks.consent]\nstreams = ["marketing"]\nscope = "{brand}/news"')
    for bad, where in (
        ('[checks.consent]\nstreams = ["markting"]', "checks.consent.streams: no stream named 'markting'"),
        ('[checks.consent]\nscope = "{customer}"', "checks.consent.scope"),
        ('[checks.frequency]\ncaps = [{scope = "brand", max = 3, per = "7 days"}]', "checks.frequency.caps"),
        ('[checks.frequency]\ncaps = [{scope = "list", max = 3, per = "7d"}]', "checks.frequency.caps"),
        ('[checks.optout]\nbrand_from = "subject"', "checks.optout.brand_from"),
        ('[checks.optout]\nmarketing_headers = ["Bad Header: x"]', "checks.optout.marketing_headers"),
        ('[checks.optout]\nunknown = 1', "checks.optout.unknown"),
    ):
        with pytest.raises(ConfigError, match=where.replace(".", r"\.").replace("[", r"\[")):
            policy(bad)


def test_service_config_sections_are_validated(tmp_path: Path) -> None:
    from proxy.config import load_config

    good = tmp_path / "good.toml"
    good.write_text('store = "sqlite:db/state.sqlite3"\n[unsubscribe]\nlisten = "127.0.0.1:8025"\n'
                    'base_url = "https://unsub.example.com/"\nmailto_domain = "Bücher.example"\n'
                    '[addresses.domains."Bücher.example"]\nplus_tag = "-"\n')
    config = load_config(good)
    assert config.store_url == f"sqlite:{tmp_path / 'db' / 'state.sqlite3'}"
    assert config.file.unsubscribe.base_url == "https://unsub.example.com"
    assert config.file.unsubscribe.mailto_domain == "xn--bcher-kva.example"
    for text, where in (
        ('[unsubscribe]\nbase_url = "http://unsub.example.com"', "unsubscribe.base_url"),
        ('[unsubscribe]\nlisten = "nowhere"', "unsubscribe.listen"),
        ('store = "mysql://db/x"', "store"),
        ('store = "postgresql://db:port/x"', "store"),
        ('store = "postgresql://db"', "store"),
        ('[complaints]\naddress = "abuse"', "complaints.address"),
        ('[addresses]\nplus_tag = "++"', "addresses.plus_tag"),
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text(text + "\n")
        with pytest.raises(ConfigError, match=f"bad.toml:\\d+: {where.replace('.', '[.]')}"):
            load_config(bad)
