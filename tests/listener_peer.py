"""listener_peer.py - the Python side of test_listener's interop matrix.

Reads commands from stdin, one per line, and answers each on stdout:

  client ADDR KEY   Client(ADDR, authkey=KEY), then talk()
  listen FAMILY KEY Listener(None or ('127.0.0.1', 0), authkey=KEY); prints "ADDR <address>",
                    accepts one connection, then talk()
  version           prints "3.11" etc.
  quit

ADDR is mpipc's form: "host:port" for TCP, else an AF_UNIX path. KEY is "-" for None, "=" for
b"" and otherwise the key itself. FAMILY is "unix" or "tcp".

talk(): receive one message. If it is a challenge (the C side has a key and this side none),
print "CHALLENGE <length>" and wait for one line on stdin before closing. Otherwise check it and
the rest of the C side's messages (SIZES, tag 1), send SIZES back (tag 2), and wait for EOF.
Every scenario ends with one line: "OK", or "ERR <exception class>".
"""
import sys
from multiprocessing.connection import Client, Listener

# Must match SIZES in test_listener.c.
SIZES = [5, 0, 1, 300, 65536, 100000]
BASE = bytes(range(251))


def pattern(size, tag):
    off = (size * 7 + tag) % 251
    return (BASE * ((size + off) // 251 + 1))[off:off + size]


def key_of(arg):
    return None if arg == "-" else b"" if arg == "=" else arg.encode()


def address_of(arg):
    if "/" not in arg and ":" in arg:
        host, port = arg.rsplit(":", 1)
        return (host, int(port))
    return arg


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def talk(conn):
    first = conn.recv_bytes()
    if first.startswith(b"#CHALLENGE#"):
        say("CHALLENGE %d" % len(first))
        sys.stdin.readline()
        conn.close()
        return "OK"
    for i, size in enumerate(SIZES):
        got = first if i == 0 else conn.recv_bytes()
        if got != pattern(size, 1):
            return "ERR Mismatch(%d: got %d bytes %r)" % (size, len(got), got[:16])
    for size in SIZES:
        conn.send_bytes(pattern(size, 2))
    try:
        conn.recv_bytes()
        return "ERR NoEOF"
    except EOFError:
        pass
    conn.close()
    return "OK"


def run(words):
    if words[0] == "client":
        conn = Client(address_of(words[1]), authkey=key_of(words[2]))
        return talk(conn)
    address = None if words[1] == "unix" else ("127.0.0.1", 0)
    with Listener(address, authkey=key_of(words[2])) as listener:
        a = listener.address
        say("ADDR %s" % (a if isinstance(a, str) else "%s:%d" % a))
        conn = listener.accept()
        return talk(conn)


def main():
    while True:
        words = sys.stdin.readline().split()
        if not words or words[0] == "quit":
            break
        if words[0] == "version":
            say("%d.%d" % sys.version_info[:2])
            continue
        try:
            result = run(words)
        except Exception as e:  # the C side asserts which one
            result = "ERR " + type(e).__name__
        say(result)


if __name__ == "__main__":
    main()
