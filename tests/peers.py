"""Test peers for the kernel tests: a server and a client in separate processes that exchange exact
byte counts over loopback. Each prints one JSON line describing itself (pid and addresses) on stdout.

    python tests/peers.py server --proto tcp --family 6 --c2s 23456 --s2c 2222
    python tests/peers.py client --proto tcp --family 6 --port P --c2s 23456 --s2c 2222 [--unconnected]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys

LOOPBACK = {"4": "127.0.0.1", "6": "::1", "mapped": "::ffff:127.0.0.1"}


def _say(**fields: object) -> None:
    sys.stdout.write(json.dumps({"pid": os.getpid(), **fields}) + "\n")
    sys.stdout.flush()


def _family(name: str) -> socket.AddressFamily:
    return socket.AF_INET if name == "4" else socket.AF_INET6


def _recv_exact(sock: socket.socket, size: int) -> None:
    got = 0
    while got < size:
        chunk = sock.recv(min(65536, size - got))
        if not chunk:
            raise SystemExit(f"peer closed after {got} of {size} bytes")
        got += len(chunk)


def server(args: argparse.Namespace) -> None:
    family = _family(args.family)
    if args.proto == "tcp":
        listener = socket.socket(family, socket.SOCK_STREAM)
        if args.family == "mapped":
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            listener.bind(("::", 0))
        else:
            listener.bind((LOOPBACK[args.family], 0))
        listener.listen(1)
        _say(role="server", port=listener.getsockname()[1])
        conn, peer = listener.accept()
        _recv_exact(conn, args.c2s)
        conn.sendall(b"s" * args.s2c)
        conn.recv(1)  # wait for the client's close
        conn.close()
        listener.close()
        _say(role="server", done=True, peer=list(peer[:2]))
        return
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK[args.family], 0))
    _say(role="server", port=sock.getsockname()[1])
    data, peer = sock.recvfrom(65536)
    if len(data) != args.c2s:
        raise SystemExit(f"expected a datagram of {args.c2s} bytes, got {len(data)}")
    sock.sendto(b"s" * args.s2c, peer)
    sock.close()
    _say(role="server", done=True, peer=list(peer[:2]))


def client(args: argparse.Namespace) -> None:
    family = _family(args.family)
    target = (LOOPBACK[args.family], args.port)
    if args.proto == "tcp":
        sock = socket.create_connection(target)
        local = sock.getsockname()
        sock.sendall(b"c" * args.c2s)
        _recv_exact(sock, args.s2c)
        sock.close()
    else:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((LOOPBACK[args.family], 0))
        local = sock.getsockname()
        if args.unconnected:
            sock.sendto(b"c" * args.c2s, target)
            data, _ = sock.recvfrom(65536)
        else:
            sock.connect(target)
            sock.send(b"c" * args.c2s)
            data = sock.recv(65536)
        if len(data) != args.s2c:
            raise SystemExit(f"expected a datagram of {args.s2c} bytes, got {len(data)}")
        sock.close()
    _say(role="client", address=local[0], port=local[1], done=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("server", "client"))
    parser.add_argument("--proto", choices=("tcp", "udp"), required=True)
    parser.add_argument("--family", choices=("4", "6", "mapped"), required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--c2s", type=int, required=True)
    parser.add_argument("--s2c", type=int, required=True)
    parser.add_argument("--unconnected", action="store_true")
    args = parser.parse_args()
    server(args) if args.role == "server" else client(args)


if __name__ == "__main__":
    main()
