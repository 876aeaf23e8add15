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
        ("[policy]\nmode = \"loud\"\n", ':2: policy.mode: expected "enforce" or "monitor"'),
        ("[policy]\nfrobnicate = true\n", ":2: policy.frobnicate: unknown key"),
        ("[actions]\n\"unsubscribe.header_mising\" = \"reject\"\n",
         ":2: actions.\"unsubscribe.header_mising\": unknown rule (a rule ID from the catalogue, 'family.*' or '*'); "
         "did you mean 'unsubscribe.header_missing'?"),
        ("[actions]\n\"subject.missing\" = \"bounce\"\n",
         ':2: actions."subject.missing": expected "relay", "quarantine", "tempfail" or "reject"'),
        ("[streams.bulk]\nkind = \"spam\"\n", ':2: streams.bulk.kind: expected "marketing" or "transactional"'),
        ("[checks.subjekt]\nenabled = true\n", ":1: checks.subjekt: unknown check family; did you mean 'subject'?"),
        ("[checks.subject]\nenabled = \"yes please\"\n", ":2: checks.subject.enabled: expected true or false (without quotes)"),
        ("[policy]\ndefault_stream = \"bulk\"\n", ":2: policy.default_stream: no stream named 'bulk'"),
        ("[policy]\ntag_header = \"false\"\n", ":2: policy.tag_header: expected true or false (without quotes)"),
        ("[policy\nmode = 1\n", ":1: not valid TOML"),
    ],
)
def test_policy_errors_name_file_line_and_key(tmp_path, text, expected) -> None:
    with pytest.raises(ConfigError) as exc:
        load_text(tmp_path, text)
    message = str(exc.value)
    assert message == str(tmp_path / "p.toml") + expected or message.startswith(str(tmp_path / "p.toml") + expected)
    assert "Input should" not in message and "Value error" not in message


POLICY_WITH_FIVE_ERRORS = """\
[policy]
mode = "loud"
tag_header = "false"

[actions]
"subject.mising" = "reject"

[streams.bulk]
kind = "marketing"
senders = "news@example.com"

[checks.subject]
enabeld = true

[checks.frequency]
enabled = true
caps = [{ scope = "brand", max = "3", per = "7d" }]
"""


def test_every_policy_error_is_reported_in_one_run(tmp_path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_text(tmp_path, POLICY_WITH_FIVE_ERRORS)
    path = tmp_path / "p.toml"
    assert str(exc.value).splitlines() == [
        f'{path}:2: policy.mode: expected "enforce" or "monitor"',
        f"{path}:3: policy.tag_header: expected true or false (without quotes)",
        f"{path}:6: actions.\"subject.mising\": unknown rule (a rule ID from the catalogue, 'family.*' or '*'); "
        "did you mean 'subject.missing'?",
        f"{path}:10: streams.bulk.senders: expected a list, [...]",
        f"{path}:13: checks.subject.enabeld: unknown key; did you mean 'enabled'?",
        f"{path}:17: checks.frequency.caps[0].max: expected a whole number (without quotes)",
    ]


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
    assert str(exc.value).splitlines() == [
        f"{path}:2: upstream.url: expected smtp://HOST:PORT or maildir:PATH",
        f"{path}:4: limits.max_recipients: must be at least 1",
    ]


CONFIG_WITH_ERRORS = """\
hostname = "relay.example.com"
workerz = 2
relay_networks = ["10.0.0.0/8", "nonsense"]
cpu_affinity = "everywhere"

[[listeners]]
name = "a"
address = "127.0.0.1:25"

[[listeners]]
name = "b"
adress = "127.0.0.1:26"   # a comment with = and [brackets]

[upstream]
url = \'\'\'smtp://127.0.0.1:25\'\'\'
verify = "off"
pool_size = "8"
starttls = "sometimes"

[timeouts]
command = -1
"""


def test_every_config_error_is_reported_in_one_run_with_its_line(tmp_path) -> None:
    path = tmp_path / "sendwarden.toml"
    path.write_text(CONFIG_WITH_ERRORS)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value).splitlines() == [
        f"{path}:2: workerz: unknown key; did you mean 'workers'?",
        f"{path}:3: relay_networks: 'nonsense': 'nonsense' does not appear to be an IPv4 or IPv6 network",
        f'{path}:4: cpu_affinity: expected "none" or "auto", or expected a list, [...]',
        f"{path}:12: listeners[1].adress: unknown key; did you mean 'address'?",
        f"{path}:16: upstream.verify: expected true or false (without quotes)",
        f"{path}:17: upstream.pool_size: expected a whole number (without quotes)",
        f'{path}:18: upstream.starttls: expected "opportunistic", "required" or "off"',
        f"{path}:21: timeouts.command: must be more than 0",
    ]


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
