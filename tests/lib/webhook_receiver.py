# SPDX-License-Identifier: Apache-2.0
"""Test tooling: a webhook receiver on 127.0.0.1 (any free port, printed as "port N").

Appends each POST as one JSON line {"t": arrival time (s), "path", "headers", "body"} to the
file named by argv[1] and answers argv[2] (default 200). A file named argv[1] + ".status"
overrides the status while it exists (tests make deliveries fail, then succeed); while a file
named argv[1] + ".hold" exists, answers wait (at most 30 s; requests are logged on arrival).
Usage: python3 webhook_receiver.py LOG [STATUS]
"""
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

LOG = sys.argv[1]
STATUS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
MAX_BODY = 1 << 20


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(n, MAX_BODY)).decode("utf-8", "replace")
        status = STATUS
        try:
            with open(LOG + ".status") as f:
                status = int(f.read().strip())
        except (OSError, ValueError):
            pass
        rec = {"t": time.time(), "path": self.path, "status": status,
               "headers": {k: v for k, v in self.headers.items()}, "body": body}
        with open(LOG, "a") as f:
            f.write(json.dumps(rec) + "\n")
        t0 = time.time()
        while os.path.exists(LOG + ".hold") and time.time() - t0 < 30:
            time.sleep(0.05)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        pass


srv = HTTPServer(("127.0.0.1", 0), Handler)
print("port %d" % srv.server_address[1], flush=True)
try:
    srv.serve_forever()
except KeyboardInterrupt:
    pass
os._exit(0)
