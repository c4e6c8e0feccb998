"""A webhook receiver for the notification tests: it checks each request's signature with
Python's own `hmac` (an implementation independent of sluice's) and records what came.

    webhook_receiver.py PORT_FILE LOG_FILE SECRET [ANSWER_FILE]

It listens on a free loopback port and writes that port to PORT_FILE. Each POST is one JSON
line in LOG_FILE: its path, its X-Sluice-* headers, its body (as text) and whether the
signature is HMAC-SHA256 of the body under SECRET (`signature_ok`; null when unsigned).
Each line also has the time it came (`at`, seconds since the epoch) and the status answered.
It answers 401 to a signed request whose signature is wrong, else the status code written
in ANSWER_FILE when there is one (read at each request: a test turns an outage on and off;
"503 2" answers 503 after holding the request 2 seconds, for a sender to die meanwhile),
else 200. Stops by itself after an hour, so that a test that dies cannot leave it.
"""
import hashlib
import hmac
import http.server
import json
import sys
import threading
import time


def main():
    port_file, log_file, secret = sys.argv[1], sys.argv[2], sys.argv[3].encode()
    answer_file = sys.argv[4] if len(sys.argv) > 4 else None
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            sent = self.headers.get("x-sluice-signature")
            ok = None
            if sent is not None:
                want = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
                ok = hmac.compare_digest(sent, want)
            status, hold = 200, 0.0
            if answer_file:
                try:
                    words = open(answer_file).read().split()
                    status = int(words[0])
                    hold = float(words[1]) if len(words) > 1 else 0.0
                except (OSError, ValueError, IndexError):
                    pass
            if ok is False:
                status = 401
            line = {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-sluice-")},
                "body": body.decode("utf-8", "replace"),
                "signature_ok": ok,
                "at": time.time(),
                "status": status,
            }
            with lock, open(log_file, "a") as f:
                f.write(json.dumps(line) + "\n")
            time.sleep(hold)
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Timer(3600, server.shutdown).start()
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.replace(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
