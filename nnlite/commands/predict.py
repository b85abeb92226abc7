"""``nnlite predict MODEL IMAGES... --out preds.csv``: classify image files on Dask workers.

MODEL is an ``.onnx`` file or a built-in model name with ``--weights W.npz``. IMAGES are image
files or directories (searched recursively for image file endings, sorted). Each image is read
as RGB, its shorter side resized to ``int(S * 256 / 224)`` (bilinear, antialiased), centre
cropped to S x S, scaled to [0, 1] and normalised with the ImageNet mean and std
(``nnlite.vision.imagenet_transform(S)``). Without ``--scheduler`` a local cluster of
``--workers`` processes is started. Finished shards (``--batch`` images each) are saved under
OUT.shards/, so rerunning the same command after an interruption computes only what is missing;
unreadable images are listed in OUT's ``.errors.csv`` and the run goes on.
"""
import os
import sys


def register(subparsers):
    p = subparsers.add_parser(
        "predict", help="classify image files on a Dask cluster (local or --scheduler): "
        "top-k to .csv/.parquet, or outputs to .npy; resumable",
        description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[1])
    p.add_argument("model", help="an .onnx file, or a built-in model name (with --weights)")
    p.add_argument("images", nargs="+", help="image files and/or directories of images")
    p.add_argument("--out", required=True,
                   help="preds.csv or preds.parquet (path, top-k classes and scores), or "
                   "preds.npy (full outputs, NaN rows for unreadable images)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="address of a running Dask scheduler "
                       "(tcp://host:8786) or a scheduler file (.json)")
    where.add_argument("--workers", type=int, default=None,
                       help="worker processes of the local cluster (default: 1 per 2 cores)")
    p.add_argument("--threads-per-worker", type=int, default=None,
                   help="threads of each local worker (default: cores / workers)")
    p.add_argument("--weights", help=".npz weights of a built-in model (nnlite.save format)")
    p.add_argument("--batch", type=int, default=32, help="images per task and model call "
                   "(default 32)")
    p.add_argument("--topk", type=int, default=5, help="classes per image (default 5)")
    p.add_argument("--size", type=int, default=224, help="crop size S (default 224)")
    p.add_argument("--raw-scores", action="store_true",
                   help="scores are the model's outputs, not softmax probabilities")
    p.add_argument("--restart", action="store_true",
                   help="discard shards left by a different earlier job under OUT.shards/")
    p.add_argument("--keep-shards", action="store_true",
                   help="keep OUT.shards/ after writing OUT")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=cmd_predict)


def collect_images(items):
    """Files as given; directories expanded to their image files (recursive, sorted)."""
    from ..vision import is_image_path

    out = []
    for item in items:
        if os.path.isdir(item):
            found = []
            for root, dirs, files in os.walk(item):
                dirs.sort()
                found += [os.path.join(root, f) for f in files if is_image_path(f)]
            if not found:
                raise ValueError(f"directory {item!r} holds no image files")
            out += sorted(found)
        else:
            out.append(item)
    return out


def _client(args):
    from distributed import Client, LocalCluster

    if args.scheduler:
        if args.scheduler.endswith(".json"):
            return Client(scheduler_file=args.scheduler, timeout="30s"), None
        return Client(args.scheduler, timeout="30s"), None
    cores = os.cpu_count() or 1
    workers = args.workers if args.workers is not None else max(1, cores // 2)
    threads = args.threads_per_worker or max(1, cores // workers)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                           dashboard_address=":0")
    return Client(cluster), cluster


def cmd_predict(args):
    def fail(msg):
        print(f"nnlite predict: error: {msg}", file=sys.stderr)
        return 2

    try:
        from .. import dask as nd
        from .. import vision  # noqa: F401  (fails early without Pillow)
    except ImportError as exc:
        return fail(f"{exc}")
    for name in ("workers", "threads_per_worker", "batch", "topk", "size"):
        v = getattr(args, name)
        if v is not None and v < 1:
            return fail(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if args.scheduler and args.threads_per_worker:
        return fail("--threads-per-worker sets up a local cluster; a --scheduler's workers "
                    "have their own")
    client = cluster = None
    try:
        paths = collect_images(args.images)
        nd._out_format(args.out)
        client, cluster = _client(args)
        stats = nd.predict_to_file(args.model, paths, args.out, client, batch_size=args.batch,
                                   topk=args.topk, softmax=not args.raw_scores,
                                   weights=args.weights, size=args.size, restart=args.restart,
                                   progress=not args.no_progress, keep_shards=args.keep_shards)
    except KeyboardInterrupt:
        print(f"nnlite predict: interrupted; finished shards are kept in "
              f"{args.out}.shards/ and a rerun continues from them", file=sys.stderr)
        return 130
    except (ValueError, TypeError, ImportError, OSError) as exc:
        return fail(str(exc))
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    nworkers = stats.get("workers")
    print(f"wrote {args.out}: {stats['images'] - stats['errors']} images predicted, "
          f"{stats['errors']} unreadable (listed in {nd.errors_path(args.out)}); "
          f"{stats['shards_computed']} shards computed, {stats['shards_done_before']} found "
          f"done; {stats['seconds']:.1f} s" + (f" on {nworkers} worker{'s' if nworkers != 1 else ''}" if nworkers else ""))
    return 0
