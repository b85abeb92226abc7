"""Shared benchmark helpers: machine header, interleaved timing, medians, GFLOP/s, tables, CSV.

Protocol (STYLE §4.8): every candidate is warmed up, then the candidates run round-robin
(interleaved) ``repeat`` times so that noise from other processes on a shared machine hits all of
them alike; report the median (and the best) per candidate. Benchmarks never assert.

    from _timing import header, interleave, median, gflops, print_table
"""
import argparse
import csv
import os
import random
import statistics
import sys
import time


def omp_idle():
    """The OpenMP idle-thread policy in effect: nnlite's default short spin (GOMP_SPINCOUNT,
    set on import) or what the environment set."""
    return ", ".join(f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
                     if k in os.environ) or "libgomp default (spin ~ms, then sleep)"


def ort_options(ort, threads):
    """ONNX Runtime session options for a same-process comparison: ``threads`` intra-op threads
    (its own pool), one inter-op thread, and ``session.force_spinning_stop=1``. ORT's workers
    spin while a Run() works, as by default, but stop when it returns: left spinning (the
    default) they keep both cores busy for over 100 ms after each Run() and slow whatever runs
    next in the process (2026-12-04, AMD EPYC Zen 4, 2 threads, MobileNetV2 at batch 1:
    nnlite's plan 5.3 ms alone, 11.5 ms alternating with ORT, 5.7 ms with this option; torch
    15 -> 35 ms), while ORT's own time is unchanged (3.9-4.1 ms alone, 4.1-4.3 ms with it)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    return opts


def header(extra=()):
    """Lines describing the machine and the build (nnlite info + OpenMP/BLAS threads)."""
    import nnlite.cli

    rows = [(k, v) for k, v in nnlite.cli.info_lines()
            if k in ("nnlite", "numpy", "backend", "extension", "OpenMP", "threads", "BLAS",
                     "BLAS idle", "CPU", "SIMD")]
    rows += list(extra)
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"# {k:<{width}}  {v}" for k, v in rows)


def time_once(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleave(candidates, repeat=7, warmup=1, min_time=0.0, clock=None, pause=0.0):
    """Time ``candidates`` (dict name -> zero-argument callable) round-robin.

    Each round calls every candidate once, in an order shuffled per round (seeded: the same
    orders every run; never the same candidate twice in a row across rounds): a candidate is
    slowed by what its predecessor leaves behind (ONNX Runtime's worker threads spin on after
    a run, caches are cold after an eager run), and in a fixed order one candidate always pays
    for the same predecessor (GoogLeNet b1 on 2 busy cores: one nnlite plan ran 1.03x ONNX
    Runtime right after ONNX Runtime's run and 0.74x after another nnlite plan, the same plan
    imported from ONNX). A call that takes less than ``min_time`` seconds is repeated inside
    the round and its mean is recorded. Returns dict name -> list of ``repeat`` times in
    seconds. ``clock``: the timer (default
    ``time.perf_counter``, wall time; ``time.process_time`` counts this process's CPU time, all
    its threads together, which other processes on a shared machine disturb far less).
    ``pause``: seconds of sleep before every timed call (a server between requests: the idle
    cores halt, and each engine starts its run from cold threads).
    """
    clock = clock or time.perf_counter
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    loops = {}
    for name, fn in candidates.items():
        t0 = clock()
        fn()
        t = clock() - t0
        loops[name] = max(1, int(min_time / t)) if t > 0 and min_time > 0 else 1
    times = {name: [] for name in candidates}
    order, last = list(candidates.items()), None
    rng = random.Random(20260)
    for _ in range(repeat):
        rng.shuffle(order)
        if len(order) > 1 and order[0][0] == last:
            order.append(order.pop(0))
        last = order[-1][0] if order else None
        for name, fn in order:
            k = loops[name]
            if pause > 0:
                time.sleep(pause)
            t0 = clock()
            for _ in range(k):
                fn()
            times[name].append((clock() - t0) / k)
    return times


def one_vs_two_threads(call, outs, calls, warmup=20):
    """Time ``call(t)`` on t = 1 and 2 threads, alternated ``calls`` times after ``warmup``
    pairs (the order flips every round); ``outs[t]`` is what the call with t threads wrote.
    Returns the table columns: medians, bests, their ratio, and whether both wrote the same
    bits."""
    for _ in range(warmup):
        call(1)
        call(2)
    times = {1: [], 2: []}
    for i in range(calls):
        for t in ((1, 2) if i % 2 == 0 else (2, 1)):
            t0 = time.perf_counter()
            call(t)
            times[t].append(time.perf_counter() - t0)
    m1, m2 = statistics.median(times[1]), statistics.median(times[2])
    return {"1t med": fmt_time(m1), "1t best": fmt_time(min(times[1])),
            "2t med": fmt_time(m2), "2t best": fmt_time(min(times[2])),
            "2t/1t": f"{m2 / m1:.2f}",
            "same bits": "yes" if outs[1].tobytes() == outs[2].tobytes() else "NO"}


def median(xs):
    return statistics.median(xs)


def best(xs):
    return min(xs)


def gflops(flops, seconds):
    return flops / seconds / 1e9 if seconds > 0 else float("nan")


def fmt_time(seconds):
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def print_table(rows, columns, file=None):
    """Print ``rows`` (list of dicts) as an aligned text table with the given column order."""
    file = file or sys.stdout
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)), file=file)
    print("  ".join("-" * w for w in widths), file=file)
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)), file=file)


def write_csv(path, rows, columns):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def base_parser(description):
    """argparse parser with the common options: --repeat, --threads, --csv, --quick."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--repeat", type=int, default=7, help="interleaved rounds (median reported)")
    p.add_argument("--threads", type=int, default=None, help="nnlite + BLAS threads")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds")
    return p


def apply_threads(args):
    if args.threads is not None:
        import nnlite

        nnlite.set_num_threads(args.threads)


# ------------------------------------------------------------------------------ peak memory
def _status_kb(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def peak_rss_growth_mb(fn):
    """Run ``fn()`` and return (peak RSS during it minus RSS before it, in MB; how measured).

    Linux: writing 5 to /proc/self/clear_refs resets the VmHWM high-water mark to the current
    RSS, so VmHWM after ``fn`` is the peak reached inside it. Elsewhere (or where clear_refs is
    not writable) getrusage's lifetime peak is used, which also counts whatever the process
    held before: call this in a fresh process (the benchmarks run it in a subprocess)."""
    peaks, source = peak_rss_growth_stages_mb([fn])
    return peaks[0], source


def _reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_growth_stages_mb(fns):
    """Run ``fns`` in order; return ([peak RSS during fns[i] minus the RSS before fns[0], in
    MB], how measured). The high-water mark is reset before each stage (see
    ``peak_rss_growth_mb``), so a later stage's figure is the peak inside that stage alone,
    over the same baseline. Without clear_refs the peaks are getrusage's lifetime peak at the
    end of each stage (non-decreasing; source 'ru_maxrss')."""
    linux = sys.platform.startswith("linux")
    base = _status_kb("VmRSS") if linux else None
    hwm = base is not None and _reset_hwm()
    peaks = []
    for i, fn in enumerate(fns):
        if hwm and i:
            _reset_hwm()
        fn()
        if hwm:
            peaks.append((_status_kb("VmHWM") - base) / 1024)
        else:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # kB on Linux
            peaks.append((peak - (base or 0)) / 1024)
    return peaks, "VmHWM" if hwm else "ru_maxrss"
