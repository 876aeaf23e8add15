"""The notification hook: a command and a webhook told about quarantine and release events,
never holding up the relay, failures logged."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from proxy.config import Notify
from proxy.quarantine.notify import Notifier
from tests.support.quarantine_env import PLAIN, PY, make_env


class Hook:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.status = 200
        self.delay = 0.0
        self.url = ""


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    h = Hook()

    async def receive(request: web.Request) -> web.Response:
        assert request.content_type == "application/json"
        h.posts.append(await request.json())
        if h.delay:
            await asyncio.sleep(h.delay)
        return web.Response(status=h.status)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    h.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield h
    await runner.cleanup()


def recorder(path: Path) -> list[str]:
    """A notify command that appends the event it gets on stdin to `path`."""
    return [PY, "-c", f"import sys; open({str(path)!r}, 'ab').write(sys.stdin.buffer.read() + b'\\n')"]


async def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_quarantine_and_release_events_reach_command_and_webhook(tmp_path, start_relay, sink, cli_env, hook) -> None:
    out = tmp_path / "events.jsonl"
    notify = {"command": recorder(out), "webhook": hook.url, "timeout": 5}
    toml = f"[quarantine.notify]\ncommand = {json.dumps(notify['command'])}\nwebhook = \"{hook.url}\"\ntimeout = 5\n"
    env = await make_env(tmp_path, start_relay, sink, cli_env, extra=toml, relay_extra={"quarantine": {"notify": notify}})
    hold_id = await env.send("news@shop.example.com", ["reader@example.org"], PLAIN)
    await wait_for(lambda: out.exists() and len(hook.posts) == 1)
    [event] = [json.loads(line) for line in out.read_text().splitlines()]
    assert event == hook.posts[0]
    assert event["event"] == "quarantined" and event["id"] == hold_id and event["host"] == "relay.test"
    assert event["rules"] == ["unsubscribe.header_missing"] and event["rcpt_count"] == 1
    assert event["sender"] == "news@shop.example.com" and event["stream"] == "marketing"
    assert "reader@example.org" not in json.dumps(event)  # recipients never leave in an event

    r = await env.cli("quarantine", "release", hold_id, "--reason", "ok by legal", "--as", "erin")
    assert r.code == 0, r.err
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["event"] for e in events] == ["quarantined", "released"] == [p["event"] for p in hook.posts]
    released = events[1]
    assert released["by"] == "erin" and released["reason"] == "ok by legal"
    assert released["upstream_reply"].startswith("250 2.0.0")


async def test_slow_or_failing_hooks_never_hold_up_the_relay(tmp_path, start_relay, sink, cli_env, hook) -> None:
    hook.delay = 10
    notify = {"command": [PY, "-c", "import time; time.sleep(60)"], "webhook": hook.url, "timeout": 8}
    env = await make_env(tmp_path, start_relay, sink, cli_env, relay_extra={"quarantine": {"notify": notify}})
    with capture_logs() as logs:
        t0 = time.monotonic()
        await env.send("news@shop.example.com", ["reader@example.org"], PLAIN)
        assert time.monotonic() - t0 < 7  # the 250 did not wait for the hooks (8 s each)
        await wait_for(lambda: len([e for e in logs if e["event"] == "notify_failed"]) == 2, timeout=30)
    failed = {e["via"]: e for e in logs if e["event"] == "notify_failed"}
    assert "killed" in failed["command"]["error"]
    assert failed["webhook"]["error"]


async def test_errors_are_logged_and_the_queue_is_bounded() -> None:
    notifier = Notifier(Notify(command=[PY, "-c", "import sys; sys.stderr.write('chat is down'); sys.exit(3)"],
                               max_pending=1, timeout=5), "relay.test")
    event = {"event": "quarantined", "id": "x"}
    with capture_logs() as logs:
        notifier.fire(dict(event))
        notifier.fire(dict(event, id="y"))  # over the bound: dropped, not queued
        await notifier.close(grace=5)
    [dropped] = [e for e in logs if e["event"] == "notify_dropped"]
    assert dropped["id"] == "y"
    [failed] = [e for e in logs if e["event"] == "notify_failed"]
    assert failed["status"] == 3 and failed["stderr"] == "chat is down" and failed["id"] == "x"


async def test_webhook_refusal_and_unreachable_are_failures(hook) -> None:
    hook.status = 500
    with capture_logs() as logs:
        bad = Notifier(Notify(webhook=hook.url, timeout=2), "relay.test")
        assert await bad.deliver({"event": "released", "id": "x"}) is False
        await bad.close()
        gone = Notifier(Notify(webhook="http://127.0.0.1:9/hook", timeout=2), "relay.test")
        assert await gone.deliver({"event": "released", "id": "y"}) is False
        await gone.close()
        picky = Notifier(Notify(webhook=hook.url, events=["released"]), "relay.test")
        assert await picky.deliver({"event": "quarantined", "id": "z"}) is True  # not wanted: not sent
        await picky.close()
    errors = [e["error"] for e in logs if e["event"] == "notify_failed"]
    assert errors[0] == "HTTP 500 Internal Server Error" and len(errors) == 2
    assert [p["id"] for p in hook.posts] == ["x"]
