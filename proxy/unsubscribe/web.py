"""The one-click unsubscribe endpoint (RFC 8058), on aiohttp's web server.

    POST /unsubscribe/TOKEN   body List-Unsubscribe=One-Click → suppressed at once, 200
    GET  /unsubscribe/TOKEN   a confirmation page whose button sends that POST

A GET never unsubscribes: link scanners and previews fetch URLs. A forged token gets 403, an
expired one 410, a malformed one 404; each is logged. Bodies over the configured size get 413.
Run it behind a TLS-terminating proxy that forwards to `[unsubscribe] listen`. The service
serves `app()` with a connection cap and a header timeout (proxy/runtime/listeners.py); a body
must arrive within BODY_TIMEOUT (408).
"""

from __future__ import annotations

import asyncio
import html
import time
from typing import Any, Awaitable, Callable

import structlog
from aiohttp import web

from proxy.audit import AddressMasker
from proxy.store.base import RecipientStore, StoreError, Suppression
from proxy.unsubscribe.token import Token, TokenError, TokenKeys

log = structlog.get_logger("sendwarden.unsubscribe")
_STATUS = {"malformed": 404, "forged": 403, "expired": 410}
# Seconds a one-click POST may take to send its (small) body; the head has its own timeout.
BODY_TIMEOUT = 10.0
_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title></head><body style="font-family:sans-serif;max-width:36em;margin:3em auto">
<h1>{title}</h1>{body}</body></html>"""


def page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(text=_PAGE.format(title=html.escape(title), body=body), status=status, content_type="text/html")


def mask(address: str) -> str:
    """r•••@example.org: enough for the owner to recognise, little for anyone else."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}•••@{domain}"


class UnsubscribeEndpoint:
    def __init__(self, store: RecipientStore, keys: TokenKeys, masker: AddressMasker, timeout: float, max_body: int) -> None:
        self.store = store
        self.keys = keys
        self.masker = masker
        self.timeout = timeout
        self.max_body = max_body
        self.port = 0  # where it listens, once the service serves app() (proxy/runtime/listeners.py)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body, middlewares=[_security_headers])
        app.router.add_get("/unsubscribe/{token}", self.confirm)
        app.router.add_post("/unsubscribe/{token}", self.one_click)
        return app

    def _token(self, request: web.Request) -> tuple[Token | None, web.Response | None]:
        try:
            return self.keys.verify(request.match_info["token"], time.time()), None
        except TokenError as exc:
            log.warning("unsubscribe_token_refused", via="https", method=request.method, kind=exc.kind,
                        client=request.remote or "")
            title = "This unsubscribe link has expired" if exc.kind == "expired" else "This unsubscribe link is not valid"
            return None, page(title, "<p>Use the unsubscribe link in a recent message, or reply to the sender.</p>", _STATUS[exc.kind])

    async def confirm(self, request: web.Request) -> web.Response:
        token, refusal = self._token(request)
        if token is None:
            return refusal or page("Not found", "", 404)
        who = html.escape(mask(token.address))
        form = (f'<p>Stop messages to <strong>{who}</strong>?</p><form method="post">'
                '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
                '<button type="submit">Unsubscribe</button></form>')
        return page("Unsubscribe", form)

    async def one_click(self, request: web.Request) -> web.Response:
        token, refusal = self._token(request)
        if token is None:
            return refusal or page("Not found", "", 404)
        try:
            form = await asyncio.wait_for(request.post(), BODY_TIMEOUT)  # raises 413 past client_max_size
        except TimeoutError:
            log.warning("unsubscribe_body_timeout", client=request.remote or "")
            return page("Request timeout", "<p>The request did not arrive in time.</p>", 408)
        if form.get("List-Unsubscribe") != "One-Click":
            return page("Bad request", "<p>Expected List-Unsubscribe=One-Click (RFC 8058).</p>", 400)
        entry = Suppression(token.address, token.scope, "unsubscribe", "one-click", time.time())
        try:
            await asyncio.wait_for(self.store.suppress([entry]), self.timeout)
        except (StoreError, TimeoutError) as exc:
            log.error("unsubscribe_failed", via="https", error=str(exc) or type(exc).__name__)
            return page("Please try again", "<p>We could not record your request just now.</p>", 503)
        except ValueError as exc:  # an address the store cannot file (signed, so ours: log it)
            log.error("unsubscribe_failed", via="https", error=str(exc))
            return page("This unsubscribe link is not valid", "", 400)
        log.info("unsubscribed", via="https", rcpt=self.masker(entry.address), scope=str(entry.scope))
        return page("You are unsubscribed", f"<p>{html.escape(mask(entry.address))} will get no more of these messages.</p>")


@web.middleware
async def _security_headers(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # 404, 405, 413 ...: raised, with the same headers
        _secure(exc.headers)
        raise
    _secure(response.headers)
    return response


def _secure(headers: Any) -> None:
    headers["Cache-Control"] = "no-store"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
