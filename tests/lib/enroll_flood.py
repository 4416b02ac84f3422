#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A bounded enrollment flood against a loopback coordinator (tests only).

Replays public TPM data (EK public key, EK certificate, AK public key, a CSR of our own) under
made-up node ids: POST /v1/enroll, never activated. Every request leaves from --source (a
127.0.0.x address), over a few keep-alive TLS connections. Stops after --count requests once
--min-seconds passed, or when --stop-file appears, or after --max-seconds, whichever comes
first. Writes a JSON summary: {"sent", "seconds", "by_status": {"200": n, "503 enroll.busy": n}}.

usage: enroll_flood.py URL CA_FILE SOURCE_IP OUT_JSON TPM_DIR [TPM_DIR...]
       [--count N] [--min-seconds S] [--max-seconds S] [--stop-file F] [--threads N]
(each TPM_DIR holds ek.pub, ek.der, ak.pub, tls.csr)
"""
import argparse
import base64
import collections
import http.client
import json
import os
import ssl
import threading
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("ca")
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("tpms", nargs="+")
    ap.add_argument("--count", type=int, default=4200)
    ap.add_argument("--min-seconds", type=float, default=0)
    ap.add_argument("--max-seconds", type=float, default=60)
    ap.add_argument("--stop-file")
    ap.add_argument("--threads", type=int, default=4)
    a = ap.parse_args()
    if not a.source.startswith("127."):
        raise SystemExit("loopback sources only")
    u = urllib.parse.urlsplit(a.url)
    if u.hostname != "127.0.0.1":
        raise SystemExit("loopback coordinators only")

    def b64(path):
        with open(path, "rb") as f:
            return base64.b64encode(f.read()).decode()

    sets = []
    for d in a.tpms:
        with open(os.path.join(d, "tls.csr")) as f:
            csr = f.read()
        sets.append({"ek_pub": b64(os.path.join(d, "ek.pub")),
                     "ek_cert": b64(os.path.join(d, "ek.der")),
                     "ak_pub": b64(os.path.join(d, "ak.pub")), "csr": csr})

    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.check_hostname = False  # the coordinator's certificate names it by IP SAN; CA pinned
    lock = threading.Lock()
    counts = collections.Counter()
    state = {"next": 0}
    t0 = time.monotonic()

    def take():
        with lock:
            el = time.monotonic() - t0
            if el > a.max_seconds or (a.stop_file and os.path.exists(a.stop_file)):
                return None
            if state["next"] >= a.count and el >= a.min_seconds:
                return None
            i = state["next"]
            state["next"] += 1
            return i

    def worker():
        conn = None
        while True:
            i = take()
            if i is None:
                break
            s = sets[i % len(sets)]
            body = json.dumps(dict(s, node_id="flood-%s-%d" % (a.source, i),
                                   agent_url="https://127.0.0.1:9", group="default"))
            key = "error"
            try:
                if conn is None:
                    conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx,
                                                       timeout=20,
                                                       source_address=(a.source, 0))
                conn.request("POST", "/v1/enroll", body,
                             {"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
                key = str(r.status)
                if r.status != 200:
                    try:
                        key += " " + json.loads(data).get("check", "?")
                    except ValueError:
                        key += " (no json)"
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                key = "error " + type(e).__name__
                if conn:
                    conn.close()
                conn = None
            with lock:
                counts[key] += 1
        if conn:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(a.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = {"sent": sum(counts.values()), "seconds": round(time.monotonic() - t0, 2),
           "by_status": dict(counts)}
    with open(a.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
