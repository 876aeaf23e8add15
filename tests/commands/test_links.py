"""`sendwarden links check`: the recorded privacy URLs inside their 30-day window are probed
over real HTTP on loopback; dead ones are listed with who used them, and the exit status says so."""

from __future__ import annotations

import asyncio
import json
import time

from tests.conftest import SENDWARDEN
from tests.outbound.test_linkprobe import Server, http  # noqa: F401  (the loopback HTTP server fixture)


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*SENDWARDEN, "links", "check", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_links_check_reports_dead_links_with_their_senders(tmp_path, http: Server, cli_env) -> None:  # noqa: F811
    from proxy.config import load_config
    from proxy.store import from_config

    config = tmp_path / "sendwarden.toml"
    config.write_text(f'state_dir = "{tmp_path / "var"}"\n')
    store = from_config(load_config(config))
    await store.open()
    now = time.time()
    await store.record_privacy_links("shop.example.com", [f"{http.base}/privacy", f"{http.base}/old-privacy"], now - 86400)
    await store.record_privacy_links("shop.example.com", [f"{http.base}/privacy"], now)
    await store.record_privacy_links("other.example.net", [f"{http.base}/dead"], now - 2 * 86400)
    # Sent 40 days ago: its window is closed, it is not probed.
    await store.record_privacy_links("old.example.com", [f"{http.base}/broken"], now - 40 * 86400)
    await store.close()

    rc, out = await run_cli(cli_env, "--config", str(config))
    assert rc == 2, out
    assert out.splitlines()[0] == "3 privacy link(s) inside their 30-day window; 1 dead"
    assert f"DEAD  {http.base}/dead" in out and "used by other.example.net in 1 message(s)" in out
    assert "/broken" not in out

    rc, out = await run_cli(cli_env, "--config", str(config), "--json")
    docs = {d["url"].rsplit("/", 1)[1]: d for d in map(json.loads, out.splitlines())}
    assert set(docs) == {"privacy", "old-privacy", "dead"}
    assert docs["privacy"]["alive"] and docs["privacy"]["messages"] == 2
    assert docs["old-privacy"]["alive"] and docs["old-privacy"]["final_url"].endswith("/privacy")
    assert not docs["dead"]["alive"] and docs["dead"]["status"] == 404


async def test_links_check_all_alive_exits_zero(tmp_path, http: Server, cli_env) -> None:  # noqa: F811
    from proxy.config import load_config
    from proxy.store import from_config

    config = tmp_path / "sendwarden.toml"
    config.write_text(f'state_dir = "{tmp_path / "var"}"\n')
    store = from_config(load_config(config))
    await store.open()
    await store.record_privacy_links("shop.example.com", [f"{http.base}/privacy"], time.time())
    await store.close()
    rc, out = await run_cli(cli_env, "--config", str(config))
    assert rc == 0 and out.startswith("1 privacy link(s) inside their 30-day window; 0 dead"), out


async def test_the_result_reaches_the_relays_metrics(tmp_path, http: Server, cli_env, start_relay) -> None:  # noqa: F811
    """The oneshot leaves its result in the state directory; the running relay exports it as
    sendwarden_links_dead / _checked / _check_timestamp_seconds (the alert in docs/monitoring)."""
    from prometheus_client import generate_latest

    from proxy.config import load_config
    from proxy.store import from_config

    config = tmp_path / "sendwarden.toml"
    config.write_text(f'state_dir = "{tmp_path / "var"}"\n')
    relay = await start_relay()  # the same state directory (tests/conftest.make_config)
    assert relay.config.state_dir == tmp_path / "var"

    def scrape() -> dict[str, float]:
        lines = generate_latest(relay.metrics.registry).decode().splitlines()
        return {k: float(v) for k, v in (line.split() for line in lines if line.startswith("sendwarden_links"))}

    assert scrape() == {"sendwarden_links_checked": 0, "sendwarden_links_dead": 0,
                        "sendwarden_links_check_timestamp_seconds": 0}
    store = from_config(load_config(config))
    await store.open()
    await store.record_privacy_links("shop.example.com", [f"{http.base}/privacy", f"{http.base}/dead"], time.time())
    await store.close()
    before = time.time()
    rc, out = await run_cli(cli_env, "--config", str(config))
    assert rc == 2, out
    got = scrape()
    assert got["sendwarden_links_checked"] == 2 and got["sendwarden_links_dead"] == 1
    assert before <= got["sendwarden_links_check_timestamp_seconds"] <= time.time()
