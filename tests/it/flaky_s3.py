"""A proxy in front of an S3-compatible server that misbehaves the way a real network and a
busy S3 do, for the fault tests:

- cut: the request is passed on, the server acts on it (an object is written, a listing is
  made), and then the connection is closed without an answer: the client cannot tell
  whether its request took effect;
- slowdown: the request is answered `503 SlowDown` without reaching the server.

    flaky_s3.py PORT_FILE UPSTREAM_URL RULES_FILE LOG_FILE

It listens on a free loopback port and writes that port to PORT_FILE. RULES_FILE is JSON,
read again whenever it changes, so that a test can turn faults on and off:

    {"cut": [{"method": "PUT", "path": "_delta_log/\\d+\\.json$", "every": 3}],
     "slowdown": [{"method": "GET", "path": "", "every": 10}]}

A rule matches a request by method (or "*") and a regular expression searched in its path
and query; it acts on every N-th request it matches ("every": N), or on the ones counted in
"nth" (a list: [1] is the first), counted per rule, so the same run of requests meets the
same faults. Each fault is logged to LOG_FILE, one line each, for the
test to count. Stops by itself after an hour, so that a test that dies cannot leave it.
"""
import http.client
import http.server
import json
import os
import re
import socket
import sys
import threading
import time
from urllib.parse import urlparse

PORT_FILE, UPSTREAM, RULES_FILE, LOG_FILE = sys.argv[1:5]
UP = urlparse(UPSTREAM)
LOCK = threading.Lock()
STATE = {"mtime": None, "rules": {"cut": [], "slowdown": []}, "counts": {}}
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-connection", "proxy-authenticate", "proxy-authorization"}


def rules():
    try:
        mtime = os.stat(RULES_FILE).st_mtime_ns
    except FileNotFoundError:
        return STATE["rules"]
    if mtime != STATE["mtime"]:
        with open(RULES_FILE) as f:
            text = f.read()
        try:
            STATE["rules"] = json.loads(text) if text.strip() else {}
            STATE["counts"] = {}
            STATE["mtime"] = mtime
        except ValueError:
            pass  # a file being written: keep the rules we had
    return STATE["rules"]


def fault(method, target):
    """The fault this request meets, if any: "cut", "slowdown" or None."""
    with LOCK:
        current = rules()
        for kind in ("slowdown", "cut"):
            for i, rule in enumerate(current.get(kind, [])):
                if rule.get("method", "*") not in ("*", method):
                    continue
                if not re.search(rule.get("path", ""), target):
                    continue
                key = (kind, i)
                n = STATE["counts"].get(key, 0) + 1
                STATE["counts"][key] = n
                if "nth" in rule:
                    if n in rule["nth"]:
                        return kind
                elif n % max(1, int(rule.get("every", 1))) == 0:
                    return kind
    return None


def log(kind, method, target):
    with LOCK, open(LOG_FILE, "a") as f:
        f.write(f"{kind} {method} {target}\n")


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        what = fault(self.command, self.path)
        if what == "slowdown":
            log("slowdown", self.command, self.path)
            text = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                    b"<Message>Please reduce your request rate.</Message></Error>")
            self.send_response(503, "Slow Down")
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(text)
            return
        conn = http.client.HTTPConnection(UP.hostname, UP.port, timeout=120)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in HOP and k.lower() != "content-length":
                    conn.putheader(k, v)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if what == "cut":
            # The server has acted; the client never hears of it.
            log("cut", self.command, self.path)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", resp.getheader("Content-Length") or "0")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    server.daemon_threads = True
    tmp = PORT_FILE + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, PORT_FILE)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    time.sleep(3600)


main()
