"""Output of ``nnlite bench``: aligned text, markdown, CSV (exact integers) and the PNG plot.

Every number comes from a ``nnlite.bench.Study``: counts from ``nnlite.summary`` reports, times
from the interleaved measurements. Ratios of times are medians of per-round (paired) ratios.
"""
import csv
import io
import math

from .bench import FLOPS_DEFINITION, paired_ratio

_NOTE_PAIRS = ("Forward: eval mode, no_grad. Fwd+bwd: train mode, output.sum() back-propagated to "
               "the weights and the input.")


# ------------------------------------------------------------------------------ cells
def _i(v):
    return f"{int(v):,}"


def _ms(s):
    return "-" if not _finite(s) else f"{s * 1e3:.3f}" if s < 0.01 else f"{s * 1e3:.2f}"


def _pct(v):
    return "-" if not _finite(v) else f"{100 * v:.0f}%"


def _x(v):
    return "-" if not _finite(v) else f"{v:.2f}x" if v < 10 else f"{v:.1f}x"


def _f(v, nd=1):
    return "-" if not _finite(v) else f"{v:.{nd}f}"


def _finite(v):
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _shape(t):
    return "x".join(map(str, t)) if t else "-"


def _ai(m):
    return m.report.arithmetic_intensity


def _ref_ratio(m, ref):
    """(variant MACs / ref MACs, median paired variant time / ref time)."""
    macs = m.report.macs / ref.report.macs if ref.report.macs else float("nan")
    t = paired_ratio(m.fwd, ref.fwd) if m.fwd and ref.fwd else float("nan")
    return macs, t


# ------------------------------------------------------------------------------ tables
def _pair_rows(study):
    cols = ["Case", "Variant", "Input", "Params", "MACs", "FLOPs", "Bytes moved", "FLOP/B",
            "Fwd ms", "spread", "GFLOP/s", "Fwd+bwd ms", "spread "]
    rows = []
    for p in study.pairs:
        for m in (p.base, p.alt):
            r = m.report
            rows.append([p.pair.key if m is p.base else "", m.variant.label,
                         _shape(r.input_shape), _i(r.params), _i(r.macs), _i(r.flops),
                         _i(r.bytes_moved), _f(_ai(m)), _ms(m.fwd_s), _pct(_spread(m.fwd)),
                         _f(m.gflops), _ms(m.fwdbwd_s), _pct(_spread(m.fwdbwd))])
    return cols, rows, 3


def _spread(xs):
    from .bench import spread

    return spread(xs) if xs else float("nan")


def _ratio_rows(study):
    cols = ["Case", "MACs saved (theory)", "Fwd time saved", "Fwd+bwd saved", "Realised (fwd)",
            "FLOP/B base", "FLOP/B alt"]
    rows = []
    for p in study.pairs:
        th, fw = p.theory_ratio, p.fwd_ratio
        rows.append([p.pair.key, _x(th), _x(fw), _x(p.fwdbwd_ratio),
                     _pct(fw / th) if _finite(fw) and _finite(th) and th else "-",
                     _f(_ai(p.base)), _f(_ai(p.alt))])
    return cols, rows, 1


def _reading(study):
    """Computed lines for the pairs whose measured forward saving is under 60% or over 150% of
    the MAC ratio, with each side's FLOP/B and GFLOP/s (and a flag when the timings are noisy)."""
    short, beyond = [], []
    for p in study.pairs:
        th, fw = p.theory_ratio, p.fwd_ratio
        if not (_finite(th) and _finite(fw)) or 0.6 * th <= fw <= 1.5 * th:
            continue
        line = (f"- {p.pair.key}: {th:.1f}x fewer MACs, {fw:.2f}x less forward time; "
                f"FLOP/B {_ai(p.base):.1f} -> {_ai(p.alt):.1f}, achieved GFLOP/s "
                f"{p.base.gflops:.1f} -> {p.alt.gflops:.1f}.")
        noise = max(_spread(p.base.fwd), _spread(p.alt.fwd))
        if _finite(noise) and noise > 0.5:
            line += f" Noisy (spread up to {100 * noise:.0f}%): rerun before trusting it."
        (short if fw < 0.6 * th else beyond).append(line)
    lines = []
    if short:
        lines.append("Where FLOPs do not predict time (measured saving < 60% of the MAC ratio): "
                     "the alternative runs at fewer GFLOP/s. 1x1, depthwise and thin convs do "
                     "few FLOPs per byte moved (memory-bound) and more, smaller kernel calls "
                     "(fixed per-call cost).")
        lines += short
    if beyond:
        lines.append("Measured saving > 150% of the MAC ratio: the baseline runs at fewer "
                     "GFLOP/s than the alternative.")
        lines += beyond
    return lines


def _k_rows(study):
    cols = ["Conv", "Input", "Params", "MACs", "FLOP/B", "Fwd ms", "spread", "GFLOP/s",
            "MACs vs 1x1", "time vs 1x1", "im2col ms", "im2col share"]
    ms = study.k_sweep
    ref = next((m for m in ms if m.variant.kernel == 1), ms[0] if ms else None)
    rows = []
    for m in ms:
        macs, t = _ref_ratio(m, ref)
        rows.append([m.variant.label, _shape(m.report.input_shape), _i(m.report.params),
                     _i(m.report.macs), _f(_ai(m)), _ms(m.fwd_s), _pct(_spread(m.fwd)),
                     _f(m.gflops), _x(macs), _x(t), _ms(m.im2col_s) if m.im2col else "skipped",
                     _pct(m.im2col_share)])
    return cols, rows, 2


def _dense3x3(ms, m):
    """The dense 3x3 of the channel sweep with ``m``'s channel count."""
    return next(r for r in ms if r.variant.channels == m.variant.channels
                and r.variant.label.startswith("3x3 "))


def _channel_rows(study):
    cols = ["Conv", "Input", "MACs", "FLOP/B", "Fwd ms", "spread", "GFLOP/s",
            "MACs vs 3x3", "time vs 3x3"]
    rows = []
    ms = study.channels
    for m in ms:
        ref = _dense3x3(ms, m)
        macs, t = _ref_ratio(m, ref)
        rows.append([m.variant.label, _shape(m.report.input_shape), _i(m.report.macs),
                     _f(_ai(m)), _ms(m.fwd_s), _pct(_spread(m.fwd)), _f(m.gflops),
                     _x(macs), _x(t)])
    return cols, rows, 2


def _algorithm_rows(study):
    cols = ["Conv", "Algorithm", "Fwd ms", "spread", "GFLOP/s",
            f"time vs {study.algorithm_names[0]}", "im2col share", "note"]
    rows = []
    ms = study.algorithms
    for m in ms:
        ref = next(r for r in ms if r.variant.label == m.variant.label
                   and r.variant.algorithm == study.algorithm_names[0])
        _, t = _ref_ratio(m, ref) if m.fwd and ref.fwd else (None, float("nan"))
        rows.append([m.variant.label, m.variant.algorithm, _ms(m.fwd_s), _pct(_spread(m.fwd)),
                     _f(m.gflops), _x(t), _pct(m.im2col_share), m.error or ""])
    return cols, rows, 2


def _algorithm_note(study):
    if study.algorithms:
        return None
    return (f"Conv algorithms in this build: {', '.join(study.algorithm_names)} (im2col + GEMM; "
            "no nnlite.conv_algorithm selector). Its im2col share is the k-sweep's "
            "'im2col share' column: the im2col kernel timed alone on the same geometry, "
            "interleaved with the whole conv.")


def _sections(study):
    """(title, table-or-None, notes) in output order."""
    out = []
    if study.pairs:
        out.append(("Classic comparisons: theory (nnlite.summary) beside measurement",
                    _pair_rows(study), [_NOTE_PAIRS, FLOPS_DEFINITION + "."]))
        out.append(("Theory ratio vs measured ratio (baseline / alternative)",
                    _ratio_rows(study), _reading(study)))
    if study.k_sweep:
        algo = study.k_sweep[0].variant.algorithm
        out.append(("Conv time vs kernel size (forward, fixed channels"
                    + (f", {algo} algorithm)" if algo else ")"), _k_rows(study),
                    ["im2col share = median per-round (im2col kernel alone / whole conv); the "
                     "rest is the GEMM and the output write. 1x1 skips im2col."]))
    if study.channels:
        out.append(("1x1 vs 3x3 vs depthwise 3x3 as channels grow (forward)",
                    _channel_rows(study), []))
    note = _algorithm_note(study)
    if study.algorithms:
        out.append(("Per conv algorithm (forward)", _algorithm_rows(study), []))
    elif note and (study.k_sweep or study.config.wants("algorithms")):
        out.append(("Per conv algorithm", None, [note]))
    return out


def _text_table(cols, rows, nleft):
    cells = [cols] + rows
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]

    def line(r):
        return "  ".join(c.ljust(w) if i < nleft else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    return "\n".join([line(cols), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def _md_table(cols, rows, nleft):
    def esc(c):
        return c.replace("|", "\\|")
    align = ["---" if i < nleft else "---:" for i in range(len(cols))]
    return "\n".join("| " + " | ".join(esc(c) for c in r) + " |"
                     for r in [[c.strip() for c in cols], align] + rows)


def _footer(study):
    return (f"Wall time {study.wall_s:.1f} s. Times on a shared machine are noisy: compare "
            "ratios within one run; spread shows the noise of each median.")


def text(study):
    parts = ["\n".join(study.header)]
    for title, table, notes in _sections(study):
        block = [title, "=" * len(title)]
        if table is not None:
            block.append(_text_table(*table))
        block += notes
        parts.append("\n".join(block))
    parts.append(_footer(study))
    return "\n\n".join(parts) + "\n"


def markdown(study):
    parts = ["```\n" + "\n".join(study.header) + "\n```"]
    for title, table, notes in _sections(study):
        block = [f"### {title}", ""]
        if table is not None:
            block += [_md_table(*table), ""]
        block += notes
        parts.append("\n".join(block).rstrip())
    parts.append(_footer(study))
    return "\n\n".join(parts) + "\n"


# ------------------------------------------------------------------------------ CSV
CSV_COLUMNS = ("section", "case", "variant", "role", "algorithm", "kernel", "channels", "batch",
               "input_shape", "output_shape", "params", "macs", "flops", "bytes_moved",
               "arithmetic_intensity", "fwd_s", "fwd_spread", "gflops", "fwdbwd_s",
               "fwdbwd_spread", "im2col_s", "im2col_share", "ref_variant", "macs_vs_ref",
               "time_vs_ref", "rounds", "threads", "backend", "error")


def _g(v):
    return f"{v:.6g}" if _finite(v) else ""


def _csv_rows(study):
    import nnlite

    common = {"rounds": study.config.repeat, "threads": nnlite.get_num_threads(),
              "backend": nnlite.backend(), "batch": study.config.batch}

    def row(m, section, case, role, ref):
        r = m.report
        macs_ref, t_ref = _ref_ratio(m, ref) if ref is not None else (float("nan"),) * 2
        return dict(common, section=section, case=case, variant=m.variant.label, role=role,
                    algorithm=m.variant.algorithm or "", kernel=m.variant.kernel or "",
                    channels=m.variant.channels or "", input_shape=_shape(r.input_shape),
                    output_shape=_shape(r.output_shape), params=r.params, macs=r.macs,
                    flops=r.flops, bytes_moved=r.bytes_moved,
                    arithmetic_intensity=_g(r.arithmetic_intensity), fwd_s=_g(m.fwd_s),
                    fwd_spread=_g(_spread(m.fwd)), gflops=_g(m.gflops),
                    fwdbwd_s=_g(m.fwdbwd_s) if m.fwdbwd else "",
                    fwdbwd_spread=_g(_spread(m.fwdbwd)) if m.fwdbwd else "",
                    im2col_s=_g(m.im2col_s) if m.im2col else "",
                    im2col_share=_g(m.im2col_share),
                    ref_variant=ref.variant.label if ref is not None else "",
                    macs_vs_ref=_g(macs_ref), time_vs_ref=_g(t_ref), error=m.error)

    rows = []
    for p in study.pairs:
        rows.append(row(p.base, "pairs", p.pair.key, "baseline", p.base))
        rows.append(row(p.alt, "pairs", p.pair.key, "alternative", p.base))
    ks = study.k_sweep
    ref = next((m for m in ks if m.variant.kernel == 1), None)
    rows += [row(m, "k-sweep", "k-sweep", "sweep", ref) for m in ks]
    for m in study.channels:
        ref = _dense3x3(study.channels, m)
        rows.append(row(m, "channels", f"C={m.variant.channels}", "sweep", ref))
    for m in study.algorithms:
        ref = next(r for r in study.algorithms if r.variant.label == m.variant.label
                   and r.variant.algorithm == study.algorithm_names[0])
        rows.append(row(m, "algorithms", m.variant.label, "sweep", ref))
    return rows


def csv_text(study, path=None):
    """CSV: one row per variant, exact integer params/MACs/FLOPs/bytes; written to ``path`` too."""
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    wr.writeheader()
    wr.writerows(_csv_rows(study))
    text_ = buf.getvalue()
    if path is not None:
        with open(path, "w", newline="") as fh:
            fh.write(text_)
    return text_


# ------------------------------------------------------------------------------ plot
def require_matplotlib():
    """Import matplotlib's Agg canvas or raise ImportError saying how to install it."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("--plot needs matplotlib, which is not installed: "
                          "pip install 'nnlite[bench]' (or pip install matplotlib)") from None
    return Figure, FigureCanvasAgg


def _empty(ax, title, why):
    ax.set_title(title, fontsize=10)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def _log_y(ax, values):
    """Log y axis with plain 1-2-5 tick labels spanning ``values`` (finite, > 0)."""
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter, NullLocator

    ax.set_yscale("log")
    vals = [v for v in values if _finite(v) and v > 0]
    if not vals:
        return
    lo, hi = min(vals) / 1.5, max(vals) * 1.5
    ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
             for m in (1, 2, 5) if lo <= m * 10.0 ** e <= hi]
    ax.set_ylim(lo, hi)
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_formatter(NullFormatter())


def _plot_pairs(ax, study):
    title = "Classic pairs: saving of the alternative (baseline / alternative)"
    if not study.pairs:
        return _empty(ax, title, "pairs not run")
    keys = [p.pair.key for p in study.pairs]
    series = [("theory (MACs)", [p.theory_ratio for p in study.pairs], "#4c72b0"),
              ("measured forward", [p.fwd_ratio for p in study.pairs], "#dd8452"),
              ("measured fwd+bwd", [p.fwdbwd_ratio for p in study.pairs], "#55a868")]
    width = 0.8 / len(series)
    for j, (label, vals, color) in enumerate(series):
        xs = [i + (j - 1) * width for i in range(len(keys))]
        ax.bar(xs, [v if _finite(v) else 0 for v in vals], width, label=label, color=color)
        for x, v in zip(xs, vals):
            if _finite(v):
                ax.text(x, v, f"{v:.1f}", ha="center", va="bottom", fontsize=6)
    _log_y(ax, [v for _, vals, _ in series for v in vals] + [1.0])
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("times cheaper (log)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)


def _plot_k(ax, study):
    ms = study.k_sweep
    if not ms:
        return _empty(ax, "Conv cost vs kernel size", "k-sweep not run")
    ref = next((m for m in ms if m.variant.kernel == 1), ms[0])
    ks = [m.variant.kernel for m in ms]
    macs = [_ref_ratio(m, ref)[0] for m in ms]
    times = [_ref_ratio(m, ref)[1] for m in ms]
    ax.plot(ks, macs, "o-", label="MACs (theory: k^2)", color="#4c72b0")
    ax.plot(ks, times, "s-", label="measured forward time", color="#dd8452")
    for k, t in zip(ks, times):
        if _finite(t):
            ax.annotate(f"{t:.1f}x", (k, t), textcoords="offset points", xytext=(4, -10),
                        fontsize=7)
    _log_y(ax, macs + times)
    ax.set_xticks(ks)
    ax.set_xlabel("kernel size k")
    ax.set_ylabel("relative to 1x1 (log)")
    shape = _shape(ref.report.input_shape)
    ax.set_title(f"k x k conv {ref.variant.channels}->{ref.variant.channels}, input {shape}: "
                 "cost vs k", fontsize=10)
    ax.legend(fontsize=7)


def _plot_split(ax, study):
    ms = study.k_sweep
    if not ms:
        return _empty(ax, "im2col share", "k-sweep not run")
    ks = [str(m.variant.kernel) for m in ms]
    total = [m.fwd_s * 1e3 for m in ms]
    im2 = [(m.im2col_share * t if _finite(m.im2col_share) else 0.0) for m, t in zip(ms, total)]
    rest = [t - i for t, i in zip(total, im2)]
    ax.bar(ks, im2, color="#c44e52", label="im2col (timed alone)")
    ax.bar(ks, rest, bottom=im2, color="#8172b2", label="rest: GEMM + output")
    for x, m, t in zip(ks, ms, total):
        ax.text(x, t, _pct(m.im2col_share), ha="center", va="bottom", fontsize=7)
    ax.set_xlabel("kernel size k")
    ax.set_ylabel("forward time, ms (median)")
    ax.set_title("Where the k x k forward time goes (im2col share on top)", fontsize=10)
    ax.legend(fontsize=7)


def _plot_channels(ax, study):
    from matplotlib.ticker import NullLocator

    ms = study.channels
    if not ms:
        return _empty(ax, "GFLOP/s vs channels", "channel sweep not run")
    kinds = [("1x1", "#4c72b0"), ("3x3", "#dd8452"), ("depthwise 3x3", "#55a868")]
    _log_y(ax, [m.gflops for m in ms])
    for kind, color in kinds:
        sel = [m for m in ms if m.variant.label.startswith(kind + " ")]
        cs = [m.variant.channels for m in sel]
        gf = [m.gflops for m in sel]
        ais = [_ai(m) for m in sel]
        span = (f"{min(ais):.1f}" if ais and f"{min(ais):.1f}" == f"{max(ais):.1f}"
                else f"{min(ais, default=0):.1f}-{max(ais, default=0):.1f}")
        label = f"{kind}: {span} FLOP/B" if ais else kind
        ax.plot(cs, gf, "o-", color=color, label=label)
    ax.set_xscale("log", base=2)
    chans = sorted({m.variant.channels for m in ms})
    ax.set_xticks(chans)
    ax.set_xticklabels([str(c) for c in chans])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("channels C (C -> C)")
    ax.set_ylabel("achieved GFLOP/s (log)")
    side = ms[0].report.input_shape[-1]
    ax.set_title(f"Achieved GFLOP/s as channels grow ({side}x{side})", fontsize=10)
    ax.legend(fontsize=7)


def _threads_text():
    import nnlite

    n = nnlite.get_num_threads()
    return f"{n} thread" + ("" if n == 1 else "s")


def plot(study, path):
    """Write a 2x2 PNG: pair ratios, k sweep (relative), k-sweep time split, channel sweep."""
    Figure, FigureCanvasAgg = require_matplotlib()
    fig = Figure(figsize=(13, 9), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    _plot_pairs(axes[0][0], study)
    _plot_k(axes[0][1], study)
    _plot_split(axes[1][0], study)
    _plot_channels(axes[1][1], study)
    import nnlite

    title = (f"nnlite {nnlite.__version__} bench: theory vs measured (backend "
             f"{nnlite.backend()}, {_threads_text()}, batch "
             f"{study.config.batch}, median of {study.config.repeat} interleaved rounds)")
    if any("# WARNING" in line for line in study.header):
        title += "\nmachine busier than its cores during the run: times inflated and noisy"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path)
    return path
