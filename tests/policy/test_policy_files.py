"""Policy and config files are validated at load, with errors that name the file and the key."""

from __future__ import annotations

import pytest

from proxy.config import load_config
from proxy.policy.loader import BUILTIN_DEFAULT, load_policy
from proxy.policy.rules import RULES
from proxy.policy.verdict import Action
from proxy.tomlfile import ConfigError
from tests.conftest import ROOT


def load_text(tmp_path, text: str):
    path = tmp_path / "p.toml"
    path.write_text(text)
    return load_policy(path)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[policy]\nmode = \"loud\"\n", "policy.mode: Input should be 'enforce' or 'monitor'"),
        ("[policy]\nfrobnicate = true\n", "policy.frobnicate: unknown key"),
        ("[actions]\n\"unsubscribe.header_mising\" = \"reject\"\n", "unknown rule 'unsubscribe.header_mising'"),
        ("[actions]\n\"subject.missing\" = \"bounce\"\n", "actions.\"subject.missing\": Input should be 'relay', 'quarantine', 'tempfail' or 'reject'"),
        ("[streams.bulk]\nkind = \"spam\"\n", "streams.bulk.kind: Input should be 'marketing' or 'transactional'"),
        ("[checks.nonsense]\nenabled = true\n", "checks.nonsense: unknown check family"),
        ("[checks.subject]\nenabled = \"yes please\"\n", "checks.subject.enabled: Input should be a valid boolean"),
        ("[policy]\ndefault_stream = \"bulk\"\n", "policy.default_stream: no stream named 'bulk'"),
        ("[policy\nmode = 1\n", "not valid TOML"),
    ],
)
def test_policy_errors_name_file_and_key(tmp_path, text, expected) -> None:
    with pytest.raises(ConfigError) as exc:
        load_text(tmp_path, text)
    message = str(exc.value)
    assert message.startswith(str(tmp_path / "p.toml") + ": ")
    assert expected in message


def test_shipped_policy_is_strict_and_complete() -> None:
    policy = load_policy(ROOT / "policies" / "default.toml")
    assert policy.monitor is False and policy.default_stream == "marketing"
    for rule in RULES:
        policy.action("marketing", rule)  # every rule resolves
    assert policy.action("marketing", "unsubscribe.header_missing") == Action.REJECT
    assert policy.action("transactional", "subject.missing") == Action.QUARANTINE
    assert policy.action("marketing", "check.error") == Action.QUARANTINE
    # The embedded default is the same file.
    assert load_policy(BUILTIN_DEFAULT).action_table == policy.action_table


def test_stream_overrides_and_wildcards(tmp_path) -> None:
    policy = load_text(tmp_path, """
[policy]
default_action = "relay"
[actions]
"*" = "quarantine"
"content.*" = "reject"
[streams.receipts]
kind = "transactional"
users = ["billing-app"]
[streams.receipts.actions]
"content.prohibited" = "quarantine"
""")
    assert policy.action("marketing", "content.deceptive_link") == Action.REJECT
    assert policy.action("marketing", "subject.missing") == Action.QUARANTINE
    assert policy.action("receipts", "content.prohibited") == Action.QUARANTINE
    assert policy.action("receipts", "content.deceptive_link") == Action.REJECT
    assert policy.resolve_stream(user="billing-app").name == "receipts"
    assert policy.resolve_stream(user="someone").name == "marketing"
    # marketing-only checks do not run on a transactional stream
    assert not any(c.marketing_only for c, _ in policy.checks["receipts"])


def test_config_errors_name_file_and_key(tmp_path) -> None:
    path = tmp_path / "sendwarden.toml"
    path.write_text('[upstream]\nurl = "http://mta:25"\n[limits]\nmax_recipients = 0\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    message = str(exc.value)
    assert f"{path}: upstream.url: Value error, expected smtp://HOST:PORT or maildir:PATH" in message
    assert f"{path}: limits.max_recipients: Input should be greater than or equal to 1" in message


def test_embedded_default_config() -> None:
    config = load_config(None)
    assert [x.address for x in config.file.listeners] == ["127.0.0.1:10025"]
    assert config.may_relay("127.0.0.1") and config.may_relay("::1")
    assert not config.may_relay("127.0.0.2") and not config.may_relay("192.0.2.1")
    assert config.upstream_url().startswith("maildir:") and config.upstream_url().endswith("var/outbox")


def test_example_config_is_valid() -> None:
    config = load_config(ROOT / "examples" / "sendwarden.toml")
    assert config.file.upstream.url.startswith("smtp://")


def test_a_rule_mapped_to_relay_is_relayed_under_a_stricter_default(tmp_path) -> None:
    """Action.RELAY is 0: a rule mapped to it must not fall through to the "*" default."""
    path = tmp_path / "p.toml"
    path.write_text('[policy]\ndefault_action = "quarantine"\n[actions]\n"lookup.failed" = "relay"\n'
                    '[streams.transactional]\nkind = "transactional"\n[streams.transactional.actions]\n'
                    '"subject.*" = "relay"\n')
    pol = load_policy(path)
    assert pol.action("marketing", "lookup.failed") == Action.RELAY
    assert pol.action("transactional", "subject.missing") == Action.RELAY
    assert pol.action("marketing", "subject.missing") == Action.QUARANTINE
