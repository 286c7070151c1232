"""common.py - the harness of the Python multiprocessing benchmarks.

It mirrors bench/bench.c: a workload is a function run(n) that performs n operations and returns
the wall and CPU seconds it measured itself (so that starting processes stays outside), and each
row is the median of several runs after a warm-up, with the spread and the CPU time per operation
of this process and of the children it has joined. Rows are printed for people and written to the
--tsv file in bench.h's record format, so that bench/report.py joins them to the mpipc rows by
(suite, workload).

Each workload calibrates its op count in the warm-up so that one run takes about TARGET_S seconds:
the whole Python side stays a few minutes long however slow the machine is.
"""

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time

COLUMNS = ("suite", "workload", "impl", "kind", "median", "min", "max", "p99", "cpu_ns", "unit",
           "bytes_per_op", "n", "target", "better")
IMPL = "python"

REPS = 3
TARGET_S = 0.4
_out = None
_suite = ""

# fork, like the C side: the start method changes what Process() and Manager() cost.
ctx = mp.get_context("fork")


def cpu_seconds():
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class Clock:
    """Wall and CPU time between start() and stop(); stop after the children are joined."""

    def start(self):
        self.cpu0 = cpu_seconds()
        self.wall0 = time.perf_counter()

    def stop(self):
        return time.perf_counter() - self.wall0, cpu_seconds() - self.cpu0


def pin(cpu):
    """Pin the calling process to the cpu-th CPU it may use (modulo their number), as bench_pin."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return
    if len(allowed) > 1:
        os.sched_setaffinity(0, {allowed[cpu % len(allowed)]})


class pinned:
    """Pin this process for a block and restore its CPU set afterwards."""

    def __init__(self, cpu):
        self.cpu = cpu

    def __enter__(self):
        self.saved = os.sched_getaffinity(0)
        pin(self.cpu)

    def __exit__(self, *exc):
        os.sched_setaffinity(0, self.saved)


def start(target, *args):
    """Start a child process (fork) running target(*args)."""
    p = ctx.Process(target=target, args=args)
    p.start()
    return p


def join(p):
    """Join a child; a failed child fails the benchmark rather than skewing it."""
    p.join()
    if p.exitcode != 0:
        raise RuntimeError("child failed: exit code %s" % p.exitcode)


def _record(workload, kind, v, unit, bytes_per_op=0, n=0):
    if _out is None:
        return
    fields = [_suite, workload, IMPL, kind] + ["%.6g" % x for x in v] + \
        [unit, "%.6g" % bytes_per_op, "%d" % n, "0", "lower" if kind == "lat" else "higher"]
    _out.write("\t".join(f.replace("\t", " ") for f in fields) + "\n")
    _out.flush()


def _rate(v):
    for div, p in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return "%.2f %s" % (v / div, p)
    return "%.1f " % v


def _ns(v):
    if v >= 1e6:
        return "%.2f ms" % (v / 1e6)
    if v >= 1e3:
        return "%.2f us" % (v / 1e3)
    return "%.0f ns" % v


def suite(name, note=""):
    global _suite
    _suite = name
    print("\n== %s (Python %s multiprocessing) ==" % (name, sys.version.split()[0]))
    if note:
        print("   " + note)
    sys.stdout.flush()


def throughput(workload, run, n0, bytes_per_op=0, n_max=10**8):
    """Warm up with n0 ops, size n so one run takes about TARGET_S, then REPS runs."""
    wall, _ = run(n0)
    n = int(min(n_max, max(n0, n0 * TARGET_S / max(wall, 1e-6))))
    rates, cpus = [], []
    for _ in range(REPS):
        wall, cpu = run(n)
        rates.append(n / max(wall, 1e-9))
        cpus.append(cpu * 1e9 / n)
    rates.sort()
    cpus.sort()
    med, cpu = rates[len(rates) // 2], cpus[len(cpus) // 2]
    line = "%-34s %-16s %14s %24s %12s" % (workload, IMPL, _rate(med) + "op/s",
                                           "%s..%s" % (_rate(rates[0]), _rate(rates[-1])), _ns(cpu))
    if bytes_per_op:
        line += "  (%sB/s)" % _rate(med * bytes_per_op)
    print(line)
    sys.stdout.flush()
    _record(workload, "tput", (med, rates[0], rates[-1], 0, cpu), "op/s", bytes_per_op, REPS)
    return med


def latency(workload, ns):
    """One row of latency samples in nanoseconds: median and p99 (and min, max)."""
    ns = sorted(ns)
    med, p99 = ns[len(ns) // 2], ns[int((len(ns) - 1) * 0.99)]
    print("%-34s %-16s %14s %24s %12s" % (workload, IMPL, _ns(med), "p99 " + _ns(p99), "-"))
    sys.stdout.flush()
    _record(workload, "lat", (med, ns[0], ns[-1], p99, 0), "ns", 0, len(ns))
    return med


def info(workload, text):
    """A remark about a workload that the report prints as a footnote."""
    print("   -> %s: %s" % (workload, text))
    _record(workload, "info", (0, 0, 0, 0, 0), text)


def main(suites):
    """Parse --tsv FILE, --quick and an optional suite filter; run the matching suites."""
    global _out, REPS, TARGET_S
    ap = argparse.ArgumentParser()
    ap.add_argument("--tsv", help="append the records to this file")
    ap.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    ap.add_argument("only", nargs="?", help="run only suites whose name contains this")
    a = ap.parse_args()
    if a.quick:
        REPS, TARGET_S = 3, 0.05
    if a.tsv:
        new = not os.path.exists(a.tsv) or os.path.getsize(a.tsv) == 0
        _out = open(a.tsv, "a")
        if new:
            _out.write("# " + "\t".join(COLUMNS) + "\n")
    for name, fn in suites:
        if a.only is None or a.only in name:
            suite(name)
            fn()
    if _out is not None:
        _out.close()
