#!/usr/bin/python3
"""A DNS server on loopback for the authentication tests (tests/auth.rs).

Serves the TXT records of a zone file over UDP and TCP on 127.0.0.1, on a port the
kernel picks; prints that port on its first line of output. Every question it receives
is appended (name and type) to --log, so a test can tell how many lookups were made.
With --blackhole it reads every question and never answers: the resolver's timeout is
what ends the lookup.

Zone file: one record a line, `NAME TXT-VALUE` (the value as it goes in DNS, without
quotes; split into 255-byte strings here). Lines starting with # are comments. Names
not in the zone get NXDOMAIN.

Runs until its standard input closes (the test holds the pipe) or it is killed.
"""

import argparse
import socket
import sys
import threading

from dnslib import QTYPE, RCODE, RR, TXT, DNSRecord


def load_zone(path):
    zone = {}
    if path:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                name, value = line.split(None, 1)
                zone.setdefault(name.rstrip(".").lower(), []).append(value)
    return zone


class Server:
    def __init__(self, zone, log, blackhole):
        self.zone = zone
        self.log = log
        self.blackhole = blackhole
        self.lock = threading.Lock()

    def record(self, request):
        q = request.q
        with self.lock:
            if self.log:
                with open(self.log, "a", encoding="utf-8") as f:
                    f.write("%s %s\n" % (str(q.qname).rstrip("."), QTYPE[q.qtype]))

    def answer(self, data):
        request = DNSRecord.parse(data)
        self.record(request)
        if self.blackhole:
            return None
        reply = request.reply()
        reply.header.aa = 1
        name = str(request.q.qname).rstrip(".").lower()
        values = self.zone.get(name)
        if values is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype in (QTYPE.TXT, QTYPE.ANY):
            for value in values:
                raw = value.encode("utf-8")
                parts = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, ttl=300, rdata=TXT(parts)))
        return reply.pack()

    def serve_udp(self, sock):
        while True:
            data, peer = sock.recvfrom(65535)
            try:
                out = self.answer(data)
            except Exception as e:  # a malformed packet: say so, keep serving
                print("dns_server: bad query: %s" % e, file=sys.stderr)
                continue
            if out is not None:
                sock.sendto(out, peer)

    def serve_tcp(self, listener):
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=self.serve_conn, args=(conn,), daemon=True).start()

    def serve_conn(self, conn):
        held = []
        try:
            while True:
                head = recv_exact(conn, 2)
                if head is None:
                    return
                data = recv_exact(conn, int.from_bytes(head, "big"))
                if data is None:
                    return
                out = self.answer(data)
                if out is None:
                    held.append(conn)  # never answered: the client times out
                    continue
                conn.sendall(len(out).to_bytes(2, "big") + out)
        except Exception as e:
            print("dns_server: tcp: %s" % e, file=sys.stderr)
        finally:
            if not held:
                conn.close()


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def bind_pair():
    """A UDP and a TCP socket on the same loopback port."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind(("127.0.0.1", port))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(16)
        return udp, tcp, port
    raise SystemExit("dns_server: no free port")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--zone")
    p.add_argument("--log")
    p.add_argument("--blackhole", action="store_true")
    args = p.parse_args()
    server = Server(load_zone(args.zone), args.log, args.blackhole)
    udp, tcp, port = bind_pair()
    threading.Thread(target=server.serve_udp, args=(udp,), daemon=True).start()
    threading.Thread(target=server.serve_tcp, args=(tcp,), daemon=True).start()
    print(port, flush=True)
    # Until the test closes our stdin (or dies, which closes it too).
    sys.stdin.read()


if __name__ == "__main__":
    main()
