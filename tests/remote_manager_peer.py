# remote_manager_peer.py - the Python client side of tests/test_remote_manager.c.
#
#   python3 remote_manager_peer.py MODE ADDRESS [ARGS...]
#   python3 remote_manager_peer.py --corpus DIR   (seeds for tests/fuzz_manager_request.c)
#
# Every mode prints "ok" at the end and exits 0; any mismatch raises (a traceback on stderr
# fails the C test). ADDRESS is "host:port" or an AF_UNIX path.
import sys
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client
from multiprocessing.managers import (BaseManager, DictProxy, ListProxy, NamespaceProxy,
                                      RemoteError, SyncManager)

KEY = b'remote manager test key'


def parse(addr):
    host, sep, port = addr.rpartition(':')
    return (host, int(port)) if sep and '/' not in addr else addr


class M(BaseManager):
    pass


M.register('list', proxytype=ListProxy)
M.register('dict', proxytype=DictProxy)
M.register('Namespace', proxytype=NamespaceProxy)
M.register('get_list', proxytype=ListProxy)
M.register('get_dict', proxytype=DictProxy)
M.register('get_ns', proxytype=NamespaceProxy)


def outcome(fn):
    try:
        r = fn()
    except Exception as e:  # compare the exception type (messages differ between versions)
        return ('raised', type(e).__name__)
    if type(r).__name__ in ('dict_keys', 'dict_values', 'dict_items'):
        r = list(r)
    return ('returned', type(r).__name__, r)


def same(ref, prox, op, *args, **kwds):
    want = outcome(lambda: getattr(ref, op)(*args, **kwds))
    got = outcome(lambda: getattr(prox, op)(*args, **kwds))
    if want != got:
        raise AssertionError('%s%r: Python %r, mpipc %r' % (op, args, want, got))
    if prox._getvalue() != ref or type(prox._getvalue()) is not type(ref):
        raise AssertionError('after %s%r: %r != %r' % (op, args, prox._getvalue(), ref))


def check_list(p):
    ref = []
    values = [None, True, False, 0, -1, 255, 256, 65536, 2**31, -2**63, 2**63 - 1, 1.5, -0.0,
              float('inf'), '', 'abc', 'é€😀', 'x' * 300, b'', b'\x00\xff', b'y' * 70000]
    for v in values:
        same(ref, p, 'append', v)
    for op, args in [('__len__', ()), ('__getitem__', (0,)), ('__getitem__', (-1,)),
                     ('__getitem__', (len(values),)), ('__getitem__', (slice(1, 5),)),
                     ('__getitem__', (slice(None, None, -2),)), ('__contains__', ('abc',)),
                     ('__contains__', (1,)), ('__contains__', ('zzz',)), ('count', (0,)),
                     ('count', (False,)), ('index', ('abc',)), ('index', ('nope',)),
                     ('__setitem__', (2, 'two')), ('__setitem__', (-1, 3.25)),
                     ('__setitem__', (100, 1)), ('__setitem__', (slice(0, 2), [7, 8, 9])),
                     ('__delitem__', (0,)), ('__delitem__', (100,)),
                     ('__delitem__', (slice(0, 4, 2),)), ('insert', (0, 'first')),
                     ('insert', (-1, 'before last')), ('insert', (1000, 'end')), ('pop', ()),
                     ('pop', (0,)), ('pop', (1000,)), ('remove', ('abc',)), ('remove', ('abc',)),
                     ('reverse', ()), ('extend', ([1, 2.5, 'z'],)), ('extend', ((b'q',),))]:
        same(ref, p, op, *args)
    ints = [5, 3.5, True, -2, 10**9, 0.0]
    del p[:]
    ref.clear()
    same(ref, p, 'extend', ints)
    same(ref, p, 'sort')
    same(ref, p, 'sort', reverse=True)
    same(ref, p, 'append', 'str')
    same(ref, p, 'sort')  # TypeError: str against numbers, list unchanged
    same(ref, p, 'pop')
    for _ in range(len(ref)):
        same(ref, p, 'pop')
    same(ref, p, 'pop')  # IndexError from an empty list
    # Values a container item cannot be: TypeError (OverflowError for a large int), unchanged.
    for bad in [(1, 2), [1], {'a': 1}, 2**64]:
        try:
            p.append(bad)
        except (TypeError, OverflowError):
            pass
        else:
            raise AssertionError('append(%r) was accepted' % (bad,))
    assert len(p) == 0
    p += [1, 2]  # __iadd__ goes through extend
    assert p._getvalue() == [1, 2] and str(p) == '[1, 2]' and repr(p).startswith('<ListProxy')
    try:
        p._callmethod('clear')  # not exposed by mpipc (nor by 3.11's ListProxy)
    except RemoteError as e:
        assert 'not in exposed' in str(e), str(e)
    else:
        raise AssertionError('clear() was answered')
    try:
        p + [3]  # __add__ is on ListProxy but not served
    except RemoteError:
        pass
    else:
        raise AssertionError('__add__ was answered')


def check_dict(p):
    ref = {}
    for op, args in [('__setitem__', ('a', 1)), ('__setitem__', (2, 'two')),
                     ('__setitem__', (b'k', None)), ('__setitem__', (1.0, 'one')),
                     ('__setitem__', (True, 'true')), ('__len__', ()), ('__getitem__', ('a',)),
                     ('__getitem__', ('missing',)), ('__contains__', (2,)),
                     ('__contains__', (2.0,)), ('__contains__', ('x',)), ('get', ('a',)),
                     ('get', ('x',)), ('get', ('x', 'default')), ('get', ('x', [1, 2])),
                     ('keys', ()), ('values', ()), ('items', ()), ('copy', ()),
                     ('setdefault', ('a', 5)), ('setdefault', ('new', 5)), ('setdefault', ('n2',)),
                     ('pop', ('a',)), ('pop', ('a',)), ('pop', ('a', 'dflt')),
                     ('__delitem__', (2,)), ('__delitem__', (2,)), ('update', ({'u': 1, 'v': 2},)),
                     ('update', ([('w', 3), ['x', 4]],)), ('popitem', ()), ('clear', ()),
                     ('popitem', ())]:
        same(ref, p, op, *args)
    same(ref, p, 'update', y=5, z=b'6')
    same(ref, p, 'update', {'m': 1}, n=2)
    for bad in [((1, 2), 1), ([1], 1), ('k', (1,)), ('k', {'a': 1})]:
        try:
            p[bad[0]] = bad[1]
        except TypeError:
            pass
        else:
            raise AssertionError('d[%r] = %r was accepted' % bad)
    try:
        p.update({'ok': 1, 'bad': [1]})
    except TypeError:
        pass
    assert 'ok' not in p, 'a failed update stored something'
    assert p._getvalue() == ref and str(p) == repr(ref)


def check_ns(ns):
    assert ns.a == 1 and ns.b == 'two'
    ns.c = 3.5
    ns.a = None
    del ns.b
    try:
        ns.b
    except AttributeError:
        pass
    else:
        raise AssertionError('deleted attribute read')
    try:
        del ns.zz
    except AttributeError:
        pass
    else:
        raise AssertionError('missing attribute deleted')
    try:
        ns.t = (1, 2)
    except TypeError:
        pass
    else:
        raise AssertionError('tuple attribute accepted')
    ns._local = 'stays on the proxy'
    assert ns._local == 'stays on the proxy'
    assert str(ns) == 'Namespace(a=None, c=3.5)', str(ns)
    v = ns._getvalue()
    assert v.a is None and v.c == 3.5


def mode_methods(addr):
    m = SyncManager(address=addr, authkey=KEY)
    m.connect()
    check_list(m.list())
    assert m.list([1, 'a', None])._getvalue() == [1, 'a', None]
    check_dict(m.dict())
    assert m.dict({'a': 1}, b=2)._getvalue() == {'a': 1, 'b': 2}
    assert m.dict([('p', 1)])._getvalue() == {'p': 1}
    check_ns(m.Namespace(a=1, b='two'))
    # A constructor given a value no container can hold fails in the server: RemoteError.
    for bad in [lambda: m.dict({'a': (1, 2)}), lambda: m.list([(1,)]), lambda: m.Namespace(x=[1])]:
        try:
            bad()
        except RemoteError as e:
            assert 'TypeError' in str(e), str(e)
        else:
            raise AssertionError('a bad constructor argument was accepted')
    # Nested containers travel as proxies, as with CPython's server. A rebuilt proxy
    # authenticates with the process's authkey (CPython's rule), so it must be the manager's.
    import multiprocessing
    multiprocessing.current_process().authkey = KEY
    outer, inner, sub = m.dict(), m.list([1]), m.dict({'k': 'v'})
    outer['inner'] = inner
    got = outer['inner']
    assert type(got).__name__ == 'ListProxy' and got._getvalue() == [1]
    got.append(2)
    assert inner._getvalue() == [1, 2]
    inner.append(sub)
    assert inner[2]['k'] == 'v'
    ns2 = m.Namespace()
    ns2.sub = sub
    ns2.sub['k2'] = 3
    assert sub._getvalue() == {'k': 'v', 'k2': 3}
    assert str(outer) == "{'inner': [1, 2, {'k': 'v', 'k2': 3}]}", str(outer)
    del got
    # The BaseManager-style client with registered typeids.
    b = M(address=addr, authkey=KEY)
    b.connect()
    bl = b.list()
    bl.append('via BaseManager')
    assert bl[0] == 'via BaseManager'
    # Reference counting: the proxies' decrefs bring the count back.
    conn = Client(addr, authkey=KEY)
    conn.send((None, 'number_of_objects', (), {}))
    kind, n = conn.recv()
    conn.close()
    assert kind == '#RETURN' and n >= 1, (kind, n)
    del bl
    conn = Client(addr, authkey=KEY)
    conn.send((None, 'number_of_objects', (), {}))
    assert conn.recv() == ('#RETURN', n - 1)
    conn.close()


def mode_shared(addr, n, tag):
    """Append n strings to the C list while C processes append to it too, and check what C
    wrote first."""
    m = M(address=addr, authkey=KEY)
    m.connect()
    lst, d, ns = m.get_list(), m.get_dict(), m.get_ns()
    assert d['from_c'] == 'hello from C', d._getvalue()
    assert ns.owner == 'C'
    print('ready', flush=True)
    sys.stdin.readline()  # the C side starts its writers and lets us go
    for i in range(n):
        lst.append('%s%d' % (tag, i))
        d['%s%d' % (tag, i)] = i
    d['done_' + tag] = True
    ns.last = tag


def mode_badkey(addr):
    m = SyncManager(address=addr, authkey=b'wrong key')
    try:
        m.connect()
    except AuthenticationError:
        pass
    else:
        raise AssertionError('a wrong key was accepted')
    # The server still answers a good client afterwards.
    good = SyncManager(address=addr, authkey=KEY)
    good.connect()
    assert good.list([1])[0] == 1


def mode_raw(addr):
    """Malformed and hostile requests get #TRACEBACK replies; the server stays up."""
    def ask(payload, raw=False):
        c = Client(addr, authkey=KEY)
        (c.send_bytes if raw else c.send)(payload)
        r = c.recv()
        c.close()
        return r
    assert ask((None, 'dummy', (), {})) == ('#RETURN', None)
    for bad in [(None, 'bogus', (), {}), (None, 'incref', ('deadbeef',), {}),
                (None, 'decref', ('zz',), {}), (None, 'create', ('nope',), {}),
                (None, 'create', (), {}), ('x', 'dummy'), 'a string', 42,
                (None, 'incref', (), {}), (None, 7, (), {})]:
        kind, text = ask(bad)
        assert kind == '#TRACEBACK' and isinstance(text, str), (bad, kind, text)
    assert "'bogus' unrecognized" in ask((None, 'bogus', (), {}))[1]
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ('echo pwned >&2',))
    for raw in [pickle.dumps((None, 'dummy', (Evil(),), {})), b'garbage', b'',
                pickle.dumps((None, 'dummy', (), {}))[:-3], b'\x80\x04' + b'(' * 5000]:
        kind, text = ask(raw, raw=True)
        assert kind == '#TRACEBACK', (raw[:20], kind, text)
    # Serving connection: unknown ident, bad shapes, a request that is not a tuple.
    m = SyncManager(address=addr, authkey=KEY)
    m.connect()
    lst = m.list([1])
    c = Client(addr, authkey=KEY)
    c.send((None, 'accept_connection', ('raw',), {}))
    assert c.recv() == ('#RETURN', None)
    for bad in [('ffff', '__len__', (), {}), (lst._token.id, '__len__', 'notatuple', {}),
                (lst._token.id, 'append', (), {}), (lst._token.id, 'clear', (), {}), 'junk']:
        c.send(bad)
        kind, _ = c.recv()
        assert kind in ('#TRACEBACK', '#ERROR'), (bad, kind)
    c.send((lst._token.id, '__len__', (), {}))
    assert c.recv() == ('#RETURN', 1)
    c.send((lst._token.id, '__getitem__', (5,), {}))
    kind, exc = c.recv()
    assert kind == '#ERROR' and type(exc) is IndexError, (kind, exc)
    # A client that dies mid-frame: a header promising 1000 bytes, then 10 of them, then EOF.
    c2 = Client(addr, authkey=KEY)
    c2._send(b'\x00\x00\x03\xe8' + b'x' * 10)
    c2.close()
    c.close()
    assert lst._getvalue() == [1]
    assert ask((None, 'dummy', (), {})) == ('#RETURN', None)


def write_corpus(directory):
    import os
    import pickle
    os.makedirs(directory, exist_ok=True)
    seeds = []
    # Control requests (first byte 0) and serving requests (first byte 1).
    for req in [(None, 'create', ('list', [1, 'a', None]), {}), (None, 'create', ('dict',), {'k': 1}),
                (None, 'create', ('Namespace',), {'a': 1.5}), (None, 'dummy', (), {}),
                (None, 'incref', ('40',), {}), (None, 'decref', ('40',), {}),
                (None, 'number_of_objects', (), {}), (None, 'debug_info', (), {}),
                (None, 'accept_connection', ('x',), {}), (None, 'shutdown', (), {})]:
        seeds.append(b'\x00' + pickle.dumps(req, 4))
    seeds.append(b'\x01' + pickle.dumps(('40', '__len__', (), {}), 4))
    # Method calls on the list (0), dict (1) and Namespace (2): first bytes 2, container.
    calls = [(0, 'append', (b'x' * 9,)), (0, 'extend', ([1, 2.5, True],)), (0, '__getitem__', (slice(1, None, -1),)),
             (0, '__setitem__', (slice(0, 1), ['q'])), (0, 'insert', (-1, 'i')), (0, 'pop', (0,)),
             (0, 'index', ('i',)), (0, 'count', (1,)), (0, 'remove', (2.5,)), (0, 'reverse', ()),
             (0, '#GETVALUE', ()), (0, '__repr__', ()), (1, '__setitem__', ('k', 'v')),
             (1, 'update', ([('a', 1)],)), (1, 'setdefault', (3,)), (1, 'popitem', ()),
             (1, 'items', ()), (1, 'get', ('zz', [1])), (1, 'copy', ()),
             (2, '__setattr__', ('a', 1)), (2, '__getattribute__', ('a',)), (2, '__delattr__', ('a',))]
    for target, method, args in calls:
        seeds.append(bytes([2, target]) + pickle.dumps((method, args, {}), 4))
    seeds.append(bytes([2, 0]) + pickle.dumps(('sort', (), {'reverse': True}), 4))
    for i, seed in enumerate(seeds):
        with open(os.path.join(directory, 'seed%02d' % i), 'wb') as f:
            f.write(seed)


def main():
    if sys.argv[1] == '--corpus':
        write_corpus(sys.argv[2])
        return
    mode, addr = sys.argv[1], parse(sys.argv[2])
    if mode == 'methods':
        mode_methods(addr)
    elif mode == 'shared':
        mode_shared(addr, int(sys.argv[3]), sys.argv[4])
    elif mode == 'badkey':
        mode_badkey(addr)
    elif mode == 'raw':
        mode_raw(addr)
    elif mode == 'shutdown':
        conn = Client(addr, authkey=KEY)
        conn.send((None, 'shutdown', (), {}))
        assert conn.recv() == ('#RETURN', None)
        conn.close()
    else:
        raise SystemExit('unknown mode ' + mode)
    print('ok', flush=True)


if __name__ == '__main__':
    main()
