"""A loopback traffic workload for the benchmarks: small TCP sends and UDP sends to a sink process that
reads everything. Prints one JSON line: elapsed seconds of the send loops and the counts.

    python bench/workload.py --tcp 200000 --udp 100000 --size 64 [--rate 10000]

With ``--rate`` the sends are paced to that many per second (for CPU/RSS measurements); without it
they run flat out (for the overhead ratio).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import time
from multiprocessing.connection import Connection


def sink(ready: Connection) -> None:
    """Accept one TCP connection and read one UDP socket until both say stop."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    ready.send((listener.getsockname()[1], udp.getsockname()[1]))
    conn, _ = listener.accept()
    udp.setblocking(False)
    conn.setblocking(False)
    import selectors  # noqa: PLC0415

    selector = selectors.DefaultSelector()
    selector.register(conn, selectors.EVENT_READ)
    selector.register(udp, selectors.EVENT_READ)
    open_tcp = True
    while open_tcp:
        for key, _ in selector.select(timeout=5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                while True:
                    data = sock.recv(65536)
                    if sock is conn and not data:
                        open_tcp = False
                        break
            except BlockingIOError:
                pass
    # drain what UDP is left, briefly
    end = time.monotonic() + 0.2
    while time.monotonic() < end:
        try:
            udp.recv(65536)
        except BlockingIOError:
            time.sleep(0.01)


def paced(count: int, rate: float | None, send: object) -> float:
    assert callable(send)
    start = time.perf_counter()
    if rate is None:
        for _ in range(count):
            send()
    else:
        batch = max(int(rate / 1000), 1)  # pace in 1 ms steps
        for index in range(0, count, batch):
            for _ in range(min(batch, count - index)):
                send()
            target = start + (index + batch) / rate
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tcp", type=int, default=200_000)
    parser.add_argument("--udp", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rate", type=float, help="sends per second in total (default: flat out)")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=sink, args=(child,), daemon=True)
    process.start()
    tcp_port, udp_port = parent.recv()
    payload = b"x" * args.size
    tcp = socket.create_connection(("127.0.0.1", tcp_port))
    tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.connect(("127.0.0.1", udp_port))
    # the TCP loop runs first, then the UDP loop: each at the full rate keeps the total at --rate
    tcp_rate = udp_rate = args.rate or None
    cpu_start = time.process_time()
    tcp_seconds = paced(args.tcp, tcp_rate, lambda: tcp.send(payload))
    udp_seconds = paced(args.udp, udp_rate, lambda: udp.send(payload))
    cpu_seconds = time.process_time() - cpu_start
    tcp.close()
    udp.close()
    process.join(timeout=30)
    print(
        json.dumps(
            {
                "tcp_sends": args.tcp,
                "udp_sends": args.udp,
                "tcp_seconds": tcp_seconds,
                "udp_seconds": udp_seconds,
                "seconds": tcp_seconds + udp_seconds,
                "cpu_seconds": cpu_seconds,  # user + system time of the sending process
            }
        )
    )


if __name__ == "__main__":
    main()
