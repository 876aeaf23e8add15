"""What the subcommands share: the error type for people, and config/policy loading."""

from __future__ import annotations

from proxy.config import Config, load_config
from proxy.policy.loader import Policy, load_policy

EXIT_OK, EXIT_ERROR = 0, 1


class CliError(Exception):
    """An error for people: printed as one line, exit status 1."""


def load(config_path: str | None, policy_path: str | None = None, monitor: bool = False) -> tuple[Config, Policy]:
    config = load_config(config_path)
    policy = load_policy(policy_path or config.policy_path)
    if monitor:
        policy = policy.with_monitor(True)
    return config, policy
