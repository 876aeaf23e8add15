"""The Received header (proxy/outbound/received.py)."""

from __future__ import annotations

import datetime
import email.utils

from proxy.outbound.received import received


def test_received_header_fields_and_date() -> None:
    when = 1_000_000_000.75
    head = received("relay.test", helo="client\x01.test", ip="::1", proto="ESMTPS", queue_id="Q1",
                    rcpts=["a@example.org"], when=when, comment="held (x)")
    want_date = email.utils.format_datetime(email.utils.localtime(datetime.datetime.fromtimestamp(when, datetime.timezone.utc)))
    assert head == (b"Received: from client?.test ([IPv6:::1])\r\n\tby relay.test (sendwarden) with ESMTPS id Q1"
                    b"\r\n\t(held x)\r\n\tfor <a@example.org>;\r\n\t" + want_date.encode() + b"\r\n")
    # the date of each second is made once: a later second gets its own
    later = received("relay.test", helo="c", ip="127.0.0.1", proto="ESMTP", queue_id="Q2", rcpts=[], when=when + 1)
    assert later.endswith(email.utils.format_datetime(email.utils.localtime(
        datetime.datetime.fromtimestamp(when + 1, datetime.timezone.utc))).encode() + b"\r\n")
