"""An SSH ProxyCommand: relays stdin/stdout to 127.0.0.1:PORT. Ray's launcher always connects to
port 22 of a node; the test's sshd listens on a free loopback port instead, and Ray's
`auth.ssh_proxy_command` reaches it through this relay."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import threading

PR_SET_PDEATHSIG = 1  # <sys/prctl.h>


def main(port: int) -> None:
    # Die with the ssh process that started this relay, whatever becomes of the pipes.
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:
        return
    sock = socket.create_connection(("127.0.0.1", port))

    def upstream() -> None:
        while data := sys.stdin.buffer.read1(65536):
            sock.sendall(data)
        os._exit(0)  # ssh closed its end: it is done with this connection

    threading.Thread(target=upstream, daemon=True).start()
    while data := sock.recv(65536):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    main(int(sys.argv[1]))
