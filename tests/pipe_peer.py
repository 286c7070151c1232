"""pipe_peer.py FD - the Python end of test_pipe's interop test.

Wraps FD (one end of a socketpair made by mpipc) in multiprocessing.connection.Connection and
talks to the C process: both sides send a set of messages concurrently (this one from a thread),
each checks what it received byte for byte, then each passes the other a pipe's write end with
reduction.send_handle/recv_handle. Exits 0 when everything matched.
"""
import os
import sys
import threading
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle

# Must match SIZES in test_pipe.c.
SIZES = [0, 1, 5, 4096, 16384, 16385, 1 << 20, 100, 0]
BASE = bytes(range(251))


def pattern(size, tag):
    """Byte i is (i + off) % 251, as pattern() in test_pipe.c."""
    off = (size * 7 + tag) % 251
    return (BASE * ((size + off) // 251 + 1))[off:off + size]


def read_all(fd):
    data = b""
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return data
        data += chunk


def main():
    conn = Connection(int(sys.argv[1]))
    sender = threading.Thread(target=lambda: [conn.send_bytes(pattern(s, 2)) for s in SIZES])
    sender.start()
    for s in SIZES:
        got = conn.recv_bytes()
        if got != pattern(s, 1):
            sys.exit("python: message of %d bytes differs (got %d bytes)" % (s, len(got)))
    sender.join()

    w = recv_handle(conn)
    os.write(w, b"written by python")
    os.close(w)

    r, w = os.pipe()
    send_handle(conn, w, None)
    os.close(w)
    got = read_all(r)
    os.close(r)
    if got != b"written by C":
        sys.exit("python: read %r through the handle" % got)

    conn.send_bytes(b"done")
    try:
        conn.recv_bytes()
        sys.exit("python: expected EOF")
    except EOFError:
        pass
    conn.close()


if __name__ == "__main__":
    main()
