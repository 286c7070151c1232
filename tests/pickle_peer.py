"""pickle_peer.py - the Python side of test_pickle's interop test.

CASES must match make_case() in test_pickle.c, index for index.

First this script prints, for every case and protocol 2 to 5, a line "i proto flag hex" with
pickle.dumps(case, proto), then "END". flag is 'x' when mpipc's encoder must produce the very same
bytes, 'v' when only the decoded value must match (CPython wrote BINGET for a repeated object),
and 's' when the value cannot be represented by mpipc at that protocol (protocol 2 pickles bytes
through _codecs.encode): the C side skips those.

Then it reads lines "i proto hex" (mpipc's encoding of case i) from stdin until EOF, loads each
with pickle.loads and compares it with CASES[i] strictly (types must match too). A last line
"COUNT n" says how many lines came. Any difference goes to stderr with a non-zero exit.

With "--corpus DIR" it writes the seed corpus of fuzz_pickle instead (tests/corpus/pickle).
"""
import math
import pickle
import struct
import sys
from multiprocessing.managers import Token

X, V = True, False  # byte-exact, or value only


def nested(depth):
    v = []
    for _ in range(depth):
        v = [v]
    return v


CASES = [
    (None, X), (True, X), (False, X),
    (0, X), (255, X), (256, X), (65535, X), (65536, X), (-1, X),
    (-2**31, X), (2**31 - 1, X), (2**31, X), (-2**31 - 1, X),
    (2**63 - 1, X), (-2**63, X), (2**64, X), (-2**64 - 1, X), (2**2100, X), (-(2**2100), X),
    (1.5, X), (-0.0, X), (math.inf, X), (math.nan, X), (5e-324, X),
    ('', X), ('abc', X), ('h\u00e9llo \u20ac\U0001F600', X), ('x' * 255, X), ('x' * 256, X),
    ('y' * 70000, X), ('\ud800', X),
    (b'', X), (b'xy', X), (bytes(range(256)), X), (b'z' * 70000, X),
    ((), X), ((1,), X), ((1, 2), X), ((1, 2, 3), X), ((1, 2, 3, 4), X),
    ([], X), ([1], X), ([1, 2], X), (list(range(1001)), X), (list(range(2500)), X),
    ({}, X), ({'a': 1}, X), ({'a': 1, 'b': [2, 3]}, X), ({str(i): i for i in range(1001)}, X),
    ([(None, True), {'k': (1.5, b'b')}, [[[]]]], X),
    (nested(100), X),
    (['item%05d' % i for i in range(20000)], X),
    # A frame reaches 64 KiB exactly at the end of the first APPENDS batch.
    (['p' * 590] + ['%062d' % i for i in range(1, 1200)], X),
    (KeyError('missing'), X),
    (Token('list', '/tmp/x', '7f00aa'), X),
    (Token('dict', ('127.0.0.1', 5000), '7f00ab'), X),
    ((None, 'incref', ('7f00aa',), {}), X),
    (('#RETURN', None), X),
    (bytearray(b'abc'), X),
    (['sss'] * 2, V),
]


def has_bytes(v):
    if isinstance(v, (bytes, bytearray)):
        return True
    if isinstance(v, (list, tuple)):
        return any(has_bytes(x) for x in v)
    if isinstance(v, dict):
        return any(has_bytes(k) or has_bytes(x) for k, x in v.items())
    return False


def same(a, b):
    """Equality that also requires equal types (True is not 1) and equal float bits."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack('<d', a) == struct.pack('<d', b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(same(k, l) and same(a[k], b[l]) for k, l in zip(a, b))
    if isinstance(a, BaseException):
        return same(a.args, b.args)
    if isinstance(a, Token):
        return same(a.__getstate__(), b.__getstate__())
    return a == b


def write_corpus(directory):
    """Seeds for fuzz_pickle: the small cases at every protocol, and manager messages."""
    import os
    seeds = [obj for obj, _ in CASES]
    seeds += [(None, 'create', ('list', [1, 'a']), {}), ('7f00aa', 'get', (), {'timeout': 0.5}),
              ('#ERROR', KeyError('k')), ('#PROXY', (('__next__',), Token('Iterator', '/x', 'a1'))),
              [[1, 2]] * 2, {'k': ('v',) * 4}]
    os.makedirs(directory, exist_ok=True)
    n = 0
    for obj in seeds:
        for proto in (2, 4, 5):
            data = pickle.dumps(obj, proto)
            if len(data) <= 512 and (proto == 4 or not isinstance(obj, (int, float, str))):
                with open(os.path.join(directory, 'seed-%03d' % n), 'wb') as f:
                    f.write(data)
                n += 1


def main():
    if len(sys.argv) == 3 and sys.argv[1] == '--corpus':
        write_corpus(sys.argv[2])
        return
    out = sys.stdout
    for i, (obj, exact) in enumerate(CASES):
        for proto in (2, 3, 4, 5):
            flag = 'x' if exact else 'v'
            if proto == 2 and has_bytes(obj):
                flag = 's'
            out.write('%d %d %s %s\n' % (i, proto, flag, pickle.dumps(obj, proto).hex()))
    out.write('END\n')
    out.flush()

    got = 0
    errors = 0
    for line in sys.stdin:
        parts = line.split()
        if parts[0] == 'COUNT':
            if int(parts[1]) != got:
                sys.stderr.write('python: C announced %s lines, %d came\n' % (parts[1], got))
                errors += 1
            got = -1
            continue
        got += 1
        i, proto, data = int(parts[0]), int(parts[1]), bytes.fromhex(parts[2])
        obj = pickle.loads(data)
        if not same(obj, CASES[i][0]):
            errors += 1
            sys.stderr.write('python: case %d protocol %d: C wrote %r, loads gave %.200r\n'
                             % (i, proto, data[:80], obj))
    if got != -1:
        sys.stderr.write('python: no COUNT line\n')
        errors += 1
    sys.exit(1 if errors else 0)


if __name__ == '__main__':
    main()
