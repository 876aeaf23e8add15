"""Judge a sample message once before the first client's, at start and after each reload.

What judging needs the first time is made lazily: modules imported on first use, the HTML
parser and the XSLT stylesheet compiled for the thread, caches empty. The first message after
start paid for all of it: 15.6 ms of policy time against 2 ms for the next (audit log, 30 KB
newsletter). Here that is paid while starting, before the heap is frozen (proxy/runtime/service.py
freeze_heap), so what it builds is also kept out of the garbage collector's way.

The sample is a marketing newsletter with every part a check reads (text, HTML with links,
images, a hidden preheader, a form-free body, an attachment), judged under every stream of the
policy. Pure: no store, no DNS, no network (fact providers are not asked).

What the sample cannot reach, each check family's options build in `prepare`: the label
patterns of the content lists, made on a list's first hit, cost the first message with a hit
~180 ms; after `prepare`, ~7 ms (the per-word matchers of the regex terms are still made on
their first word: a few ms each, bounded by the lists).
"""

from __future__ import annotations

import ctypes
import time

import structlog

from proxy.message import html as lxmlview
from proxy.message.mime import Message
from proxy.policy.engine import judge
from proxy.policy.loader import Policy
from proxy.policy.context import Context

log = structlog.get_logger("sendwarden.warmup")

SAMPLE = (
    b"From: \"Example Shop\" <news@shop.example.com>\r\n"
    b"To: reader@example.org\r\n"
    b"Subject: Our autumn collection is here\r\n"
    b"Date: Sun, 29 Nov 2026 09:00:00 +0000\r\n"
    b"Message-ID: <warm-up@shop.example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"List-Unsubscribe: <https://shop.example.com/unsubscribe?u=1>, <mailto:unsubscribe@shop.example.com>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"Content-Type: multipart/mixed; boundary=\"m\"\r\n"
    b"\r\n"
    b"--m\r\n"
    b"Content-Type: multipart/alternative; boundary=\"a\"\r\n"
    b"\r\n"
    b"--a\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Our autumn collection: https://shop.example.com/autumn\r\n"
    b"Unsubscribe: https://shop.example.com/unsubscribe?u=1\r\n"
    b"--a\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"<html><body><div style=3D\"display:none;max-height:0;overflow:hidden\">Preheader</div>\r\n"
    b"<p style=3D\"font-size:14px\">Our <a href=3D\"https://shop.example.com/autumn\">autumn <b>collection</b></a>.\r\n"
    b"<a href=3D\"https://shop.example.com/coat\"><img src=3D\"https://shop.example.com/c.png\" alt=3D\"Coat\"></a></p>\r\n"
    b"<p><a href=3D\"https://shop.example.com/unsubscribe?u=3D1\">Unsubscribe</a> |\r\n"
    b"<a href=3D\"https://shop.example.com/privacy\">Privacy policy</a></p></body></html>\r\n"
    b"--a--\r\n"
    b"--m\r\n"
    b"Content-Type: application/pdf; name=\"catalogue.pdf\"\r\n"
    b"Content-Disposition: attachment; filename=\"catalogue.pdf\"\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"JVBERi0xLjQKJeLjz9MKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK\r\n"
    b"--m--\r\n"
)


# glibc's M_TRIM_THRESHOLD, and how much freed memory at the heap's top a process keeps.
_M_TRIM_THRESHOLD = -1
KEEP_FREED_BYTES = 32 << 20


def keep_freed_heap(limit: int = KEEP_FREED_BYTES) -> bool:
    """Let the C heap keep up to `limit` freed bytes at its top instead of giving them back to
    the kernel after each message. lexbor (proxy/message/html5.py) builds each message's tree in
    a few hundred KB it frees at the end; returned and taken again, those pages fault in anew,
    message after message: 80 page faults and 0.14 ms of system time for each 30 KB newsletter
    (measured as bench/html_view_bench.py --no-keep-heap does). True when glibc took the setting
    (another C library may have no mallopt, or ignore it)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_TRIM_THRESHOLD, limit))


def prepare(policy: Policy) -> None:
    """Build what a check makes on the first message that needs it and the sample does not
    reach: the content lists' label patterns (the first message with a hit waited ~180 ms for
    them), the link words' own. Touches only `policy`: a reload runs it in a thread before
    the new policy is swapped in. Never raises, as `warm_up`."""
    for options in {id(o): o for checks in policy.checks.values() for _, o in checks}.values():
        try:
            options.prepare()
        except Exception as exc:
            log.warning("warm_up_failed", stream="", error=repr(exc))


def warm_up(policy: Policy) -> float:
    """`prepare`, then judge the sample under every stream; returns the seconds it took.
    Never raises: a check that fails here is reported and will be reported again (as
    check.error) on real mail."""
    started = time.perf_counter()
    keep_freed_heap()
    prepare(policy)
    for name, stream in policy.streams.items():
        try:
            judge(policy, Message.from_bytes(SAMPLE), Context(stream=name, marketing=stream.marketing, now=time.time()))
        except Exception as exc:
            log.warning("warm_up_failed", stream=name, error=repr(exc))
    # The view (proxy/message/html5.py) hands what may hide beyond whole elements to html.py:
    # its parser and stylesheet are built for the thread here too, though the sample needs none.
    try:
        lxmlview.extract_lxml(Message.from_bytes(SAMPLE).html)
    except Exception as exc:
        log.warning("warm_up_failed", stream="", error=repr(exc))
    return time.perf_counter() - started


__all__ = ["KEEP_FREED_BYTES", "SAMPLE", "keep_freed_heap", "prepare", "warm_up"]
