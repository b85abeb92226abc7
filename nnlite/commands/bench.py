"""``nnlite bench``: the 1×1 vs k×k cost study (theory beside measurement); see nnlite/bench.py."""
import sys


def register(subparsers):
    from ..bench import SECTIONS

    p = subparsers.add_parser(
        "bench", help="1x1 vs kxk cost study: params/MACs/bytes beside measured time, with plots",
        description="Runs the classic conv comparisons (Inception 3a, 1x1 reductions, bottleneck, "
                    "depthwise-separable, factorized and grouped convs) as real modules and prints "
                    "theory (nnlite.summary) beside measured forward / forward+backward time, then "
                    "sweeps over kernel size, channels and conv algorithms. Times are medians of "
                    "interleaved rounds; on a shared machine they are noisy.")
    p.add_argument("--quick", action="store_true",
                   help="3 rounds, shorter samples, fewer sweep points (under a minute); the classic "
                        "comparisons keep the write-ups' input sizes")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="batch size (default 1)")
    p.add_argument("--threads", type=int, default=None, metavar="N", dest="bench_threads",
                   help="threads for nnlite's kernels and the BLAS")
    p.add_argument("--repeat", type=int, default=None, metavar="R",
                   help="interleaved timing rounds (default 5, --quick 3)")
    p.add_argument("--warmup", type=int, default=1, metavar="W", help="warm-up calls (default 1)")
    p.add_argument("--scale", type=float, default=None, metavar="S",
                   help="multiply every spatial size by S (default 1; other values change the "
                        "write-ups' geometries and so their MAC counts)")
    p.add_argument("--only", default=None, metavar="KEYS",
                   help="comma-separated sections to run: " + ", ".join(SECTIONS))
    p.add_argument("--csv", default=None, metavar="PATH",
                   help="write one row per variant (exact integer params/MACs) to PATH")
    p.add_argument("--markdown", action="store_true", help="print markdown tables instead")
    p.add_argument("--plot", default=None, metavar="PATH.png",
                   help="save the plots (needs matplotlib: pip install 'nnlite[bench]')")
    p.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    p.set_defaults(func=cmd_bench)


def _fail(msg):
    print(f"nnlite bench: error: {msg}", file=sys.stderr)
    return 2


def cmd_bench(args):
    import nnlite

    from .. import bench

    if args.plot is not None:
        from .._benchout import require_matplotlib

        try:
            require_matplotlib()   # fail before measuring, not after
        except ImportError as exc:
            return _fail(str(exc))
    only = tuple(s.strip() for s in args.only.split(",") if s.strip()) if args.only else ()
    cfg = bench.Config(quick=args.quick, batch=args.batch, repeat=args.repeat,
                       warmup=args.warmup, scale=args.scale, only=only,
                       progress=not args.no_progress)
    try:
        cfg = cfg.resolved()
        if args.bench_threads is not None:
            nnlite.set_num_threads(args.bench_threads)
    except (ValueError, TypeError) as exc:
        return _fail(str(exc))
    study = bench.run(cfg)
    print(study.to_markdown() if args.markdown else study.to_text(), end="")
    if args.csv:
        study.to_csv(args.csv)
        print(f"CSV: {args.csv}")
    if args.plot:
        study.plot(args.plot)
        print(f"Plot: {args.plot}")
    return 0
