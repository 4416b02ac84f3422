# SPDX-License-Identifier: Apache-2.0
"""A bounded connection flood on loopback: COUNT connections that never complete a request.

Each connection comes from one of the given source addresses (127.0.0.x, round robin) and does
one of:
  idle     TCP connect, then nothing (the server waits for a ClientHello)
  trickle  TLS handshake without a client certificate, then a request head that never ends:
           one byte every TRICKLE seconds
  mixed    every third connection idle, the others trickle
When the server closes it (or refuses it), the connection is opened again after a pause, so the
pressure stays on for the whole run. Stops by itself after SECONDS and prints one JSON line of
counts. With --ready FILE, FILE is written once every connection was tried once.

    conn_flood.py --port P [--host 127.0.0.1] [--sources 127.0.0.2-127.0.0.9] [--count 1000]
                  [--seconds 20] [--mode idle|trickle|mixed] [--ready FILE]
"""
import argparse
import asyncio
import ipaddress
import json
import resource
import ssl
import sys
import time

TRICKLE = 1.0  # seconds between two bytes of a trickled head
PAUSE = 1.0  # before opening a closed connection again
HEAD = b"GET /v1/nodes HTTP/1.1\r\nHost: flood\r\nX-Slow: "


def sources(spec):
    out = []
    for part in spec.split(","):
        if "-" in part:
            a, b = (ipaddress.IPv4Address(x) for x in part.split("-"))
            out += [str(ipaddress.IPv4Address(i)) for i in range(int(a), int(b) + 1)]
        else:
            out.append(part)
    return out


class Stats:
    def __init__(self):
        self.attempts = self.connected = self.tls_ok = 0
        self.refused = 0  # closed by the server within 0.5 s of connecting (or handshake refused)
        self.closed_later = 0  # held, then closed by the server (deadline, eviction)
        self.open = self.peak_open = 0
        self.since = {}  # open connection -> when it connected
        self.peak_held = 0  # most connections open for more than a second at once
        self.held_max = 0.0
        self.errors = {}

    def err(self, e):
        k = type(e).__name__
        self.errors[k] = self.errors.get(k, 0) + 1


async def one(i, a, st, end, tls):
    src = a.src[i % len(a.src)]
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    while time.monotonic() < end:
        st.attempts += 1
        t0 = time.monotonic()
        w = None
        counted = False
        try:
            r, w = await asyncio.wait_for(
                asyncio.open_connection(a.host, a.port, local_addr=(src, 0), ssl=ctx,
                                        server_hostname="" if tls else None,
                                        ssl_handshake_timeout=30 if tls else None),
                timeout=max(0.1, end - time.monotonic()))
            st.connected += 1
            st.open += 1
            st.since[i] = time.monotonic()
            counted = True
            st.peak_open = max(st.peak_open, st.open)
            if tls:
                st.tls_ok += 1
                w.write(HEAD)
            while time.monotonic() < end:
                try:
                    data = await asyncio.wait_for(r.read(4096), timeout=TRICKLE)
                except asyncio.TimeoutError:
                    if tls:
                        w.write(b"a")
                        await w.drain()
                    continue
                if not data:
                    break
            held = time.monotonic() - t0
            if time.monotonic() < end:
                if held < 0.5:
                    st.refused += 1
                else:
                    st.closed_later += 1
                st.held_max = max(st.held_max, held)
        except (ConnectionError, ssl.SSLError, OSError) as e:
            if time.monotonic() - t0 < 0.5:
                st.refused += 1
            else:
                st.closed_later += 1
            st.err(e)
        except asyncio.TimeoutError:
            pass
        finally:
            if counted:
                st.open -= 1
                st.since.pop(i, None)
            if w is not None:
                w.transport.abort()
        await asyncio.sleep(min(PAUSE, max(0.0, end - time.monotonic())))


async def sample(st, end):
    while time.monotonic() < end - 0.5:
        await asyncio.sleep(0.25)
        now = time.monotonic()
        st.peak_held = max(st.peak_held, sum(1 for t in st.since.values() if now - t > 1.0))


async def main(a):
    st = Stats()
    end = time.monotonic() + a.seconds
    tasks = [asyncio.create_task(sample(st, end))]
    for i in range(a.count):
        tls = a.mode == "trickle" or (a.mode == "mixed" and i % 3 != 0)
        tasks.append(asyncio.create_task(one(i, a, st, end, tls)))
        if i % 50 == 49:
            await asyncio.sleep(0.01)  # a ramp of a few tenths of a second, not one burst
    if a.ready:
        await asyncio.sleep(1.0)
        with open(a.ready, "w") as f:
            f.write("%d\n" % st.open)
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"attempts": st.attempts, "connected": st.connected, "tls_ok": st.tls_ok,
                      "refused_fast": st.refused, "closed_later": st.closed_later,
                      "peak_open": st.peak_open, "peak_held": st.peak_held, "held_max_s": round(st.held_max, 2),
                      "errors": st.errors}))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sources", default="127.0.0.2-127.0.0.9")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--mode", choices=["idle", "trickle", "mixed"], default="mixed")
    p.add_argument("--ready")
    a = p.parse_args()
    a.src = sources(a.sources)
    if a.count > 5000 or a.seconds > 120 or any(not s.startswith("127.") for s in a.src) or \
            not a.host.startswith("127."):
        sys.exit("conn_flood.py: loopback only, at most 5000 connections and 120 s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < a.count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.count + 256), hard))
    asyncio.run(main(a))
