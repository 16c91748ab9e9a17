#!/usr/bin/env python3
"""Measurements oha cannot make, for benches/proxy.sh (standard library only).

  proxy_probe.py startup LOG PIDFILE URL -- CMD ARGS...
      Starts CMD (stdout+stderr to LOG, left running, its pid in PIDFILE),
      polls URL (GET, a fresh connection each time) until it answers 200 and
      prints the milliseconds from spawn to that answer.

  proxy_probe.py ttfb HOST:PORT PATH BODY N
      Sends N streaming POSTs with BODY back to back on one keep-alive
      connection (raw socket, TCP_NODELAY) and prints JSON with the p50/p99
      milliseconds from the request's last byte to the first SSE `data:`
      line of the body (time to first chunk, not just to headers), and to
      the end of the response.
"""

import json
import socket
import subprocess
import sys
import time
import urllib.request


def startup(log, pidfile, url, cmd):
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    with open(pidfile, "w") as f:
        f.write(str(p.pid))
    deadline = t0 + 30
    while time.perf_counter() < deadline:
        if p.poll() is not None:
            print(f"server exited with {p.returncode}; see {log}", file=sys.stderr)
            return 1
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    print(f"{(time.perf_counter() - t0) * 1000:.1f}")
                    return 0
        except OSError:
            pass
        time.sleep(0.0005)
    print("server not healthy within 30 s", file=sys.stderr)
    return 1


def read_response(sock, buf):
    """Reads one HTTP/1.1 response; returns (t_first_data, leftover)."""
    t_first = None
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before headers")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = lines[0].split()[1]
    if status != b"200":
        raise RuntimeError(f"status {status!r}: {body[:200]!r}")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    chunked = headers.get(b"transfer-encoding", b"").lower() == b"chunked"
    length = int(headers.get(b"content-length", b"-1"))
    while True:
        if t_first is None and b"data:" in body:
            t_first = time.perf_counter()
        if chunked and (body.endswith(b"\r\n0\r\n\r\n") or body == b"0\r\n\r\n"):
            # The terminating zero-size chunk ends the response.
            return t_first, b""
        if not chunked and length >= 0 and len(body) >= length:
            return t_first, body[length:]
        chunk = sock.recv(65536)
        if not chunk:
            if not chunked and length < 0:
                return t_first, b""
            raise ConnectionError("closed mid-body")
        body += chunk


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def ttfb(hostport, path, body, n):
    host, port = hostport.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = body.encode()
    req = (
        f"POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data
    first, total = [], []
    for i in range(n + 20):
        t0 = time.perf_counter()
        sock.sendall(req)
        tf, left = read_response(sock, b"")
        t1 = time.perf_counter()
        if left:
            raise RuntimeError("pipelining leftovers")
        if tf is None:
            raise RuntimeError("no data: line in a streaming response")
        if i >= 20:  # warm-up
            first.append((tf - t0) * 1000)
            total.append((t1 - t0) * 1000)
    print(json.dumps({
        "n": n,
        "first_p50_ms": pct(first, 0.5), "first_p99_ms": pct(first, 0.99),
        "total_p50_ms": pct(total, 0.5), "total_p99_ms": pct(total, 0.99),
    }))
    return 0


def main():
    a = sys.argv[1:]
    if a[:1] == ["startup"] and "--" in a:
        i = a.index("--")
        return startup(a[1], a[2], a[3], a[i + 1:])
    if a[:1] == ["ttfb"] and len(a) == 5:
        return ttfb(a[1], a[2], a[3], int(a[4]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
