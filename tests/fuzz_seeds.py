#!/usr/bin/env python3
"""Write the seed corpora of the libFuzzer targets fuzz_frame, fuzz_handshake, fuzz_manager_value
and fuzz_queue_header (tests/fuzz_*.c say what each input byte means).

    python3 tests/fuzz_seeds.py TARGET DIR

The frames are what CPython's Connection writes, the handshakes are recorded from CPython 3.11
(HMAC-MD5) and 3.12+ ({sha256}) running deliver_challenge/answer_challenge against each other,
and the manager values are CPython's pickles of what a client sends. The queue programs are
written by hand: a few puts and gets, then scribbles on the words that matter.
"""
import glob
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
import multiprocessing.connection as mc


def write(dirname, seeds):
    os.makedirs(dirname, exist_ok=True)
    for i, s in enumerate(seeds):
        with open(os.path.join(dirname, "seed%02d" % i), "wb") as f:
            f.write(s)


# ---- fuzz_frame ------------------------------------------------------------------------------

def cpython_frames(messages):
    """The bytes CPython's Connection.send_bytes puts on the wire for these messages."""
    a, b = socket.socketpair()
    ca = mc.Connection(a.detach())
    for m in messages:
        ca.send_bytes(m)
    ca.close()
    out = b""
    while True:
        chunk = b.recv(65536)
        if not chunk:
            break
        out += chunk
    b.close()
    return out


def escape_header(n):
    """CPython's header for a payload above 2 GiB (connection.py, _send_bytes)."""
    return struct.pack("!i", -1) + struct.pack("!Q", n)


def frame_seeds():
    RECV_4K = 4 << 3  # recv_bytes, maxlength 4096, AF_UNIX end, written at once, MP_FOREVER
    INTO = RECV_4K | 1
    THREADED = RECV_4K | 4
    NOWAIT = RECV_4K | 0x40
    plain = cpython_frames([b"hello", b"", b"x" * 100, bytes(range(256))])
    big = cpython_frames([b"y" * 5000, b"after"])  # above maxlength: -EMSGSIZE, then taken
    return [
        bytes([RECV_4K]) + plain,
        bytes([INTO]) + plain,
        bytes([NOWAIT]) + big,
        bytes([THREADED, 3, 1, 5, 2]) + plain,  # written in pieces of 2, 6 and 3 bytes
        bytes([RECV_4K]) + escape_header(5) + b"hello",  # the escape used for a small payload
        bytes([RECV_4K]) + escape_header(1 << 40),  # 1 TiB announced: refused from the header
        bytes([RECV_4K]) + escape_header((1 << 31) + 5) + b"0123456789",
        bytes([RECV_4K]) + struct.pack("!i", -2) + b"abcd",  # a negative length
        bytes([RECV_4K]) + cpython_frames([b"hello"])[:6],  # cut inside the payload
        bytes([RECV_4K]) + b"\x00\x00",  # cut inside the header
    ]


# ---- fuzz_handshake --------------------------------------------------------------------------

RECORD = r"""
import multiprocessing.connection as mc, socket, sys, threading
log = {}
orig = mc.Connection._send
def rec(self, buf, *a):
    log.setdefault(id(self), []).append(bytes(buf))
    return orig(self, buf, *a)
mc.Connection._send = rec
key = sys.argv[1].encode()
a, b = socket.socketpair()
lst, cli = mc.Connection(a.detach()), mc.Connection(b.detach())
def listener():
    mc.deliver_challenge(lst, key)
    mc.answer_challenge(lst, key)
t = threading.Thread(target=listener)
t.start()
mc.answer_challenge(cli, key)
mc.deliver_challenge(cli, key)
t.join()
sys.stdout.write(b"".join(log[id(lst)]).hex() + " " + b"".join(log[id(cli)]).hex() + "\n")
"""


def record_handshake(python):
    """(what the listener sends, what the client sends) in one CPython handshake."""
    out = subprocess.run([python, "-c", RECORD, "not-the-fuzzers-key"], check=True,
                         capture_output=True, text=True).stdout.split()
    return bytes.fromhex(out[0]), bytes.fromhex(out[1])


def find_python(version):
    """python3.X on PATH, or pyenv's (as tests/python_peer.c looks for them)."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    for cand in sorted(glob.glob(os.path.join(root, "versions", version + ".*", "bin", "python3"))):
        return cand
    return "python" + version


def handshake_seeds():
    LISTENER, CLIENT, SHA256_ONLY = 0, 1, 2
    seeds = []
    for version, key in (("3.11", 0), ("3.12", 1 << 2)):
        python = find_python(version)
        try:
            by_listener, by_client = record_handshake(python)
        except (OSError, subprocess.CalledProcessError):
            print("fuzz_seeds: %s not found, skipped" % python, file=sys.stderr)
            continue
        seeds.append(bytes([LISTENER | key]) + by_client)
        seeds.append(bytes([CLIENT | key]) + by_listener)
        seeds.append(bytes([LISTENER | SHA256_ONLY | key]) + by_client)
        seeds.append(bytes([CLIENT | SHA256_ONLY | key]) + by_listener)
    failure = struct.pack("!i", 9) + b"#FAILURE#"
    seeds.append(bytes([CLIENT]) + seeds[-1][1:64] + failure if seeds else b"\x01")
    seeds.append(bytes([LISTENER]) + struct.pack("!i", 300) + b"x" * 300)  # over 256 bytes
    return seeds


# ---- fuzz_manager_value ----------------------------------------------------------------------

def manager_value_seeds():
    values = [
        [None, True, False, 0, 1, -1, 2**63 - 1, -2**63, 1.0, 1, True],
        [2**63, -2**63 - 1, 10**40],  # beyond int64: OverflowError
        [0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e308, 5e-324, 3.0, 3],
        ["", "a", "hello world", "é", "€uro", "\U0001f600", "x" * 100, "\ud800"],
        [b"", b"\x00", b"bytes", bytes(range(256))],
        [(1, 2), [1, 2], {"a": 1}, {1, 2}],  # no container holds these: TypeError
        ("tuple", 1, 2.5, b"b", None),
        "just a str",
        12345,
        {"k": "v"},
    ]
    seeds = []
    for i, v in enumerate(values):
        proto = (2, 3, 4, 5)[i % 4]
        seeds.append(bytes([i % 4]) + pickle.dumps(v, protocol=proto))
    return seeds


# ---- fuzz_queue_header -----------------------------------------------------------------------

# Field numbers of fuzz_queue_header.c's table.
TAIL, HEAD, HEAD_CACHE, C_ACTIVE, C_CUR, C_AT0, UNFINISHED = 2, 7, 3, 9, 10, 11, 21
SCRIBBLE, RING, PUT, GET, GET_ALLOC, STATE, TASK_DONE, JOIN = range(8)
BIG = 8  # put: length times 64; get: the whole buffer
TIMED = 0x80


def q64(v):
    return struct.pack("<Q", v & (2**64 - 1))


def queue_seeds():
    cap256, joinable, fileno = 2, 8, 16
    return [
        # Puts and gets checked against the model, wrapping around a 256-byte ring.
        bytes([cap256, 3, 10, 0, 200, GET | BIG, STATE, PUT, 50, GET | BIG, GET | BIG,
               PUT, 100, PUT, 100, PUT | TIMED, 100, GET, 5, GET_ALLOC, STATE]),
        # JoinableQueue with maxsize 2 and a fileno: task counting, join, a full queue.
        bytes([cap256 | joinable | fileno | (2 << 5), 2, 1, 2, PUT, 3, STATE, GET_ALLOC,
               TASK_DONE, JOIN, GET_ALLOC, TASK_DONE, TASK_DONE, JOIN, GET | TIMED, 0]),
        # A message larger than the ring: refused with MP_NOWAIT, aborted on a timeout.
        bytes([0, 1, 8, PUT | BIG, 2, PUT | BIG | TIMED, 2, STATE, GET_ALLOC, GET | BIG | TIMED]),
        # Scribbles: a misaligned tail, a head past the tail, a bad record slot, a long length.
        bytes([cap256, 2, 8, 8, SCRIBBLE, TAIL]) + q64(0x1c) + bytes([PUT, 4, GET | BIG]),
        bytes([cap256, 2, 8, 8, SCRIBBLE, HEAD]) + q64(0x40) + bytes([GET | BIG, STATE]),
        bytes([cap256, 1, 8, SCRIBBLE, C_ACTIVE]) + q64(1) + bytes([SCRIBBLE, C_CUR]) +
        q64(7) + bytes([GET | BIG, SCRIBBLE, C_AT0]) + q64(24) + bytes([GET | BIG | TIMED]),
        bytes([cap256, 1, 8, RING, 0, 0]) + q64(2**64 - 4) + bytes([GET_ALLOC, GET | BIG]),
        bytes([cap256, 1, 8, RING, 0, 0]) + q64(1000) + bytes([RING, 8, 0]) + q64(600) +
        bytes([GET | BIG, GET | BIG | TIMED, PUT, 1]),
        bytes([cap256 | fileno, 1, 8, SCRIBBLE, TAIL]) + q64(0x20 | (1 << 63)) +
        bytes([PUT, 1, GET, 255, SCRIBBLE, HEAD_CACHE]) + q64(0x1000) + bytes([PUT, 1, STATE]),
        bytes([cap256 | joinable, 1, 0, SCRIBBLE, UNFINISHED]) + q64(0) +
        bytes([TASK_DONE, JOIN, GET_ALLOC, TASK_DONE]),
    ]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    make = {"frame": frame_seeds, "handshake": handshake_seeds,
            "manager_value": manager_value_seeds, "queue_header": queue_seeds}
    write(sys.argv[2], make[sys.argv[1]]())


if __name__ == "__main__":
    main()
