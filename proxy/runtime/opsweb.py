"""The operations endpoint: /metrics for Prometheus and /healthz for load balancers, on its own
address, separate from mail traffic, served once per host (by the main process; with workers,
/metrics sums every worker's, proxy/metrics.py). /healthz answers 200 only while the upstream
answered its last probe and the stores are open, so a balancer stops sending mail to a relay
that could only answer 451; it also says how many worker processes run (a dead one is being
restarted while the others take its connections, so it does not fail the check)."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy.runtime.listeners import HttpListener

if TYPE_CHECKING:
    from proxy.runtime.service import Service

log = structlog.get_logger("sendwarden.ops")


def health(service: "Service") -> tuple[bool, dict[str, object]]:
    checks: dict[str, object] = {
        "upstream": service.upstream_up,
        "quarantine": service.quarantine.is_open,
        "accepting": not service.closing,
    }
    return all(checks.values()), checks


def make_app(service: "Service") -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        service.metrics.refresh_last_hour()
        try:
            service.metrics.quarantine_held.set(await asyncio.to_thread(service.quarantine.count))
        except Exception:  # a broken index must not break the scrape; the health check says it
            service.metrics.store_errors.labels("quarantine").inc()
        body = generate_latest(service.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        ok, checks = health(service)
        body: dict[str, object] = {"ok": ok, **checks}
        workers = service.worker_processes
        if workers is not None:
            body["workers"] = {"running": workers.running(), "configured": workers.count}
        return web.Response(status=200 if ok else 503, text=json.dumps(body), content_type="application/json")

    app = web.Application(client_max_size=1024)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


class OpsServer:
    def __init__(self, service: "Service", host: str, port: int) -> None:
        self.service = service
        self.host, self.port = host, port
        self.listener: HttpListener | None = None

    async def start(self) -> tuple[str, int]:
        self.listener = HttpListener(make_app(self.service), "ops")
        addr = await self.listener.start(self.host, self.port)
        log.info("ops_listening", address=f"{addr[0]}:{addr[1]}", max_connections=self.listener.max_connections)
        return addr

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.stop()
            self.listener = None
