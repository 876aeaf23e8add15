"""ClamAV scanning over clamd's socket (the INSTREAM command), as a fact provider.

When `[checks.attachment.clamav] address` is set, the relay streams each message (or only
those with attachments) to clamd before judging; clamd parses the MIME itself and scans every
part, archives included. The answer is the `clamav` fact, a `ScanResult`; the pure
attachment check turns a signature into `attachment.dangerous`, and a failure (refused,
timed out, clamd error) becomes a `LookupFailed` fact that the policy maps per
`on_unreachable`.

Protocol (clamd(8)): send `zINSTREAM\\0`, then chunks each prefixed with their length as a
4-byte big-endian integer, then a zero-length chunk; clamd answers one NUL-terminated line,
`stream: OK`, `stream: <signature> FOUND` or `<reason> ERROR`. The `ScanResult` record lives in
the policy core (proxy/policy/context.py), which reads it.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, Awaitable

from proxy.facts.sources import FactSources
from proxy.message.mime import Message
from proxy.policy.context import Context, ScanResult

__all__ = ["ClamdError", "ScanResult", "instream", "scan_fact"]

CHUNK = 64 * 1024
MAX_REPLY = 4096


class ClamdError(Exception):
    """clamd could not be reached, or did not give a scan result."""


async def _connect(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if address.startswith("tcp:"):
        host, _, port = address[4:].rpartition(":")
        if not host or not port.isdigit():
            raise ClamdError(f"clamd address {address!r} is not tcp:HOST:PORT")
        return await asyncio.open_connection(host.strip("[]"), int(port))
    path = address[5:] if address.startswith("unix:") else address
    return await asyncio.open_unix_connection(path)


async def instream(address: str, data: bytes, timeout: float) -> ScanResult:
    """Scan `data` with the clamd at `address`; raises ClamdError when there is no verdict."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await _connect(address)
            try:
                writer.write(b"zINSTREAM\0")
                view = memoryview(data)
                for i in range(0, len(data), CHUNK):
                    piece = view[i : i + CHUNK]
                    writer.write(struct.pack(">I", len(piece)))
                    writer.write(piece)
                    await writer.drain()
                writer.write(struct.pack(">I", 0))
                await writer.drain()
                reply = await reader.readuntil(b"\0")
            finally:
                writer.close()
                try:
                    await writer.wait_closed()
                except OSError:
                    pass
    except TimeoutError:
        raise ClamdError(f"clamd at {address} did not answer within {timeout:g}s") from None
    except asyncio.IncompleteReadError as exc:
        raise ClamdError(f"clamd at {address} closed the connection: {exc.partial[:200]!r}") from None
    except asyncio.LimitOverrunError:
        raise ClamdError(f"clamd at {address} sent an overlong reply") from None
    except (OSError, ValueError) as exc:
        raise ClamdError(f"clamd at {address} unreachable: {exc}") from None
    return parse_reply(reply.rstrip(b"\0").decode("utf-8", "replace"), address)


def parse_reply(text: str, address: str = "clamd") -> ScanResult:
    """`stream: OK` → clean; `stream: SIG FOUND` → found; anything else is an error."""
    text = text.strip()
    body = text.partition(": ")[2] if text.startswith("stream:") else text
    if body == "OK":
        return ScanResult()
    if body.endswith(" FOUND"):
        return ScanResult(found=(body[: -len(" FOUND")].strip(),))
    raise ClamdError(f"clamd at {address} answered {text[:200]!r}")


def scan_fact(sources: FactSources, message: Message, ctx: Context, opts: Any) -> ScanResult | None | Awaitable[ScanResult]:
    """The `clamav` fact: None when clamd is not configured, at once when there is nothing to
    scan, else the scan to await."""
    cfg = opts.clamav
    if not cfg.address:
        return None
    if cfg.scan == "attachments" and not message.attachments:
        return ScanResult(scanned=False)
    return instream(cfg.address, message.raw, cfg.timeout)
