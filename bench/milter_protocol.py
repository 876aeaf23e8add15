"""What the milter protocol layer costs per message, without any policy work.

A client process plays Postfix (negotiation with NR_* for headers and body, as Postfix 3 does;
one connection per message; macros; the message's headers and body in 64 KiB chunks) against an
in-process MilterServer whose application accepts every message with one added header. Prints
messages per second and the milter process's CPU milliseconds per message.

    .venv/bin/python bench/milter_protocol.py [--messages 2000] [--sessions 10] [FILE.eml]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import struct
import time
from pathlib import Path

from proxy.milter import AddHeader, Decision, MilterApplication, MilterOptions, MilterServer, MilterTransaction
from proxy.milter.wire import PacketDecoder

ROOT = Path(__file__).resolve().parent.parent


def packet(cmd: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + cmd + data


def conversation(raw: bytes) -> bytes:
    """Everything Postfix writes for one message once NR_HDR/NR_EOH/NR_BODY are agreed."""
    head, _, body = raw.partition(b"\r\n\r\n")
    out = [packet(b"D", b"C{client_addr}\x00127.0.0.1\x00j\x00mta.test\x00"),
           packet(b"C", b"localhost\x004\x9c\x40127.0.0.1\x00"),
           packet(b"D", b"M{mail_addr}\x00news@shop.example.com\x00"),
           packet(b"M", b"<news@shop.example.com>\x00"),
           packet(b"D", b"R{rcpt_addr}\x00reader@example.org\x00"),
           packet(b"R", b"<reader@example.org>\x00")]
    for line in head.replace(b"\r\n ", b"\n ").replace(b"\r\n\t", b"\n\t").split(b"\r\n"):
        name, _, value = line.partition(b":")
        out.append(packet(b"L", name + b"\x00" + value + b"\x00"))
    out.append(packet(b"N"))
    body += b"\r\n"
    for i in range(0, len(body), 65535):
        out.append(packet(b"B", body[i:i + 65535]))
    out += [packet(b"D", b"Ei\x00QID\x00"), packet(b"E")]
    return b"".join(out)


OPTNEG = packet(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF))
# Replies per message: OPTNEG, CONNECT, MAIL, RCPT, then ADDHEADER and ACCEPT.
REPLIES = 6


async def client(port: int, messages: int, sessions: int, wire: bytes) -> float:
    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(OPTNEG + wire)
        decoder, got = PacketDecoder(), 0
        while got < REPLIES:
            got += len(decoder.feed(await reader.read(65536)))
        writer.write(packet(b"Q"))
        writer.close()
        await writer.wait_closed()

    queue = list(range(messages))

    async def worker() -> None:
        while queue:
            queue.pop()
            await one()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(sessions)))
    return time.perf_counter() - start


def run_client(port: int, messages: int, sessions: int, wire: bytes, out: "multiprocessing.Queue[float]") -> None:
    out.put(asyncio.run(client(port, messages, sessions, wire)))


class AcceptAll(MilterApplication):
    async def end_of_message(self, transaction: MilterTransaction) -> Decision:
        return Decision.accept(AddHeader("X-Sendwarden", f"checked {len(transaction.message)}"))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("message", nargs="?", default=str(ROOT / "examples" / "compliant.eml"))
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=10)
    args = parser.parse_args()
    raw = Path(args.message).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    server = MilterServer(AcceptAll, MilterOptions())
    address = await server.listen("inet:127.0.0.1:0")
    port = int(address.rsplit(":", 1)[1])
    results: multiprocessing.Queue[float] = multiprocessing.Queue()
    proc = multiprocessing.Process(target=run_client, args=(port, args.messages, args.sessions, conversation(raw), results))
    cpu0 = time.process_time()
    proc.start()
    while proc.is_alive():
        await asyncio.sleep(0.05)
    cpu = time.process_time() - cpu0
    elapsed = results.get()
    await server.stop()
    print(f"message: {Path(args.message).name}, {len(raw)} bytes; {args.messages} messages, {args.sessions} sessions")
    print(f"  {args.messages / elapsed:,.0f} msg/s, milter CPU {cpu * 1000 / args.messages:.3f} ms/msg")


if __name__ == "__main__":
    asyncio.run(main())
