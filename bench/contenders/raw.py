"""The protocol bound: the least a Python worker or producer can do on the wire.

``work``: one process per slot, each a blocking socket looping FETCH -> json.loads -> ACK. No heartbeat, no
error handling, no shutdown care (it abandons its FETCH when killed): what the server allows, not a product.
``pipelined``: the same, but each ACK goes out in one write with the next FETCH (one round trip per job).
``push``/``pushb``: PUSH one job per round trip, or PUSHB 1,000 per round trip, from one connection.

    python -m bench.contenders.raw work|pipelined URL QUEUE SLOTS
    python -m bench.contenders.raw push|pushb URL QUEUE COUNT     (prints the seconds taken)
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from urllib.parse import urlparse

from bench.contenders import probe


def connect(url: str, wid: str | None) -> tuple[socket.socket, object]:
    parsed = urlparse(url)
    sock = socket.create_connection((parsed.hostname, parsed.port or 7419))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = sock.makefile("rb")
    reader.readline()  # +HI {"v":2}
    hello: dict[str, object] = {"v": 2}
    if wid:
        hello.update(hostname="raw", wid=wid, pid=os.getpid(), labels=["raw"])
    sock.sendall(b"HELLO " + json.dumps(hello).encode() + b"\r\n")
    if reader.readline() != b"+OK\r\n":
        raise SystemExit("HELLO refused")
    return sock, reader


def work(url: str, queue: str, pipelined: bool) -> None:
    sock, reader = connect(url, os.urandom(8).hex())
    fetch = f"FETCH {queue}\r\n".encode()
    send, readline, read = sock.sendall, reader.readline, reader.read  # type: ignore[attr-defined]
    probing = probe.enabled()
    send(fetch)
    while True:
        header = readline()
        if header == b"$-1\r\n":
            send(fetch)
            continue
        payload = read(int(header[1:]) + 2)
        job = json.loads(payload)
        args = job["args"]
        if probing and args:
            probe.started(args[0])
        ack = b'ACK {"jid":"%s"}\r\n' % job["jid"].encode()
        if pipelined:
            send(ack + fetch)
            if readline() != b"+OK\r\n":
                raise SystemExit("ACK refused")
        else:
            send(ack)
            if readline() != b"+OK\r\n":
                raise SystemExit("ACK refused")
            send(fetch)
        if probing and args:
            probe.acked(args[0])


def push(url: str, queue: str, count: int, bulk: bool) -> float:
    sock, reader = connect(url, None)
    readline = reader.readline  # type: ignore[attr-defined]
    tag = os.urandom(4).hex()
    started = time.perf_counter()
    if bulk:
        for start in range(0, count, 1000):
            jobs = [
                {"jid": f"{tag}{i:016x}", "jobtype": "noop", "args": [], "queue": queue, "retry": 25}
                for i in range(start, min(count, start + 1000))
            ]
            sock.sendall(b"PUSHB " + json.dumps(jobs, separators=(",", ":")).encode() + b"\r\n")
            header = readline()
            body = reader.read(int(header[1:]) + 2)  # type: ignore[attr-defined]
            if body != b"{}\r\n":
                raise SystemExit(f"PUSHB rejected jobs: {body[:200]!r}")
    else:
        for i in range(count):
            job = {"jid": f"{tag}{i:016x}", "jobtype": "noop", "args": [], "queue": queue, "retry": 25}
            sock.sendall(b"PUSH " + json.dumps(job, separators=(",", ":")).encode() + b"\r\n")
            if readline() != b"+OK\r\n":
                raise SystemExit("PUSH refused")
    return time.perf_counter() - started


def main(argv: list[str]) -> int:
    mode, url, queue = argv[0], argv[1], argv[2]
    if mode in ("work", "pipelined"):
        slots = int(argv[3])
        for _ in range(slots - 1):
            if os.fork() == 0:
                break
        work(url, queue, mode == "pipelined")
        return 0
    print(f"{push(url, queue, int(argv[3]), mode == 'pushb'):.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
