"""bench_objects.py - the cost of creating and closing each multiprocessing object in one
process (the objects suite of bench/bench_objects.c), of starting and joining a process (the
process suite) and of creating a named shared memory segment (the shm suite)."""

from multiprocessing import shared_memory

import common
from common import Clock, ctx


def loop(make):
    def run(n):
        c = Clock()
        c.start()
        for _ in range(n):
            make()
        return c.stop()
    return run


def lock():
    ctx.Lock()


def event():
    ctx.Event()


def semaphore():
    ctx.Semaphore(1)


def pipe():
    a, b = ctx.Pipe()
    a.close()
    b.close()


def value():
    ctx.Value("l", 0)


def array():
    ctx.Array("d", 100)


def queue():
    q = ctx.Queue()
    q.close()
    q.join_thread()


def manager():
    m = ctx.Manager()
    m.shutdown()


def nothing():
    pass


def process():
    p = ctx.Process(target=nothing)
    p.start()
    p.join()
    p.close()


def shm():
    s = shared_memory.SharedMemory(create=True, size=4096)
    s.buf[0] = 1
    s.unlink()
    s.close()


def objects_suite():
    for name, fn, n0 in (("Lock", lock, 2000), ("Event", event, 1000),
                         ("Semaphore", semaphore, 2000), ("Pipe", pipe, 2000),
                         ("Value", value, 2000), ("Array(100)", array, 2000),
                         ("Queue", queue, 1000)):
        common.throughput(name + " open+close", loop(fn), n0)
    common.throughput("Manager start+shutdown", loop(manager), 2, n_max=20)
    with ctx.Manager() as m:
        common.throughput("Manager list create+release", loop(m.list), 200)


def process_suite():
    common.throughput("process start+join", loop(process), 50)


def shm_suite():
    common.throughput("shm create+unlink+close", loop(shm), 1000)


SUITES = [("process", process_suite), ("shm", shm_suite), ("objects", objects_suite)]

if __name__ == "__main__":
    common.main(SUITES)
