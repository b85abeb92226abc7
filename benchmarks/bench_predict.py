"""Images/s from image files to top-5 predictions: a plain loop vs ``nnlite predict`` on Dask.

    python benchmarks/bench_predict.py [--models googlenet,mobilenet_v2] [--images 96]
        [--size 224] [--batch 16] [--sweep 1,4,16] [--repeat 3] [--quick]

Workload: ``--images`` JPEG files (400x300 and 500x375, some portrait, written once to a
temporary directory), each read with ``nnlite.vision.load_image``, resized to 256 / centre
cropped to 224 / normalised (``imagenet_transform``), classified by a built-in model with seeded
random weights (``--weights`` .npz), top-5 softmax probabilities written to CSV. Candidates:

    loop             one process, 2 nnlite threads: load + transform + optimized model per batch
    dask 1w x 2t     predict_to_file on a LocalCluster of 1 worker process with 2 threads
    dask 2w x 1t     the same on 2 worker processes with 1 thread each

Both clusters are started once (start-up not counted). Each Dask candidate first runs once on
fresh workers ("first run": the model is shipped and compiled in every worker); then all three
candidates run round-robin ``--repeat`` times (interleaved, so the noise of a shared machine
hits them alike) and the median images/s is reported with the range. The scheduler's overhead
per task is measured with 400 empty tasks; the batch size that hides it is computed from the
loop's time per image (overhead < 5 % of a task) and checked by an interleaved sweep of batch
sizes on the 2 x 1 cluster. Load average and CPU model are printed before and after. Prints
figures; never asserts.
"""
import os
import shutil
import sys
import tempfile
import time

import nnlite  # noqa: I001  (before NumPy: OpenMP/OpenBLAS idle policy)
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _timing  # noqa: E402


def machine_lines():
    with open("/proc/loadavg") as fh:
        load = " ".join(fh.read().split()[:3])
    import nnlite.cli

    return [f"# load average {load} (1, 5, 15 min); {os.cpu_count()} logical cores; "
            f"CPU {nnlite.cli.cpu_name()}"]


def write_images(directory, n, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        w, h = (500, 375) if i % 2 else (400, 300)
        if i % 3 == 0:
            w, h = h, w
        yy, xx = np.mgrid[0:h, 0:w]
        base = rng.integers(0, 256, 3)
        a = (base + np.stack([yy // (1 + i % 4), xx // (1 + i % 3), (xx + yy) // 3], -1)
             + rng.integers(0, 30, (h, w, 3))) % 256
        p = os.path.join(directory, f"img{i:04d}.jpg")
        Image.fromarray(a.astype(np.uint8)).save(p, quality=90)
        paths.append(p)
    return paths


def make_loop(model, paths, size, batch, threads=2):
    """A zero-argument single-process loop (load, transform, optimized model, top-5); also
    returns a function giving the last run's ms per image spent loading and in the model."""
    from nnlite import vision
    from nnlite.dask import topk_scores

    nnlite.set_num_threads(threads)
    tf = vision.imagenet_transform(size)
    fast = nnlite.optimize_for_inference(model)
    fast(np.zeros((batch, 3, size, size), np.float32))                  # compile
    split = {}

    def run():
        t_load = t_model = 0.0
        for s in range(0, len(paths), batch):
            a = time.perf_counter()
            x = np.stack([tf(vision.load_image(p)).data for p in paths[s:s + batch]])
            b = time.perf_counter()
            if len(x) < batch:
                x = np.concatenate([x, np.zeros((batch - len(x),) + x.shape[1:], x.dtype)])
            topk_scores(fast.run_arrays(x)[0], 5)
            t_load += b - a
            t_model += time.perf_counter() - b
        split.update(load=t_load / len(paths), model=t_model / len(paths))
    return run, split


def start_cluster(workers, threads):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                           host="127.0.0.1", dashboard_address=":0", silence_logs=40)
    client = Client(cluster)
    client.wait_for_workers(workers)
    return cluster, client


def make_dask_run(client, name, weights, paths, out, size, batch):
    from nnlite import dask as nd

    def run():
        nd.predict_to_file(name, paths, out, client, batch_size=batch, topk=5, size=size,
                           weights=weights, progress=False)
    return run


def task_overhead(client, tasks=400):
    """Seconds per empty task through the scheduler (submit -> all done), end to end."""
    from distributed import wait

    wait(client.map(_noop, range(50), pure=False))                        # warm-up
    t0 = time.perf_counter()
    wait(client.map(_noop, range(tasks), pure=False))
    return (time.perf_counter() - t0) / tasks


def _noop(i):
    return i


def main():
    p = _timing.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--models", default="googlenet,mobilenet_v2")
    p.add_argument("--images", type=int, default=96)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--sweep", default="1,4,16", help="batch sizes of the overhead sweep")
    p.set_defaults(repeat=3)
    args = p.parse_args()
    if args.quick:
        args.images, args.models, args.sweep, args.repeat = 32, "mobilenet_v2", "1,8", 2
    print(_timing.header())
    for line in machine_lines():
        print(line)
    tmp = tempfile.mkdtemp(prefix="nnlite-bench-predict-")
    try:
        paths = write_images(tmp, args.images)
        print(f"# {len(paths)} JPEG files 400x300 / 500x375 (and portrait), "
              f"crop {args.size}, batch {args.batch}")
        rows = []
        per_image = {}
        setups = {"dask 1w x 2t": (1, 2), "dask 2w x 1t": (2, 1)}
        clusters = {k: start_cluster(*v) for k, v in setups.items()}
        try:
            for name in args.models.split(","):
                nnlite.manual_seed(0)
                model = getattr(nnlite.models, name)().eval()
                weights = os.path.join(tmp, f"{name}.npz")
                nnlite.save(model.state_dict(), weights)
                loop, split = make_loop(model, paths, args.size, args.batch)
                cands = {"loop, 2 threads": loop}
                cold = {}
                for k, (cluster, client) in clusters.items():
                    cands[k] = make_dask_run(client, name, weights, paths,
                                             os.path.join(tmp, f"{name}-{k[5:7]}.csv"),
                                             args.size, args.batch)
                    cold[k] = len(paths) / _timing.time_once(cands[k])   # ship + compile
                times = _timing.interleave(cands, repeat=args.repeat, warmup=0)
                per_image[name] = split["load"] + split["model"]
                for k, ts in times.items():
                    rate = len(paths) / _timing.median(ts)
                    spread = f"{len(paths) / max(ts):.1f}..{len(paths) / min(ts):.1f}"
                    note = (f"load+transform {split['load'] * 1e3:.1f} ms/img, model "
                            f"{split['model'] * 1e3:.1f} ms/img" if k not in cold else
                            f"first run (ship + compile) {cold[k]:.1f} images/s")
                    rows.append({"model": name, "run": k, "images/s": f"{rate:.1f}",
                                 "range": spread, "images/s/core": f"{rate / 2:.1f}",
                                 "note": note})
                print(f"# {name} done; load average {open('/proc/loadavg').read().split()[0]}",
                      flush=True)
            print()
            _timing.print_table(rows, ["model", "run", "images/s", "range", "images/s/core",
                                       "note"])
            over = task_overhead(clusters["dask 2w x 1t"][1])
            print(f"\nscheduler overhead per empty task (2 workers x 1 thread, 400 tasks): "
                  f"{over * 1e3:.2f} ms")
            for name, t in per_image.items():
                need = over / (0.05 * t)
                print(f"  {name}: {t * 1e3:.1f} ms per image on 2 threads; overhead < 5 % of a "
                      f"task from batch {max(1, int(np.ceil(need)))} on")
            name = args.models.split(",")[-1]
            weights = os.path.join(tmp, f"{name}.npz")
            client = clusters["dask 2w x 1t"][1]
            cands = {b: make_dask_run(client, name, weights, paths,
                                      os.path.join(tmp, f"sweep-{b}.csv"), args.size, b)
                     for b in [int(v) for v in args.sweep.split(",")]}
            times = _timing.interleave(cands, repeat=args.repeat, warmup=1)
            sweep = [{"model": name, "batch": b, "tasks": -(-len(paths) // b),
                      "images/s": f"{len(paths) / _timing.median(ts):.1f}",
                      "range": f"{len(paths) / max(ts):.1f}..{len(paths) / min(ts):.1f}"}
                     for b, ts in times.items()]
            print(f"\nbatch sweep, dask 2w x 1t, {name} (median of {args.repeat} interleaved "
                  "runs):")
            _timing.print_table(sweep, ["model", "batch", "tasks", "images/s", "range"])
            if len(times) >= 2:
                # wall time = tasks * c + images * t: two sweep points give c, the cost of a
                # task beyond its images as seen end to end (scheduler, transfer, shard file)
                (b1, t1), (b2, t2) = sorted(times.items())[0], sorted(times.items())[-1]
                n1, n2 = -(-len(paths) // b1), -(-len(paths) // b2)
                c = (_timing.median(t1) - _timing.median(t2)) / (n1 - n2) if n1 != n2 else 0
                print(f"  end-to-end cost per task from batch {b1} vs {b2}: {c * 1e3:.1f} ms of "
                      "wall time on this 2-worker cluster")
        finally:
            for cluster, client in reversed(list(clusters.values())):   # each restores
                client.close()                                          # the log level it
                cluster.close()                                         # found at start
        for line in machine_lines():
            print(line.replace("# load", "# at the end: load"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
