"""Policy files: TOML → a validated, resolved `Policy`, ready for the engine.

A policy file has four tables (see policies/default.toml for a commented example):
  [policy]            mode (enforce | monitor), default_stream, default_action, tag_header
  [streams.NAME]      kind (marketing | transactional) and what selects it: senders, users,
                      listeners; optional per-stream [streams.NAME.actions] overrides
  [actions]           rule ID, "family.*" or "*" → relay | quarantine | reject
  [checks.FAMILY]     the family's options (enabled = false turns it off)
Everything is validated at load; unknown keys, rules and families are errors.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field

from proxy.policy.registry import CHECKS, FAMILY_OPTIONS, Check, Options
from proxy.policy.rules import FAMILIES, RULES, UNMAPPED_ACTIONS, family
from proxy.policy.verdict import Action
from proxy.tomlfile import ConfigError, Problems, TomlDoc, did_you_mean, load_toml

BUILTIN_DEFAULT = "builtin:default"
ActionName = Literal["relay", "quarantine", "tempfail", "reject"]


def rule_key_problem(key: str) -> str:
    """"" for a rule ID of the catalogue, "family.*" or "*"; else what is wrong, with the
    nearest names."""
    if key == "*" or key in RULES:
        return ""
    if key.endswith(".*") and key[:-2] in FAMILIES:
        return ""
    return ("unknown rule (a rule ID from the catalogue, 'family.*' or '*')"
            + did_you_mean(key, [*RULES, *(f + ".*" for f in FAMILIES)]))


class _PolicyModel(BaseModel):
    # strict: `tag_header = "false"` is an error, not a true.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PolicySection(_PolicyModel):
    mode: Literal["enforce", "monitor"] = "enforce"
    default_stream: str = "marketing"
    default_action: ActionName = "quarantine"
    tag_header: bool = True


class StreamSection(_PolicyModel):
    kind: Literal["marketing", "transactional"]
    senders: list[str] = Field(default_factory=list)
    users: list[str] = Field(default_factory=list)
    listeners: list[str] = Field(default_factory=list)
    actions: dict[str, ActionName] = Field(default_factory=dict)


class PolicyFile(_PolicyModel):
    policy: PolicySection = PolicySection()
    streams: dict[str, StreamSection] = Field(default_factory=dict)
    actions: dict[str, ActionName] = Field(default_factory=dict)
    checks: dict[str, Any] = Field(default_factory=dict)  # each family validated by its own model


@dataclass(frozen=True)
class Stream:
    name: str
    marketing: bool
    senders: tuple[str, ...]
    users: frozenset[str]
    listeners: frozenset[str]
    actions: dict[str, Action]

    def matches_sender(self, sender: str) -> bool:
        sender = sender.lower()
        domain = sender.rpartition("@")[2]
        for pattern in self.senders:
            if pattern.startswith("@"):
                if domain == pattern[1:]:
                    return True
            elif fnmatch.fnmatchcase(sender, pattern):
                return True
        return False


@dataclass(frozen=True)
class Policy:
    """A resolved policy: streams, the action of every rule per stream, and the enabled checks
    per stream with their options. Built once at load; the engine only looks things up."""

    source: str
    monitor: bool
    default_stream: str
    tag_header: bool
    streams: dict[str, Stream]
    action_table: dict[str, dict[str, Action]]  # stream → rule → action
    checks: dict[str, tuple[tuple[Check, Options], ...]]  # stream → enabled checks
    options: dict[str, Options]

    def action(self, stream: str, rule: str) -> Action:
        table = self.action_table.get(stream) or self.action_table[self.default_stream]
        action = table.get(rule)  # RELAY is 0: test for None, not for truth
        return table["*"] if action is None else action

    def resolve_stream(self, *, listener: str = "", user: str | None = None, sender: str = "") -> Stream:
        """Pick the stream for a transaction: the first stream, in file order, that names the
        listener, the authenticated user or the envelope sender; else the default stream."""
        for stream in self.streams.values():
            if listener and listener in stream.listeners:
                return stream
            if user and user in stream.users:
                return stream
            if sender and stream.matches_sender(sender):
                return stream
        return self.streams[self.default_stream]

    def with_monitor(self, monitor: bool) -> "Policy":
        from dataclasses import replace

        return replace(self, monitor=monitor)


def _lookup(overrides: Mapping[str, str], rule: str) -> str | None:
    return overrides.get(rule) or overrides.get(family(rule) + ".*") or overrides.get("*")


def build(doc: TomlDoc | dict[str, Any], source: str = "policy") -> Policy:
    """Validate and resolve a policy document (or plain data, named `source` in errors);
    every problem in it is reported at once."""
    if not isinstance(doc, TomlDoc):
        doc = TomlDoc(source, doc)
    import proxy.policy.checks  # noqa: F401  (each check module registers its checks)

    source = doc.name
    found = Problems(doc)
    data = doc.data
    pf = found.validate(PolicyFile, data)
    options: dict[str, Options] = {}
    # Files a policy names (content lists) resolve relative to the policy file.
    context = {"policy_dir": Path(source).resolve().parent}
    raw_checks = data.get("checks")
    for fam, raw in (raw_checks.items() if isinstance(raw_checks, dict) else ()):
        model = FAMILY_OPTIONS.get(fam)
        if model is None:
            found.add(("checks", fam), "unknown check family" + (did_you_mean(fam, FAMILY_OPTIONS)
                                                                 or f" (known: {', '.join(sorted(FAMILY_OPTIONS))})"))
            continue
        try:
            opts = found.validate(model, raw, ("checks", fam), context)
        except ConfigError as exc:  # a file the options name (a content list) is wrong
            if exc.problems:
                found.found.extend(exc.problems)
            else:
                found.add(("checks", fam), str(exc))
            continue
        if opts is not None:
            options[fam] = opts
    named: list[tuple[tuple[str, ...], Any]] = [((), data.get("actions"))]
    streams_data = data.get("streams")
    if isinstance(streams_data, dict):
        named += [(("streams", name), s.get("actions")) for name, s in streams_data.items() if isinstance(s, dict)]
    for where, rule_table in named:
        for key in (rule_table if isinstance(rule_table, dict) else {}):
            problem = rule_key_problem(str(key))
            if problem:
                found.add((*where, "actions", key), problem)
    if pf is None:
        found.check()
    assert pf is not None
    for fam, model in FAMILY_OPTIONS.items():
        if fam not in options and fam not in (raw_checks or {}):
            options[fam] = model.model_validate({}, context=context)

    streams: dict[str, Stream] = {}
    for name in ("marketing", "transactional"):
        if name not in pf.streams:
            streams[name] = Stream(name, name == "marketing", (), frozenset(), frozenset(), {})
    for name, s in pf.streams.items():
        streams[name] = Stream(
            name,
            s.kind == "marketing",
            tuple(p.lower() for p in s.senders),
            frozenset(s.users),
            frozenset(s.listeners),
            {k: Action.parse(v) for k, v in s.actions.items()},
        )
    # A stream defined in the file comes before the implicit ones when resolving.
    streams = {k: streams[k] for k in [*pf.streams, *[n for n in streams if n not in pf.streams]]}
    if pf.policy.default_stream not in streams:
        found.add(("policy", "default_stream"), f"no stream named {pf.policy.default_stream!r}"
                  + did_you_mean(pf.policy.default_stream, streams))
    # Options that name streams check them here, once the streams are known.
    for fam, opts in options.items():
        for problem in getattr(opts, "validate_policy", lambda names: [])(set(streams)):
            key, _, reason = problem.partition(": ")
            found.add(("checks", fam, key), reason)
    found.check()

    default_action = Action.parse(pf.policy.default_action)
    action_table: dict[str, dict[str, Action]] = {}
    checks: dict[str, tuple[tuple[Check, Options], ...]] = {}
    for name, stream in streams.items():
        table: dict[str, Action] = {}
        for rule in [*RULES, "*"]:
            stream_choice = _lookup({k: str(v) for k, v in stream.actions.items()}, rule) if stream.actions else None
            choice = stream_choice or _lookup(pf.actions, rule)
            if not choice:
                choice = UNMAPPED_ACTIONS.get(rule)
            table[rule] = Action.parse(choice) if choice else default_action
        action_table[name] = table
        checks[name] = tuple(
            (chk, options[chk.family])
            for chk in CHECKS.values()
            if options[chk.family].enabled and (stream.marketing or not chk.marketing_only)
        )
    return Policy(
        source=source,
        monitor=pf.policy.mode == "monitor",
        default_stream=pf.policy.default_stream,
        tag_header=pf.policy.tag_header,
        streams=streams,
        action_table=action_table,
        checks=checks,
        options=options,
    )


def load_policy(path: str | Path) -> Policy:
    """Load and resolve a policy file; `builtin:default` is the shipped strict AUP baseline."""
    if str(path) == BUILTIN_DEFAULT:
        text = resources.files("proxy.policies").joinpath("default.toml").read_text(encoding="utf-8")
        return build(load_toml("policies/default.toml", text))
    return build(load_toml(path))


def as_data(policy: Policy) -> dict[str, Any]:
    """The resolved policy as data (`policy check --json`): what `describe` prints."""
    return {
        "source": policy.source,
        "mode": "monitor" if policy.monitor else "enforce",
        "default_stream": policy.default_stream,
        "streams": {s.name: {"kind": "marketing" if s.marketing else "transactional", "listeners": sorted(s.listeners),
                             "users": sorted(s.users), "senders": list(s.senders)} for s in policy.streams.values()},
        "actions": {n: {rule: str(policy.action(n, rule)) for rule in RULES} for n in policy.streams},
        "checks": {n: [c.name for c, _ in policy.checks[n]] for n in policy.streams},
    }


def describe(policy: Policy) -> str:
    """The resolved policy as people read it: streams, then each rule's action per stream."""
    lines = [f"policy {policy.source}: mode {'monitor' if policy.monitor else 'enforce'}, default stream {policy.default_stream}"]
    for s in policy.streams.values():
        sel = []
        if s.listeners:
            sel.append("listeners " + ", ".join(sorted(s.listeners)))
        if s.users:
            sel.append("users " + ", ".join(sorted(s.users)))
        if s.senders:
            sel.append("senders " + ", ".join(s.senders))
        kind = "marketing" if s.marketing else "transactional"
        lines.append(f"stream {s.name} ({kind}): " + ("; ".join(sel) or "selected by default only"))
    names = list(policy.streams)
    lines.append("")
    lines.append("rule".ljust(40) + "".join(n[:14].ljust(15) for n in names))
    for rule in RULES:
        lines.append(rule.ljust(40) + "".join(str(policy.action(n, rule)).ljust(15) for n in names))
    lines.append("")
    for n in names:
        lines.append(f"checks on {n}: " + ", ".join(c.name for c, _ in policy.checks[n]))
    return "\n".join(lines)
