"""report.py - one table from the records of mpipc_bench --tsv and bench/python/run_all.py --tsv.

    python3 bench/report.py [--md docs/performance.md] [--png docs/performance.png]
                            [--notes bench/performance-notes.md] [--context TEXT] FILE.tsv...

Rows are joined by (suite, workload). In each group the impl whose name starts with "mp" is
mpipc, "python" is Python's multiprocessing, and any other impl is the raw baseline, so a new
suite's rows appear here without any change to this file. Workloads listed in ROWS are always
shown (as n/a when their suite has not run); TARGETS are the module issues' goals.
"""

import argparse
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

SUITE_ORDER = ["process", "sync", "pipe", "queue", "value", "shm", "manager", "objects"]

# (suite, workload) always shown, in this order within each suite.
ROWS = [
    ("process", "process start+join"),
    ("sync", "uncontended"),
    ("sync", "2 processes, 2 CPUs"),
    ("pipe", "stream 64 B"),
    ("pipe", "stream 4 KiB"),
    ("pipe", "stream 1 MiB"),
    ("pipe", "ping-pong 64 B round trip"),
    ("queue", "stream 64 B"),
    ("queue", "stream 4 KiB"),
    ("queue", "stream 1 MiB"),
    ("queue", "2x2 MPMC 64 B"),
    ("queue", "ping-pong 64 B round trip"),
    ("value", "1 process, locked"),
    ("value", "2 processes, locked"),
    ("value", "1 process, atomic add"),
    ("value", "2 processes, atomic add"),
    ("shm", "shm create+unlink+close"),
    ("manager", "list append, 1 process"),
    ("manager", "dict set, 1 process"),
    ("manager", "dict get (100 keys), 1 process"),
    ("manager", "dict get (100k keys), 1 process"),
    ("manager", "list append, 2 processes"),
    ("objects", "Lock open+close"),
    ("objects", "Event open+close"),
    ("objects", "Semaphore open+close"),
    ("objects", "Pipe open+close"),
    ("objects", "Value open+close"),
    ("objects", "Array(100) open+close"),
    ("objects", "Queue open+close"),
    ("objects", "Manager start+shutdown"),
    ("objects", "Manager list create+release"),
]


def load(paths):
    recs = []
    for path in paths:
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                c = line.rstrip("\n").split("\t")
                if len(c) < 14:
                    continue
                r = dict(suite=c[0], workload=c[1], impl=c[2], kind=c[3], unit=c[9],
                         better=c[13])
                for i, k in ((4, "median"), (5, "min"), (6, "max"), (7, "p99"), (8, "cpu_ns"),
                             (10, "bytes"), (11, "n"), (12, "target")):
                    try:
                        r[k] = float(c[i])
                    except ValueError:
                        r[k] = 0.0
                recs.append(r)
    return recs


def role(impl):
    if impl == "python":
        return "python"
    return "mpipc" if impl.startswith("mp") else "baseline"


class Data:
    def __init__(self, recs, only=None):
        self.only = only
        self.groups = {}  # (suite, workload) -> {role: record}; the first record of a role wins
        self.ratios = []
        self.infos = []
        for r in recs:
            if r["kind"] == "ratio":
                self.ratios.append(r)
            elif r["kind"] == "info":
                self.infos.append(r)
            elif r["kind"] in ("tput", "lat"):
                g = self.groups.setdefault((r["suite"], r["workload"]), {})
                g.setdefault(role(r["impl"]), r)

    def keys(self):
        """ROWS first, then every other workload seen, each after its suite's listed rows."""
        seen = list(ROWS)
        for k in self.groups:
            if k not in seen:
                seen.append(k)
        order = {s: i for i, s in enumerate(SUITE_ORDER)}
        pos = {k: i for i, k in enumerate(seen)}
        seen = [k for k in seen if self.only is None or self.only in k[0]]
        return sorted(seen, key=lambda k: (order.get(k[0], len(order)), k[0], pos[k]))

    def get(self, suite, workload, who="mpipc"):
        return self.groups.get((suite, workload), {}).get(who)

    def ratio(self, suite, what):
        for r in self.ratios:
            if r["suite"] == suite and r["workload"] == what:
                return r["median"]
        return None


# ---- formatting -------------------------------------------------------------------------------

def fmt_rate(v, bytes_per_op=0):
    if bytes_per_op >= 65536:
        return "%.2f GB/s" % (v * bytes_per_op / 1e9)
    for div, p in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return "%.3g %s/s" % (v / div, p)
    return "%.3g /s" % v


def fmt_ns(v):
    if v >= 1e6:
        return "%.3g ms" % (v / 1e6)
    if v >= 1e3:
        return "%.3g us" % (v / 1e3)
    return "%.3g ns" % v


def fmt_fig(r):
    if r is None:
        return "n/a"
    if r["kind"] == "lat":
        return "%s (p99 %s)" % (fmt_ns(r["median"]), fmt_ns(r["p99"]))
    return fmt_rate(r["median"], r["bytes"])


def fmt_spread(r):
    if r is None:
        return ""
    if r["kind"] == "lat":
        return "min %s, max %s" % (fmt_ns(r["min"]), fmt_ns(r["max"]))
    if r["median"] <= 0:
        return ""
    return "%s .. %s" % (fmt_rate(r["min"], r["bytes"]), fmt_rate(r["max"], r["bytes"]))


def pm(r):
    """The spread as +-% of the median, for the compact terminal table."""
    if r is None or r["kind"] == "lat" or r["median"] <= 0:
        return ""
    return " +-%.0f%%" % (50 * (r["max"] - r["min"]) / r["median"])


def speedup(a, b):
    """How many times faster a is than b (throughput a/b, latency b/a); None when unknown."""
    if a is None or b is None or a["median"] <= 0 or b["median"] <= 0:
        return None
    return a["median"] / b["median"] if a["kind"] == "tput" else b["median"] / a["median"]


def fmt_x(x):
    if x is None:
        return "-"
    return "%.2fx" % x if x < 10 else "%.0fx" % x


def cpu(r):
    if r is None:
        return "-"
    if r["kind"] == "lat":
        return "-"
    return fmt_ns(r["cpu_ns"])


# ---- targets ----------------------------------------------------------------------------------

def targets(d):
    """(module, target, measured, verdict) for every module issue's goal."""
    out = []

    def verdict(v, ok):
        return v, "met" if ok else "NOT met"

    def absolute(module, suite, workload, text, value_of, goal, lower, show):
        r = d.get(suite, workload)
        if r is None:
            out.append((module, text, "n/a", "n/a"))
            return
        v = value_of(r)
        out.append((module, text) + verdict(show(v), v <= goal if lower else v >= goal))

    def vs_base(module, suite, workload, text, goal, lower, paired=None):
        a, b = d.get(suite, workload), d.get(suite, workload, "baseline")
        if a is None or b is None:
            out.append((module, text, "n/a", "n/a"))
            return
        med = a["median"] / b["median"]
        p = d.ratio(suite, paired) if paired else None
        if p is not None:
            shown = "%.3fx interleaved pairs (medians %.3fx)" % (p, med)
            med = p
        else:
            shown = "%.3fx" % med
        out.append((module, text) + verdict(shown, med <= goal if lower else med >= goal))

    for size in ("64 B", "4 KiB", "1 MiB"):
        vs_base("pipe", "pipe", "stream " + size, "stream %s >= 1.0x baseline" % size, 1.0, False,
                "stream %s, interleaved pairs" % size)
    vs_base("pipe", "pipe", "ping-pong 64 B round trip", "round trip <= 1.1x baseline", 1.1, True)
    absolute("pipe", "pipe", "stream 1 MiB", "stream 1 MiB >= 2 GB/s",
             lambda r: r["median"] * r["bytes"] / 1e9, 2.0, False, lambda v: "%.2f GB/s" % v)
    for w in ("uncontended", "2 processes, 2 CPUs"):
        vs_base("sync", "sync", w, "lock %s within 1.2x of a bare robust mutex (>= 0.83x)" % w,
                1 / 1.2, False)
    for w, goal in (("1 process, locked", 30), ("2 processes, locked", 12),
                    ("2 processes, atomic add", 40)):
        absolute("value", "value", w, "%s >= %d M/s" % (w, goal), lambda r: r["median"] / 1e6,
                 goal, False, lambda v: "%.1f M/s" % v)
    absolute("queue", "queue", "stream 64 B", "stream 64 B >= 10 M msgs/s",
             lambda r: r["median"] / 1e6, 10, False, lambda v: "%.2f M/s" % v)
    absolute("queue", "queue", "ping-pong 64 B round trip", "round trip median <= 2 us",
             lambda r: r["median"] / 1e3, 2, True, lambda v: "%.2f us" % v)
    big = [w for (s, w) in d.keys() if s == "queue" and w.startswith("stream 1 MiB")]
    for w in big or ["stream 1 MiB"]:
        absolute("queue", "queue", w, "%s >= 8 GB/s" % w,
                 lambda r: r["median"] * r["bytes"] / 1e9, 8, False, lambda v: "%.2f GB/s" % v)
    absolute("queue", "queue", "2x2 MPMC 64 B", "2x2 MPMC 64 B >= 4 M msgs/s",
             lambda r: r["median"] / 1e6, 4, False, lambda v: "%.2f M/s" % v)
    for w in ("list append, 1 process", "dict set, 1 process", "dict get (100 keys), 1 process"):
        absolute("manager", "manager", w, "%s <= 1 us per op" % w,
                 lambda r: 1e6 / r["median"], 1, True, lambda v: "%.2f us" % v)
    small = d.get("manager", "dict get (100 keys), 1 process")
    large = d.get("manager", "dict get (100k keys), 1 process")
    text = "dict get with 100k keys <= 2x the time with 100 keys"
    if small is None or large is None:
        out.append(("manager", text, "n/a", "n/a"))
    else:
        x = small["median"] / large["median"]
        out.append(("manager", text) + verdict("%.2fx" % x, x <= 2))
    return out


# ---- output -----------------------------------------------------------------------------------

HEAD = ("suite", "workload", "mpipc", "baseline", "Python", "x base", "x Python", "cpu/op")


def rows(d):
    for k in d.keys():
        g = d.groups.get(k, {})
        m, b, p = g.get("mpipc"), g.get("baseline"), g.get("python")
        yield k, m, b, p


def text_table(d):
    lines = ["%-8s %-32s %-26s %-36s %-22s %7s %8s %9s" % HEAD]
    for (suite, wl), m, b, p in rows(d):
        base = "n/a" if b is None else "%s%s %s" % (fmt_fig(b), pm(b), b["impl"])
        lines.append("%-8s %-32s %-26s %-36s %-22s %7s %8s %9s" % (
            suite, wl[:32], fmt_fig(m) + pm(m), base[:36], fmt_fig(p) + pm(p),
            fmt_x(speedup(m, b)), fmt_x(speedup(m, p)), cpu(m)))
    return "\n".join(lines)


def md_table(d):
    out = ["| suite | workload | mpipc | spread | mpipc CPU/op | raw baseline | Python "
           "multiprocessing | Python CPU/op | mpipc vs baseline | mpipc vs Python |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (suite, wl), m, b, p in rows(d):
        base = "n/a" if b is None else "%s (%s)" % (fmt_fig(b), b["impl"])
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            suite, wl, fmt_fig(m), fmt_spread(m), cpu(m), base, fmt_fig(p), cpu(p),
            fmt_x(speedup(m, b)), fmt_x(speedup(m, p))))
    return "\n".join(out)


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = ", %.1f GiB RAM" % (kb / 2**20)
    except (OSError, ValueError, IndexError):
        pass
    return "%s, %d CPUs usable%s, Linux %s, glibc %s, Python %s" % (
        model, len(os.sched_getaffinity(0)), mem, platform.release(),
        platform.libc_ver()[1] or "?", platform.python_version())


def chart(d, png):
    """A bar chart of both speed-ups on a log scale; False when gnuplot is missing or fails."""
    gp = shutil.which("gnuplot")
    if gp is None:
        return False
    pts = []
    for (suite, wl), m, b, p in rows(d):
        xb, xp = speedup(m, b), speedup(m, p)
        if xb is None and xp is None:
            continue
        pts.append(("%s: %s" % (suite, wl), xb, xp))
    if not pts:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        dat = os.path.join(tmp, "ratios.dat")
        with open(dat, "w") as f:
            for label, xb, xp in pts:
                f.write('"%s" %s %s\n' % (label.replace('"', "'"),
                                           "%.4g" % xb if xb else "NaN",
                                           "%.4g" % xp if xp else "NaN"))
        terms = subprocess.run([gp, "-e", "set terminal"], capture_output=True, text=True)
        term = "pngcairo size 1400,700 font ',9'" if "pngcairo" in terms.stdout + terms.stderr \
            else "png size 1400,700"
        script = """
set terminal %s
set output '%s'
set title "mpipc speed-up: how many times faster than the raw baseline and than Python multiprocessing (log scale; 1 = equal)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set logscale y
set yrange [0.1:*]
set grid ytics
set ytics nomirror
set xtics rotate by -50 scale 0 nomirror
set key top left
set bmargin 13
set rmargin 16
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 1 dt 2
plot '%s' using 2:xtic(1) title 'vs raw baseline' lc rgb '#4477aa', '' using 3 title 'vs Python multiprocessing' lc rgb '#ee7733'
""" % (term, png, dat)
        r = subprocess.run([gp], input=script, capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stderr)
            return False
    return True


def markdown(d, tg, args, have_png):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    reps = {}
    for g in d.groups.values():
        for who, r in g.items():
            if r["kind"] == "tput" and r["n"] > 0:
                reps.setdefault("Python" if who == "python" else "mpipc and baselines",
                                set()).add(int(r["n"]))
    reps = "; ".join("%s for %s" % ("/".join(str(n) for n in sorted(v)), k)
                     for k, v in sorted(reps.items(), reverse=True)) or "several"
    out = ["# Performance",
           "",
           "Generated by `bench/run` on %s; regenerate with the same command (this file and "
           "`docs/%s` are overwritten)." % (now, os.path.basename(args.png or "performance.png")),
           "",
           "- Machine: %s." % machine(),
           ]
    if args.context:
        out.append("- Conditions: %s" % args.context)
    out += [
        "- Method: each throughput figure is the median of several runs (%s) after a warm-up run, with "
        "the spread (min..max) of those runs; latency rows give the median and p99 of every "
        "round trip after a warm-up tenth. CPU/op is user + system time of the measuring process "
        "and of the children it reaped, per operation, so that spinning shows. Ratios are "
        "speed-ups: above 1, mpipc is faster (higher throughput or lower latency)."
        % reps,
        "- Pinning: two-process streaming, round trip, contended lock and value rows pin the "
        "two sides to two different CPUs (mpipc, baseline and Python alike); the 2x2 queue rows "
        "pin producer and consumer pairs to the two CPUs; single-process rows are pinned in the "
        "value suite and in Python's lock rows, unpinned otherwise.",
        "- Python runs the same workloads with `multiprocessing` (fork context) from "
        "`bench/python/`, in the same session; n/a means that suite or the interpreter was "
        "absent.",
        "",
        "## Results",
        "",
        md_table(d),
        ""]
    for r in d.infos:
        out.append("- %s / %s: %s" % (r["suite"], r["workload"], r["unit"]))
    if d.infos:
        out.append("")
    if have_png:
        out += ["![speed-ups](%s)" % os.path.basename(args.png), ""]
    out += ["## Targets from the module issues", "",
            "| module | target | measured | verdict |", "| --- | --- | --- | --- |"]
    out += ["| %s | %s | %s | %s |" % t for t in tg]
    out.append("")
    if args.notes and os.path.exists(args.notes):
        with open(args.notes) as f:
            out.append(f.read().rstrip() + "\n")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tsv", nargs="+")
    ap.add_argument("--md")
    ap.add_argument("--png")
    ap.add_argument("--notes")
    ap.add_argument("--context", help="a sentence on the conditions of this run")
    ap.add_argument("--only", help="show only suites whose name contains this")
    args = ap.parse_args()
    d = Data(load(args.tsv), args.only)
    if not d.groups:
        sys.exit("report.py: no records in %s" % ", ".join(args.tsv))
    print(text_table(d))
    print("  (x base, x Python: how many times faster mpipc is; +-: half the min..max spread)")
    for r in d.infos:
        print("  note: %s / %s: %s" % (r["suite"], r["workload"], r["unit"]))
    tg = [t for t in targets(d) if args.only is None or args.only in t[0]]
    print("\nTargets from the module issues:")
    for module, text, value, v in tg:
        print("  %-8s %-70s %-40s %s" % (module, text, value, v))
    have_png = False
    if args.png:
        have_png = chart(d, args.png)
        print("\nchart: %s" % (args.png if have_png else "skipped (gnuplot not available)"))
    if args.md:
        with open(args.md, "w") as f:
            f.write(markdown(d, tg, args, have_png))
        print("markdown: %s" % args.md)


if __name__ == "__main__":
    main()
