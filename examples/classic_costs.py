"""The classic CNN cost comparisons, counted by ``nnlite.summary`` on real modules.

    python examples/classic_costs.py > docs/classic_costs.md

Every number below comes from a forward pass through the modules (batch 1); nothing is typed in.
Convs are bias-free and, unless the row says BatchNorm, have no BatchNorm: params and MACs are
then exactly the weight counts that the usual write-ups quote. MACs = multiply-accumulates of the
conv weights (FLOPs = 2 x MACs).
"""
import nnlite
import nnlite.nn as nn


def plain_conv(cin, cout, **kwargs):
    return nn.Conv2d(cin, cout, bias=False, **kwargs)


def cost(module, shape):
    rep = nnlite.summary(module, shape)
    return rep.params, rep.macs, rep.output_shape


def comparisons():
    """[(title, [(variant, module, input_shape), ...]), ...]"""
    c3a = (192, 64, 96, 128, 16, 32)
    return [
        ("1. GoogLeNet Inception 3a on 28x28x192 (64 1x1, 128 3x3, 32 5x5, 3x3 max-pool)", [
            ("naive, figure (a): no 1x1 reductions",
             nn.Inception(*c3a, 0, conv_block=plain_conv, reduce=False, branch3_kernel_size=5),
             (1, 192, 28, 28)),
            ("1x1 reductions (96, 16) + pool projection 32",
             nn.Inception(*c3a, 32, conv_block=plain_conv, branch3_kernel_size=5),
             (1, 192, 28, 28)),
            ("1x1 reductions (96, 16), no pool projection",
             nn.Inception(*c3a, 0, conv_block=plain_conv, branch3_kernel_size=5),
             (1, 192, 28, 28)),
            ("torchvision's block (BasicConv2d, 3x3 in the '5x5' branch)",
             nn.Inception(*c3a, 32), (1, 192, 28, 28)),
        ]),
        ("2. 100x100x128 -> 256 channels by a 5x5 conv", [
            ("5x5 directly", plain_conv(128, 256, kernel_size=5, padding=2), (1, 128, 100, 100)),
            ("1x1 to 32, then 5x5",
             nn.Sequential(plain_conv(128, 32, kernel_size=1),
                           plain_conv(32, 256, kernel_size=5, padding=2)), (1, 128, 100, 100)),
        ]),
        ("3. The 5x5 branch alone: 28x28x192 -> 32 channels", [
            ("5x5 directly", plain_conv(192, 32, kernel_size=5, padding=2), (1, 192, 28, 28)),
            ("1x1 to 16, then 5x5",
             nn.Sequential(plain_conv(192, 16, kernel_size=1),
                           plain_conv(16, 32, kernel_size=5, padding=2)), (1, 192, 28, 28)),
        ]),
        ("4. ResNet bottleneck 256 -> 64 -> 64 -> 256 vs a plain 3x3 256 -> 256 at 56x56", [
            ("bottleneck convs (1x1, 3x3, 1x1)",
             nn.Sequential(plain_conv(256, 64, kernel_size=1),
                           plain_conv(64, 64, kernel_size=3, padding=1),
                           plain_conv(64, 256, kernel_size=1)), (1, 256, 56, 56)),
            ("nn.Bottleneck(256, 64) (with BatchNorm)", nn.Bottleneck(256, 64), (1, 256, 56, 56)),
            ("plain 3x3", plain_conv(256, 256, kernel_size=3, padding=1), (1, 256, 56, 56)),
        ]),
        ("5. A 3x3 conv 16 -> 32 on 32x32: standard vs depthwise-separable", [
            ("standard 3x3", plain_conv(16, 32, kernel_size=3, padding=1), (1, 16, 32, 32)),
            ("depthwise 3x3 + pointwise 1x1",
             nn.DepthwiseSeparableConv2d(16, 32, 3, padding=1, bias=False), (1, 16, 32, 32)),
        ]),
        ("6a. A 5x5 conv vs two stacked 3x3, 64 -> 64 channels on 28x28", [
            ("5x5", plain_conv(64, 64, kernel_size=5, padding=2), (1, 64, 28, 28)),
            ("two 3x3 (nn.StackedConv3x3)", nn.StackedConv3x3(64, 64, conv_block=plain_conv),
             (1, 64, 28, 28)),
        ]),
        ("6b. A 7x7 conv vs 1x7 then 7x1, 64 -> 64 channels on 17x17", [
            ("7x7", plain_conv(64, 64, kernel_size=7, padding=3), (1, 64, 17, 17)),
            ("1x7 then 7x1 (nn.AsymmetricConv2d)",
             nn.AsymmetricConv2d(64, 64, 7, conv_block=plain_conv), (1, 64, 17, 17)),
        ]),
        ("7. Grouped 3x3 conv 256 -> 256 on 14x14: params fall by the group count", [
            (f"groups={g}", plain_conv(256, 256, kernel_size=3, padding=1, groups=g),
             (1, 256, 14, 14)) for g in (1, 2, 4, 8, 32, 256)
        ]),
    ]


def markdown():
    lines = ["# The classic cost comparisons, computed by `nnlite.summary`", "",
             __doc__.split("\n\n", 2)[2].strip(), ""]
    for title, variants in comparisons():
        lines += [f"## {title}", "", "| variant | output | params | MACs | MACs vs first |",
                  "| --- | --- | ---: | ---: | ---: |"]
        base = None
        for name, module, shape in variants:
            params, macs, out = cost(module, shape)
            base = base or macs
            lines.append(f"| {name} | {'x'.join(map(str, out))} | {params:,} | {macs:,} | "
                         f"{macs / base:.3f} |")
        lines.append("")
    lines += ["## Whole models at 1x3x224x224 (`nnlite.models`, torchvision-compatible)", "",
              "MACs count conv and linear weights only; FLOPs (all) add bias, BatchNorm, "
              "pooling, activations and residual additions (`count_all=True`).", "",
              "| model | params | MACs | FLOPs (2 x MACs) | FLOPs (all) |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for name in ("googlenet", "resnet18", "resnet50", "mobilenet_v2"):
        rep = nnlite.summary(getattr(nnlite.models, name)(), (1, 3, 224, 224), count_all=True)
        lines.append(f"| {name} | {rep.params:,} | {rep.macs:,} | {2 * rep.macs:,} | "
                     f"{rep.flops:,} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
