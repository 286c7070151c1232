"""The Python side of test_shm's interop tests (any CPython >= 3.8, stdlib only).

  shm_peer.py attach SHM LIST   C created both: check what C wrote, write back, exit 0.
  shm_peer.py create            create both, print "SHM LIST", wait for a line on stdin (C has
                                attached, checked and written), check C's writes, unlink, exit 0.

Python 3.11/3.12 register even segments they only attach to with the resource tracker, which
would unlink them (and warn about a leak) when this script exits although C still uses them, so
attached segments are unregistered; 3.13 can say track=False instead (ShareableList cannot).
Any failed check raises, which exits non-zero with a traceback on stderr.
"""
import math
import sys
from multiprocessing import resource_tracker, shared_memory

# What the C side stores in the list it creates (keep in step with test_shm.c).
C_ITEMS = ['howdy', b'HoWdY', -273.154, 100, None, True, 42, '',
           'h\u00e9llo w\u00f6rld \U0001F642', b'\x00ab\x00', -2**63, 2**63 - 1, False,
           float('inf')]
# b'\x00ab\x00' reads back without its trailing NUL (gh-96779, kept for compatibility).
C_READ = C_ITEMS[:9] + [b'\x00ab'] + C_ITEMS[10:]
C_FORMAT = '8s8sdqxxxxxx?xxxxxxxx?q8s24s8sqqxxxxxxx?d'
# What this script writes into the C list.
PY_WRITES = {0: 'HOWDY', 1: b'', 2: 'dry ice', 3: 3.5, 4: 7, 5: None, 6: False, 12: 'x' * 8}
PY_FORMAT = '8s8s8sdqxxxxxx?xxxxxxxx?8s24s8sqq8sd'

# The list this script creates for C (keep in step with test_shm.c).
PY_ITEMS = [1, 2.5, 'three', b'four', None, False, 'a' * 20]


def attach_shm(name):
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name, track=False)
    shm = shared_memory.SharedMemory(name)
    resource_tracker.unregister(shm._name, 'shared_memory')
    return shm


def attach_list(name):
    sl = shared_memory.ShareableList(name=name)
    resource_tracker.unregister(sl.shm._name, 'shared_memory')
    return sl


def same(a, b):
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


def check_list(sl, want):
    got = list(sl)
    assert len(got) == len(want) and all(same(g, w) for g, w in zip(got, want)), (got, want)


def attach(shm_name, list_name):
    shm = attach_shm(shm_name)
    assert shm.size == 4096, shm.size
    assert bytes(shm.buf[:256]) == bytes(range(256))
    shm.buf[:5] = b'howdy'
    shm.close()

    sl = attach_list(list_name)
    check_list(sl, C_READ)
    assert sl.format == C_FORMAT, sl.format
    assert sl.count(42) == 1 and sl.index(True) == 5 and sl.count(b'HoWdY') == 1
    try:
        sl[0] = 'larger than previously allocated storage space'
        raise AssertionError('oversized str accepted')
    except ValueError:
        pass
    for i, v in PY_WRITES.items():
        sl[i] = v
    assert sl.format == PY_FORMAT, sl.format
    sl.shm.close()


def create():
    shm = shared_memory.SharedMemory(create=True, size=1000)
    shm.buf[:4] = b'py! '
    sl = shared_memory.ShareableList(PY_ITEMS)
    print(shm.name, sl.shm.name, flush=True)
    sys.stdin.readline()
    try:
        assert bytes(shm.buf[:4]) == b'C ok', bytes(shm.buf[:4])
        check_list(sl, [-5, 'C', 'bytes', b'str', 0.25, None, 'b' * 24])
    finally:
        shm.close()
        shm.unlink()
        sl.shm.close()
        sl.shm.unlink()


if __name__ == '__main__':
    if sys.argv[1] == 'attach':
        attach(sys.argv[2], sys.argv[3])
    else:
        create()
