"""bench_manager.py - multiprocessing.Manager() proxies (one request and reply over a socket per
operation, arguments and results pickled): list append, dict set and get from one process, list
append from two, as bench/bench_manager.c does for mp_manager."""

import common
from common import Clock, ctx, join, start

KEYS = ["k%d" % i for i in range(100)]


def timed(fn):
    def run(n):
        c = Clock()
        c.start()
        fn(n)
        return c.stop()
    return run


def suite():
    with ctx.Manager() as m:
        lst, d = m.list(), m.dict()

        def append(n):
            for i in range(n):
                lst.append(i)

        def dset(n):
            for i in range(n):
                d[KEYS[i % 100]] = i

        def dget(n):
            for i in range(n):
                d[KEYS[i % 100]]

        common.throughput("list append, 1 process", timed(append), 2000)
        del lst[:]
        common.throughput("dict set, 1 process", timed(dset), 2000)
        common.throughput("dict get (100 keys), 1 process", timed(dget), 2000)

        def two(n):
            go = ctx.Event()

            def child():
                go.wait()
                append(n // 2)

            ps = [start(child), start(child)]
            c = Clock()
            c.start()
            go.set()
            for p in ps:
                join(p)
            r = c.stop()
            del lst[:]
            return r

        common.throughput("list append, 2 processes", two, 2000)


SUITES = [("manager", suite)]

if __name__ == "__main__":
    common.main(SUITES)
