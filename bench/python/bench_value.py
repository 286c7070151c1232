"""bench_value.py - multiprocessing.Value increments and Lock acquire/release, from one process
and from two pinned to different CPUs, as bench/bench_value.c and bench/bench_sync.c do.

"locked" is Python's idiom `with v.get_lock(): v.value += 1`. Python has no atomic add; its
nearest, an increment of a RawValue without any lock, is reported in the "atomic add" rows
together with the fraction of updates it lost."""

import common
from common import Clock, ctx, join, pin, pinned, start


def locked(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def unlocked(v, n):
    for _ in range(n):
        v.value += 1


def lock_pairs(lock, n):
    for _ in range(n):
        lock.acquire()
        lock.release()


def one(make, body):
    def run(n):
        obj = make()
        with pinned(0):
            c = Clock()
            c.start()
            body(obj, n)
            return c.stop()
    return run


def two(make, body, check=None):
    """Both processes do half of the n operations; an Event starts them together."""
    def run(n):
        obj, go = make(), ctx.Event()

        def child():
            pin(1)
            go.wait()
            body(obj, n // 2)

        p = start(child)
        with pinned(0):
            c = Clock()
            c.start()
            go.set()
            body(obj, n - n // 2)
            join(p)
            r = c.stop()
        if check is not None:
            check(obj, n)
        return r
    return run


_lost = []


def count_lost(v, n):
    _lost.append(1 - v.value / n)


def value_suite():
    common.throughput("1 process, locked", one(lambda: ctx.Value("l", 0), locked), 20000)
    common.throughput("2 processes, locked", two(lambda: ctx.Value("l", 0), locked), 20000)
    common.throughput("1 process, atomic add", one(lambda: ctx.RawValue("l", 0), unlocked), 50000)
    _lost.clear()
    common.throughput("2 processes, atomic add",
                      two(lambda: ctx.RawValue("l", 0), unlocked, count_lost), 50000)
    common.info("2 processes, atomic add",
                "Python: RawValue `v.value += 1` without a lock, %.0f%% of updates lost"
                % (100 * max(_lost)))


def sync_suite():
    common.throughput("uncontended", one(ctx.Lock, lock_pairs), 50000)
    common.throughput("2 processes, 2 CPUs", two(ctx.Lock, lock_pairs), 50000)


SUITES = [("sync", sync_suite), ("value", value_suite)]

if __name__ == "__main__":
    common.main(SUITES)
