"""Tell people about quarantine events: a command and/or a webhook, configured under
[quarantine.notify].

The event is one JSON object (`event`, `id`, `time`, `host`, `stream`, `sender`, `subject`,
`rules`, `rcpt_count`, and for releases `by`, `reason`, `upstream_reply`). Recipient addresses
are personal data and never leave in an event: only their count does. The command gets the event
on its stdin; the webhook gets it as an HTTP POST with a JSON body (redirects not followed).

Delivery never holds up mail: in the relay each event is a task of its own (`fire`), bounded in
number and in time; a failure, a timeout or a full queue is logged and forgotten.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from typing import TYPE_CHECKING, Any, Mapping

import structlog

from proxy import __version__
from proxy.config import Notify

if TYPE_CHECKING:
    import aiohttp

log = structlog.get_logger("sendwarden.notify")


def hold_event(kind: str, hold_id: str, *, host: str, stream: str, sender: str, subject: str,
               rules: list[str], rcpt_count: int, **extra: Any) -> dict[str, Any]:
    """The JSON document of one event."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {
        "event": kind, "id": hold_id, "time": now, "host": host, "stream": stream, "sender": sender,
        "subject": subject, "rules": list(dict.fromkeys(rules)), "rcpt_count": rcpt_count, **extra,
    }


class Notifier:
    def __init__(self, settings: Notify, host: str) -> None:
        self.settings = settings
        self.host = host
        self._tasks: set[asyncio.Task[bool]] = set()
        self._session: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.command or self.settings.webhook)

    def event(self, kind: str, hold_id: str, row: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        """An event from an index row (the review commands' side)."""
        rules = [f["rule"] for f in json.loads(row["findings"])]
        return hold_event(kind, hold_id, host=self.host, stream=row["stream"], sender=row["mail_from"],
                          subject=row["subject"], rules=rules, rcpt_count=row["rcpt_count"], **extra)

    def quarantined(self, hold_id: str, held: Any) -> None:
        """The relay held a message (`held` is a proxy.quarantine.files.Held): fire and forget."""
        if self.enabled:
            self.fire(hold_event("quarantined", hold_id, host=self.host, stream=held.stream, sender=held.mail_from,
                                 subject=held.subject, rules=[f["rule"] for f in held.findings], rcpt_count=len(held.rcpts)))

    def fire(self, event: dict[str, Any]) -> None:
        """Deliver in the background; never waits, never raises."""
        if not self.enabled or event["event"] not in self.settings.events:
            return
        if len(self._tasks) >= self.settings.max_pending:
            log.warning("notify_dropped", kind=event["event"], id=event["id"], pending=len(self._tasks))
            return
        task = asyncio.get_running_loop().create_task(self._guarded(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, event: dict[str, Any]) -> bool:
        try:
            return await self.deliver(event)
        except Exception as exc:  # a bug here must not leave an unretrieved task error behind
            log.error("notify_failed", via="internal", kind=event["event"], id=event["id"], error=repr(exc))
            return False

    async def deliver(self, event: dict[str, Any]) -> bool:
        """Deliver one event now, through every configured way; True when all took it."""
        if not self.enabled or event["event"] not in self.settings.events:
            return True
        body = json.dumps(event).encode()
        ways = []
        if self.settings.command:
            ways.append(self._run(body, event))
        if self.settings.webhook:
            ways.append(self._post(body, event))
        return all(await asyncio.gather(*ways))

    async def _run(self, body: bytes, event: dict[str, Any]) -> bool:
        argv = self.settings.command
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
        except OSError as exc:
            log.warning("notify_failed", via="command", program=argv[0], kind=event["event"], id=event["id"], error=str(exc))
            return False
        try:
            _, err = await asyncio.wait_for(proc.communicate(body), self.settings.timeout)
        except asyncio.TimeoutError:
            _kill(proc)
            await proc.wait()
            log.warning("notify_failed", via="command", program=argv[0], kind=event["event"], id=event["id"],
                        error=f"no exit within {self.settings.timeout:g}s, killed")
            return False
        except asyncio.CancelledError:
            _kill(proc)
            raise
        if proc.returncode != 0:
            log.warning("notify_failed", via="command", program=argv[0], kind=event["event"], id=event["id"],
                        status=proc.returncode, stderr=err.decode("utf-8", "replace")[-500:])
            return False
        return True

    async def _post(self, body: bytes, event: dict[str, Any]) -> bool:
        import aiohttp  # only where a webhook is configured: it costs a quarter second to import

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout))
        headers = {"Content-Type": "application/json", "User-Agent": f"sendwarden/{__version__}"}
        try:
            async with self._session.post(self.settings.webhook, data=body, headers=headers, allow_redirects=False) as resp:
                if 200 <= resp.status < 300:
                    return True
                error = f"HTTP {resp.status} {resp.reason or ''}".strip()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            error = str(exc) or type(exc).__name__
        log.warning("notify_failed", via="webhook", kind=event["event"], id=event["id"], error=error)
        return False

    async def close(self, grace: float = 5.0) -> None:
        """Give events in flight `grace` seconds, cancel the rest, close the HTTP session."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                log.warning("notify_abandoned", count=len(pending))
        if self._session is not None:
            await self._session.close()
            self._session = None


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        proc.kill()
    except ProcessLookupError:
        pass


__all__ = ["Notifier", "hold_event"]
