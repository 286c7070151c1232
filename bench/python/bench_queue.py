"""bench_queue.py - multiprocessing.Queue() (a pipe, a lock and a feeder thread per producer;
every item pickled): 1 producer -> 1 consumer streaming of 64 B, 4 KiB and 1 MiB bytes items,
2 producers x 2 consumers, and the round trip over two queues, as bench/bench_queue.c does for
mp_queue."""

import time

import common
from common import Clock, ctx, join, pin, pinned, start


def stream(size):
    def run(n):
        q = ctx.Queue()

        def child():
            pin(1)
            buf = bytes(size)
            for _ in range(n + 1):
                q.put(buf)
            q.close()
            q.join_thread()

        p = start(child)
        with pinned(0):
            q.get()
            c = Clock()
            c.start()
            for _ in range(n):
                q.get()
            join(p)
            r = c.stop()
        q.close()
        q.join_thread()
        return r
    return run


def mpmc(n):
    """2 producers and 2 consumers, each a child pinned to a CPU, released together by an Event."""
    q, go = ctx.Queue(), ctx.Event()
    per = max(1, n // 2)

    def producer(cpu):
        pin(cpu)
        buf = bytes(64)
        go.wait()
        for _ in range(per):
            q.put(buf)
        q.close()
        q.join_thread()

    def consumer(cpu):
        pin(cpu)
        go.wait()
        for _ in range(per):
            q.get()

    ps = [start(producer, 0), start(producer, 1), start(consumer, 0), start(consumer, 1)]
    c = Clock()
    c.start()
    go.set()
    for p in ps:
        join(p)
    r = c.stop()
    q.close()
    q.join_thread()
    return r


def pingpong(n):
    ping, pong = ctx.Queue(), ctx.Queue()
    warm = n // 10

    def child():
        pin(1)
        for _ in range(n + warm):
            pong.put(ping.get())
        pong.close()
        pong.join_thread()

    p = start(child)
    ns = []
    buf = bytes(64)
    clock = time.perf_counter_ns
    with pinned(0):
        for i in range(n + warm):
            t0 = clock()
            ping.put(buf)
            pong.get()
            t1 = clock()
            if i >= warm:
                ns.append(t1 - t0)
    join(p)
    for q in (ping, pong):
        q.close()
        q.join_thread()
    return ns


def suite():
    common.throughput("stream 64 B", stream(64), 10000)
    common.throughput("stream 4 KiB", stream(4096), 5000, 4096)
    common.throughput("stream 1 MiB", stream(1 << 20), 100, 1 << 20)
    common.throughput("2x2 MPMC 64 B", mpmc, 10000)
    common.latency("ping-pong 64 B round trip", pingpong(10000 if common.TARGET_S > 0.1 else 1000))


SUITES = [("queue", suite)]

if __name__ == "__main__":
    common.main(SUITES)
