# SPDX-License-Identifier: Apache-2.0
"""Test tooling: an HTTPS server with a borrowed trustcloud identity (e.g. an enrolled node's
certificate and key) on 127.0.0.1, posing as the coordinator or as a webhook receiver.

It answers what a forged coordinator would: GET /v1/nodes lists every node "trusted",
GET /v1/nodes/ID shows it "trusted", anything else gets 200 {}. Every request that reaches it
(method, path, body) is appended as one JSON line to LOG: a test asserts that LOG stays empty,
i.e. the client refused the server after the handshake and sent nothing.
Client certificates are asked for and verified against CA when presented (the CLI sends its
operator certificate, an enrolling agent none).

Usage: python3 tls_impostor.py PORT CERT KEY CA LOG   (PORT 0: a free port)
Prints "port N" once listening.
"""
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

PORT, CERT, KEY, CA, LOG = sys.argv[1:6]
MAX_BODY = 1 << 20
TRUSTED = {"id": "good", "state": "trusted", "group": "default", "reason": None}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(n, MAX_BODY)).decode("utf-8", "replace")
        with open(LOG, "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path, "body": body}) + "\n")
        if self.command == "GET" and self.path.startswith("/v1/nodes/"):
            answer = {"node": dict(TRUSTED, id=self.path.split("/")[3])}
        elif self.command == "GET" and self.path.startswith("/v1/nodes"):
            answer = {"nodes": [TRUSTED]}
        else:
            answer = {}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = handle_any

    def log_message(self, fmt, *args):
        pass


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(CERT, KEY)
ctx.load_verify_locations(CA)
ctx.verify_mode = ssl.CERT_OPTIONAL
srv = HTTPServer(("127.0.0.1", int(PORT)), Handler)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print("port %d" % srv.server_address[1], flush=True)
srv.serve_forever()
