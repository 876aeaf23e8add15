"""`sendwarden milter` in worker processes: with an inet socket every worker takes MTA
connections (SO_REUSEPORT) and /metrics counts them all; a UNIX socket has one owner, so it
stays one process, said in the log."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from proxy.milter.wire import PacketDecoder
from tests.conftest import ROOT, SENDWARDEN
from tests.milter.test_session import CONNECT, MAIL, POSTFIX_OPTNEG, RCPT, packet
from tests.runtime.test_operations import Serve, scrape
from tests.runtime.test_serve_process import free_port

COMPLIANT = (ROOT / "examples" / "compliant.eml").read_bytes().replace(b"\n", b"\r\n")


def conversation(raw: bytes) -> bytes:
    """The packets Postfix writes for one message once NR_* is agreed (headers, body, EOM)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    out = []
    for line in head.replace(b"\r\n ", b"\n ").replace(b"\r\n\t", b"\n\t").split(b"\r\n"):
        name, _, value = line.partition(b":")
        out.append(packet(b"L", name + b"\0" + value + b"\0"))
    out += [packet(b"N"), packet(b"B", body + b"\r\n"), packet(b"E")]
    return b"".join(out)


async def judge_one(port: int) -> bytes:
    """One MTA connection, one message; the command of the final reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(POSTFIX_OPTNEG + CONNECT + MAIL + RCPT + conversation(COMPLIANT))
        decoder, got = PacketDecoder(), []
        async with asyncio.timeout(20):
            while not got or got[-1][0] not in b"aryd":
                data = await reader.read(65536)
                assert data, f"milter closed the connection after {got}"
                got += decoder.feed(data)
        return got[-1][0]
    finally:
        writer.close()


async def start_milter(tmp_path, env, address: str, extra: str = "") -> Serve:
    config = tmp_path / "sendwarden.toml"
    config.write_text(f'state_dir = "{tmp_path / "var"}"\n{extra}[milter]\naddress = "{address}"\n')
    proc = await asyncio.create_subprocess_exec(*SENDWARDEN, "milter", "--config", str(config),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env)
    s = Serve(proc, 0)
    await s.wait_for("ready")
    return s


async def test_milter_workers_share_an_inet_socket_and_their_metrics(tmp_path, cli_env) -> None:
    port, ops = free_port(), free_port()
    s = await start_milter(tmp_path, cli_env, f"inet:127.0.0.1:{port}",
                           f'workers = 2\n[metrics]\naddress = "127.0.0.1:{ops}"\n')
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while sum(1 for e in s.events if e.get("event") == "ready") < 2:
            assert loop.time() < deadline, s.events[-5:]
            await asyncio.sleep(0.1)
        assert [await judge_one(port) for _ in range(24)] == [b"a"] * 24
        judged = {e["worker"] for e in s.events if e.get("event") == "message"}
        assert judged == {0, 1}, "the kernel gave every MTA connection to one worker"
        samples = {(x.name, tuple(sorted(x.labels.items()))): x.value
                   for f in text_string_to_metric_families((await scrape(("127.0.0.1", ops)))[1]) for x in f.samples}
        assert samples[("sendwarden_messages_total", (("action", "relay"), ("stream", "marketing")))] == 24
    finally:
        assert await s.stop() == 0


async def test_a_unix_milter_socket_stays_one_process(tmp_path, cli_env) -> None:
    path = tmp_path / "milter.sock"
    s = await start_milter(tmp_path, cli_env, f"unix:{path}", "workers = 2\n")
    try:
        warned = await s.wait_for("milter_single_worker")
        assert "inet" in warned["reason"]
        assert not [e for e in s.events if e.get("event") == "worker_started"]
        reader, writer = await asyncio.open_unix_connection(str(path))
        try:
            writer.write(POSTFIX_OPTNEG)
            assert PacketDecoder().feed(await asyncio.wait_for(reader.read(65536), 10))[0][0] == b"O"
        finally:
            writer.close()
    finally:
        assert await s.stop() == 0
    assert all(e.get("event") != "raw" for e in s.events), "a line of the log was not JSON"
