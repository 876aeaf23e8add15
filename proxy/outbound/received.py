"""The RFC 5321 trace header sendwarden prepends to every message it passes on.

One function serves both ways a message leaves: relayed at once (the SMTP handler, from the live
session) and released from the quarantine later (from what the quarantine recorded about the
session), so both write the same header for the same hop.
"""

from __future__ import annotations

import datetime
import email.utils
import re
import time
from functools import lru_cache
from typing import Sequence

_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")


def received(hostname: str, *, helo: str, ip: str, proto: str, queue_id: str, rcpts: Sequence[str],
             when: float | None = None, comment: str = "") -> bytes:
    """`Received: from HELO ([IP]) by HOST (sendwarden) with PROTO id QID [(comment)] [for <rcpt>]; DATE`.

    `proto` is the RFC 3848 protocol name (ESMTP, ESMTPS, ESMTPSA, ...); `when` is the time the
    message was received (default: now); `comment` is added as an RFC 5322 comment.
    """
    # The client's words, in a header of the message: printable ASCII only (no control bytes,
    # no undecodable bytes, nothing 8-bit in a header of a message that may not allow it).
    helo = _UNPRINTABLE.sub("?", helo or "unknown")[:200]
    literal = f"IPv6:{ip}" if ":" in ip else ip
    note = ""
    if comment:
        clean = "".join(ch for ch in comment if ch not in "()\\\r\n")[:200]
        note = f"\r\n\t({clean})"
    rcpt = f"\r\n\tfor <{rcpts[0]}>" if len(rcpts) == 1 else ""
    date = _date(int(time.time() if when is None else when))
    text = (f"Received: from {helo} ([{literal}])\r\n\tby {hostname} (sendwarden) with {proto or 'ESMTP'} id {queue_id}"
            f"{note}{rcpt};\r\n\t{date}\r\n")
    return text.encode("utf-8", "surrogateescape")


@lru_cache(maxsize=8)
def _date(second: int) -> str:
    """The RFC 5322 date of a second, in local time: made once a second, not once a message
    (email.utils.localtime costs more than the rest of the header)."""
    stamp = datetime.datetime.fromtimestamp(second, datetime.timezone.utc)
    return email.utils.format_datetime(email.utils.localtime(stamp))


__all__ = ["received"]
