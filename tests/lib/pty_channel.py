# SPDX-License-Identifier: Apache-2.0
"""Test tooling: a guest channel without QEMU.

Makes a pseudo-terminal in raw mode (the guest agent opens its slave as it would open its
virtio-serial port) and relays between it and a unix socket, as QEMU's chardev does between the
port and the host: one host connection at a time. Writes the slave's path to PATH_FILE.
Usage: pty_channel.py SOCKET PATH_FILE. Runs until killed.
"""
import os
import select
import socket
import sys
import tty


def main():
    sock_path, path_file = sys.argv[1], sys.argv[2]
    master, slave = os.openpty()
    tty.setraw(slave)
    with open(path_file + ".tmp", "w") as f:
        f.write(os.ttyname(slave) + "\n")
    os.rename(path_file + ".tmp", path_file)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    while True:
        conn, _ = srv.accept()
        while True:
            r, _, _ = select.select([conn, master], [], [])
            if conn in r:
                data = conn.recv(65536)
                if not data:
                    break
                os.write(master, data)
            if master in r:
                conn.sendall(os.read(master, 65536))
        conn.close()


if __name__ == "__main__":
    main()
