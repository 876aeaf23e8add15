"""Shared fixtures: a real upstream sink, and the real relay started in-process on a free
loopback port. Everything talks SMTP over 127.0.0.1."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from proxy.config import Config, ConfigFile
from proxy.policy.loader import BUILTIN_DEFAULT, Policy, load_policy
from proxy.runtime import eventloop
from proxy.runtime.service import Service
from tests.support.sink import Sink
from tests.support.dnsserver import dns_server  # noqa: F401  (a loopback DNS server fixture for every test)
from tests.support.pgdb import pg_url  # noqa: F401  (a throwaway PostgreSQL database per test that asks)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SENDWARDEN = [sys.executable, "-m", "proxy.cli"]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """Every async test runs on the event loop the service runs on (proxy/runtime/eventloop.py)."""
    return {"uvloop": eventloop.new_event_loop}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def make_config(tmp_path: Path, upstream: str, extra: dict[str, Any] | None = None) -> Config:
    """A service config for tests: state under tmp_path, one listener on a free port."""
    data: dict[str, Any] = {
        "hostname": "relay.test",
        "state_dir": str(tmp_path / "var"),
        "listeners": [{"name": "default", "address": "127.0.0.1:0"}],
        "upstream": {"url": upstream, "pool_size": 2},
        "timeouts": {"upstream_connect": 3, "upstream_command": 3, "upstream_data": 5, "policy": 3, "shutdown": 5},
        # No test asks a resolver outside the machine: recipient domains are resolved only by
        # tests that point [dns] at the loopback DNS server (tests/support/dnsserver.py).
        "recipients": {"verify_domains": False},
    }
    data = merge(data, extra or {})
    return Config(ConfigFile.model_validate(data), "test config", tmp_path)


def write_policy(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = await Sink().start()
    yield s
    await s.stop()


StartRelay = Callable[..., Awaitable[Service]]


@pytest.fixture
async def start_relay(tmp_path: Path, sink: Sink) -> AsyncIterator[StartRelay]:
    """Factory: start_relay(extra_config=None, policy=None | Policy | path | TOML text, upstream=None)."""
    services: list[Service] = []

    async def start(extra: dict[str, Any] | None = None, policy: Policy | str | Path | None = None,
                    upstream: str | None = None, monitor: bool = False) -> Service:
        config = make_config(tmp_path, upstream or sink.url, extra)
        if policy is None:
            pol = load_policy(BUILTIN_DEFAULT)
        elif isinstance(policy, Policy):
            pol = policy
        elif isinstance(policy, str) and "\n" in policy:
            pol = load_policy(write_policy(tmp_path, policy, f"policy{len(services)}.toml"))
        else:
            pol = load_policy(policy)
        if monitor:
            pol = pol.with_monitor(True)
        service = Service(config, pol)
        await service.start()
        service.port = service.addresses[0][1]  # type: ignore[attr-defined]
        services.append(service)
        return service

    yield start
    for service in services:
        await service.stop()


@pytest.fixture
def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env.pop("SENDWARDEN_CONFIG", None)  # each test names its configuration
    return env
