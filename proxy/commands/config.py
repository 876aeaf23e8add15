"""`sendwarden config check|show|init`: the service configuration, as `postfix check`,
`postconf -n` and a shipped example file would give it.

`check` validates a configuration and its policy and reads every file they name, without
binding a port or creating anything; `show` prints the effective configuration (every key, or
with --non-default only those set to something else than the default), secrets masked;
`init` writes the commented production starting point that the package carries.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from proxy.commands.common import EX_CONFIG, CliError, add_config, config_for
from proxy.config import Config, load_config
from proxy.policy.loader import load_policy
from proxy.tomlfile import ConfigError

PRODUCTION = "defaults/production.toml"
MASK = "****"


def mask_url(url: str) -> str:
    """A URL with its password and query (where tokens live) masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        host = netloc.rpartition("@")[2]
        netloc = f"{user}:{MASK}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, MASK if parts.query else "", ""))


def effective(config: Config, non_default: bool = False) -> dict[str, Any]:
    """The configuration as data: every key (or only those that differ from the defaults),
    with the secrets it can hold masked."""
    data = config.file.model_dump(mode="json", exclude_defaults=non_default)
    if data.get("store"):
        data["store"] = mask_url(data["store"])
    webhook = data.get("quarantine", {}).get("notify", {}).get("webhook")
    if webhook:
        data["quarantine"]["notify"]["webhook"] = mask_url(webhook)
    return data


def flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """`key.sub = value` pairs, as `postconf` prints them; tables of tables flattened."""
    if isinstance(data, dict):
        if not data and prefix:
            return [(prefix, {})]
        out: list[tuple[str, Any]] = []
        for k, v in data.items():
            name = k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)
            out += flatten(v, f"{prefix}.{name}" if prefix else name)
        return out
    if isinstance(data, list) and data and all(isinstance(x, dict) for x in data):
        return [pair for i, x in enumerate(data) for pair in flatten(x, f"{prefix}[{i}]")]
    return [(prefix, data)]


def cmd_show(args: argparse.Namespace) -> int:
    config = config_for(args.config)
    data = effective(config, args.non_default)
    if args.json:
        print(json.dumps({"source": config.source, "config": data}, indent=2))
        return 0
    print(f"# {config.source}" + (": keys set to other than the default" if args.non_default else ""))
    for key, value in flatten(data):
        print(f"{key} = {json.dumps(value, ensure_ascii=False)}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from proxy.runtime.startcheck import check

    config = load_config(args.file) if args.file else config_for(args.config)
    errors: list[str] = []
    policy = config.policy_path
    if not policy.startswith("builtin:") and not Path(policy).exists():
        errors.append(f"{config.source}: policy: {policy}: file not found (`sendwarden policy init {policy}` writes the default)")
    else:
        try:
            load_policy(policy)
        except ConfigError as exc:
            errors.append(str(exc))
    findings = check(config)
    problems = [f for f in findings if f.problem]
    for f in problems:
        errors.append(f"{config.source}: {f.key}: {f.text}")
    for f in findings:
        if not f.problem:
            print(f"note: {f.key}: {f.text}", file=sys.stderr)
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return EX_CONFIG
    print(f"{config.source}: ok (policy {config.policy_path}: ok)")
    return 0


def write_new(path: Path, text: str, force: bool) -> None:
    """Write a shipped file to `path`; an existing file is replaced only with --force."""
    if path.exists() and not force:
        raise CliError(f"{path} exists; give --force to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None


def cmd_init(args: argparse.Namespace) -> int:
    text = resources.files("proxy").joinpath(PRODUCTION).read_text(encoding="utf-8")
    path = Path(args.path)
    write_new(path, text, args.force)
    print(f"wrote {path}: a commented production configuration; edit it, then\n"
          f"  sendwarden policy init /etc/sendwarden/policy.toml   (the policy it names)\n"
          f"  sendwarden config check {path}")
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("config", help="the service configuration: check, show, init")
    csub = s.add_subparsers(dest="config_command", required=True, metavar="ACTION")

    p = csub.add_parser("check", help="validate a configuration, its policy and the files they name, binding nothing")
    add_config(p)
    p.add_argument("file", nargs="?", metavar="FILE", help="the configuration to check (default: as --config)")
    p.set_defaults(func=cmd_check)

    p = csub.add_parser("show", help="print the effective configuration, secrets masked")
    add_config(p)
    p.add_argument("--non-default", action="store_true", help="only the keys set to something else than the default")
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.set_defaults(func=cmd_show)

    p = csub.add_parser("init", help="write the commented production configuration to PATH")
    p.add_argument("path", metavar="PATH", help="where to write it, e.g. /etc/sendwarden/sendwarden.toml")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_init)
