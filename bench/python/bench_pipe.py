"""bench_pipe.py - multiprocessing.Pipe() (a socketpair) with send_bytes/recv_bytes: one-way
streaming of 64 B, 4 KiB and 1 MiB messages and the 64 B round trip, sender and receiver pinned
to two CPUs, as bench/bench_pipe.c does for mp_conn."""

import time

import common
from common import Clock, ctx, join, pin, pinned, start


def stream(size):
    def run(n):
        a, b = ctx.Pipe()

        def child():
            pin(1)
            a.close()
            buf = bytes(size)
            for _ in range(n + 1):
                b.send_bytes(buf)
            b.close()

        p = start(child)
        b.close()
        with pinned(0):
            a.recv_bytes()  # the child is running: the fork stays outside the measurement
            c = Clock()
            c.start()
            for _ in range(n):
                a.recv_bytes()
            join(p)
            r = c.stop()
        a.close()
        return r
    return run


def pingpong(n):
    a, b = ctx.Pipe()
    warm = n // 10

    def child():
        pin(1)
        for _ in range(n + warm):
            b.send_bytes(b.recv_bytes())

    p = start(child)
    ns = []
    buf = bytes(64)
    clock = time.perf_counter_ns
    with pinned(0):
        for i in range(n + warm):
            t0 = clock()
            a.send_bytes(buf)
            a.recv_bytes()
            t1 = clock()
            if i >= warm:
                ns.append(t1 - t0)
    join(p)
    a.close()
    b.close()
    return ns


def suite():
    common.throughput("stream 64 B", stream(64), 20000)
    common.throughput("stream 4 KiB", stream(4096), 10000, 4096)
    common.throughput("stream 1 MiB", stream(1 << 20), 200, 1 << 20)
    common.latency("ping-pong 64 B round trip", pingpong(20000 if common.TARGET_S > 0.1 else 2000))


SUITES = [("pipe", suite)]

if __name__ == "__main__":
    common.main(SUITES)
