# SPDX-License-Identifier: Apache-2.0
"""Test tooling: hostile guests on the host side of the guest channel.

Each argument MODE:SOCKET listens on a unix socket, as QEMU's virtio-serial chardev does, and
misbehaves towards whoever connects (the host agent's client):

  garbage    bytes that are no frame at all
  oversize   a quote answer header announcing 4 GiB - 1 bytes
  silent     reads, answers nothing, keeps the connection open
  truncated  half a hello, then closes
  payload    a well-framed hello whose payload has an unknown member
Runs until killed.
"""
import os
import socket
import struct
import sys
import threading
import time


def header(msg_type, length, magic=b"TCGC", version=1):
    return magic + struct.pack(">BBHI", version, msg_type, 0, length)


def serve(mode, path):
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    while True:
        conn, _ = srv.accept()
        try:
            conn.settimeout(5)
            try:
                conn.recv(65536)
            except OSError:
                pass
            if mode == "garbage":
                conn.sendall(b"GARBAGE, NOT A FRAME\n" * 8)
            elif mode == "oversize":
                conn.sendall(header(3, 0xFFFFFFFF) + b"{" * 64)
            elif mode == "silent":
                time.sleep(30)
            elif mode == "truncated":
                conn.sendall(header(1, 100) + b'{"version":')
            elif mode == "payload":
                body = b'{"version":1,"agent":"x","capabilities":[],"surprise":1}'
                conn.sendall(header(1, len(body)) + body)
            time.sleep(0.2)
        finally:
            conn.close()


def main():
    threads = []
    for arg in sys.argv[1:]:
        mode, path = arg.split(":", 1)
        t = threading.Thread(target=serve, args=(mode, path), daemon=True)
        t.start()
        threads.append(t)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
