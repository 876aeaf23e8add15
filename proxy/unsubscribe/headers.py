"""List-Unsubscribe headers that sendwarden inserts into marketing messages that lack them.

Only into single-recipient transactions: the token names one recipient, and one message's
headers are the same for all its recipients. A multi-recipient marketing message without the
headers is left as it is and judged as it is (the unsubscribe checks flag it), and the audit
line says why nothing was inserted: the remedy is one message per recipient, which is what
every bulk platform sends anyway. The headers are prepended; the message is never re-serialised.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.message.mime import Message
from proxy.store.base import GLOBAL, Scope
from proxy.unsubscribe.token import TokenKeys


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where tokens are redeemed: the public https base URL and/or the mailto address parts."""

    base_url: str = ""
    mailto_local: str = "unsubscribe"
    mailto_domain: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.base_url or self.mailto_domain)

    def https(self, token: str) -> str:
        return f"{self.base_url}/unsubscribe/{token}"

    def mailto_address(self, token: str) -> str:
        return f"{self.mailto_local}+{token}@{self.mailto_domain}"


def token_scope(kind: str, brand: str, list_id: str) -> Scope:
    """What the inserted link unsubscribes from; a missing list or brand falls back wider."""
    if kind == "list" and list_id:
        return Scope("list", list_id)
    if kind in ("list", "brand") and brand:
        return Scope("brand", brand)
    return GLOBAL


def why_not(message: Message, recipients: int, endpoints: Endpoints) -> str | None:
    """None when headers should be inserted, else the reason they are not."""
    if message.count("List-Unsubscribe"):
        return "the message has its own List-Unsubscribe"
    if not endpoints.configured:
        return "no [unsubscribe] base_url or mailto_domain configured"
    if recipients != 1:
        return f"{recipients} recipients: a per-recipient token needs one message per recipient"
    return None


def list_unsubscribe(keys: TokenKeys, endpoints: Endpoints, address: str, scope: Scope, expires: int) -> bytes:
    """The header block to prepend (CRLF line endings, each URI on its own folded line)."""
    token = keys.issue(address, scope, expires)
    uris = []
    if endpoints.base_url:
        uris.append(f"<{endpoints.https(token)}>")
    if endpoints.mailto_domain:
        uris.append(f"<mailto:{endpoints.mailto_address(token)}?subject=unsubscribe>")
    block = "List-Unsubscribe: " + ",\r\n ".join(uris) + "\r\n"
    if endpoints.base_url:
        # RFC 8058: one-click needs the https URI above.
        block += "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    return block.encode("utf-8")
