# SPDX-License-Identifier: Apache-2.0
"""Test tooling: a malicious agent for an enrolled node.

It holds the node's real TLS identity (so the coordinator's key pin matches) and answers
POST /v1/quote by relaying to the node's real agent (or another node's) with the coordinator's
own client identity, then lies in the way the mode file says (read at every request):

  pass      the real answer, unchanged (remembered for `replay`)
  replay    the last real answer again (an old nonce)
  nonce     the real agent is asked with another nonce
  relay     another node's agent (another TPM) answers the coordinator's nonce
  evlog     the boot log is replaced by another machine's (--other-eventlog), always sent
  pcrs      a quoted PCR value in "pcrs" is changed
  truncate  the last IMA entry of the delta is dropped
  reorder   the first two IMA entries of the delta are swapped
  rollback  an older, shorter IMA list from entry 0 (first = 0) without a reboot
  alg       the PCR bank is renamed to an unknown hash algorithm
  garbage   an answer that is not JSON
  huge      an answer of 40 MiB

Usage: evil_agent.py PORT CERT KEY CA CLIENT_CERT CLIENT_KEY UPSTREAM OTHER MODE_FILE
       OTHER_EVENTLOG
Prints "port N" when listening; logs one line per request to stdout.
"""
import base64
import json
import os
import ssl
import struct
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

(PORT, CERT, KEY, CA, CCERT, CKEY, UPSTREAM, OTHER, MODE_FILE, OTHER_EVLOG) = sys.argv[1:11]
client_ctx = ssl.create_default_context(cafile=CA)
# Node certificates name the node (ID.node.invalid), not the address the agent listens on.
client_ctx.check_hostname = False
client_ctx.load_cert_chain(CCERT, CKEY)
last_good = None


def mode():
    try:
        with open(MODE_FILE) as f:
            return f.read().strip() or "pass"
    except OSError:
        return "pass"


def call(base, req):
    r = urllib.request.Request(base + "/v1/quote", data=json.dumps(req).encode(),
                               headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(r, context=client_ctx, timeout=10) as resp:
        return json.loads(resp.read())


def ima_entries(raw):
    """Splits a binary IMA list (sha1 template hashes, as the agent sends) into entries."""
    out, off = [], 0
    while off < len(raw):
        start = off
        off += 4 + 20
        (nlen,) = struct.unpack_from("<I", raw, off)
        off += 4 + nlen
        (dlen,) = struct.unpack_from("<I", raw, off)
        off += 4 + dlen
        out.append(raw[start:off])
    return out


def ima_rewrite(ans, fn):
    lst = ima_entries(base64.b64decode(ans["ima"]["list"]))
    ans["ima"]["list"] = base64.b64encode(b"".join(fn(lst))).decode()
    return ans


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        global last_good
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        if self.path != "/v1/quote":
            return self.reply(200, b"{}")
        req = json.loads(raw)
        m = mode()
        print("request ima_from=%s want_eventlog=%s mode=%s" % (req.get("ima_from"),
              req.get("want_eventlog"), m), flush=True)
        try:
            if m == "replay" and last_good is not None:
                ans = last_good
            elif m == "nonce":
                ans = call(UPSTREAM, dict(req, nonce=os.urandom(32).hex()))
            elif m == "relay":
                ans = call(OTHER, req)
            elif m == "evlog":
                ans = call(UPSTREAM, dict(req, want_eventlog=True))
                ans["eventlog"] = base64.b64encode(open(OTHER_EVLOG, "rb").read()).decode()
            elif m == "pcrs":
                ans = call(UPSTREAM, req)
                bank = ans["pcrs"]["sha256"]
                bank["7"] = "%064x" % (int(bank["7"], 16) ^ 1)
            elif m == "truncate":
                ans = ima_rewrite(call(UPSTREAM, req), lambda l: l[:-1])
            elif m == "reorder":
                ans = ima_rewrite(call(UPSTREAM, req),
                                  lambda l: [l[1], l[0]] + l[2:] if len(l) >= 2 else l)
            elif m == "rollback":
                # The list as it was a few entries ago, presented from entry 0 as after a
                # reboot, while the TPM did not reboot and PCR 10 holds everything.
                keep = max(1, int(req.get("ima_from", 0)) - 2)
                ans = ima_rewrite(call(UPSTREAM, dict(req, ima_from=0)), lambda l: l[:keep])
                ans["ima"]["first"] = 0
            elif m == "alg":
                ans = call(UPSTREAM, req)
                ans["pcrs"] = {"whirlpool": ans["pcrs"]["sha256"]}
            elif m == "garbage":
                return self.reply(200, b"<html>not json</html>")
            elif m == "huge":
                return self.reply(200, b'{"attest": "' + b"A" * (40 << 20) + b'"}')
            else:
                ans = call(UPSTREAM, req)
                last_good = ans
        except Exception as e:  # the coordinator sees an error answer, as from a broken agent
            print("error: %r" % e, flush=True)
            return self.reply(502, json.dumps({"error": str(e), "check": "evil.upstream"}).encode())
        self.reply(200, json.dumps(ans).encode())

    def log_message(self, fmt, *args):
        pass


srv = ThreadingHTTPServer(("127.0.0.1", int(PORT)), Handler)
server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_ctx.load_cert_chain(CERT, KEY)
server_ctx.load_verify_locations(CA)
server_ctx.verify_mode = ssl.CERT_REQUIRED
srv.socket = server_ctx.wrap_socket(srv.socket, server_side=True)
print("port %d" % srv.server_address[1], flush=True)
try:
    srv.serve_forever()
except KeyboardInterrupt:
    pass
