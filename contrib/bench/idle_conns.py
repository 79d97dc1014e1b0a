#!/usr/bin/env python3
"""Opens COUNT keep-alive connections to 127.0.0.1:PORT, sends one GET on each
and reads the whole response, then leaves them all open and idle.

    idle_conns.py PORT PATH COUNT READY_FILE HOLD_SECONDS

When every connection has had its response, writes "<ok> <failed>" to
READY_FILE (ok = connections that got a 200 and are still open) and holds the
connections until SIGTERM or HOLD_SECONDS. Requests are sequential: one
connection at a time, so the gateway never needs more than one upstream
connection. Only the standard library is used.
"""
import os
import resource
import signal
import socket
import sys
import time


def read_response(sock: socket.socket) -> int:
    """Reads one response (Content-Length or chunked framing); returns its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    if b"content-length" in headers:
        want = int(headers[b"content-length"])
        while len(body) < want:
            chunk = sock.recv(65536)
            if not chunk:
                return 0
            body += chunk
    elif headers.get(b"transfer-encoding") == b"chunked":
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                return 0
            body += chunk
    return status


def main() -> int:
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    port, path, count, ready, hold = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    request = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: idle-conns\r\n\r\n" % path).encode()
    conns, failed = [], 0
    for _ in range(count):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(request)
            if read_response(s) == 200:
                conns.append(s)
            else:
                failed += 1
                s.close()
        except OSError:
            failed += 1
    # still open? (a gateway may close an idle connection at once)
    time.sleep(0.5)
    alive = 0
    for s in conns:
        s.setblocking(False)
        try:
            s.recv(1)                  # data or EOF: not an idle keep-alive connection
            failed += 1
        except BlockingIOError:
            alive += 1
        except OSError:
            failed += 1
    with open(ready + ".tmp", "w") as f:
        f.write("%d %d\n" % (alive, failed))
    os.replace(ready + ".tmp", ready)
    time.sleep(hold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
