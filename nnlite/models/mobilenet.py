"""MobileNetV2 with torchvision's module names, state_dict keys and shapes.

Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (2018). Blocks:
``nnlite.nn.InvertedResidual`` and ``nnlite.nn.Conv2dNormActivation``.
"""
from .. import nn

__all__ = ["MobileNetV2", "mobilenet_v2"]


def _make_divisible(v, divisor, min_value=None):
    """Round ``v`` to the nearest multiple of ``divisor`` not below 90% of ``v`` (torchvision)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class MobileNetV2(nn.Module):
    """features (stem 3x3/2 conv, 17 inverted residuals, 1x1 conv to 1280) -> global average
    pool -> classifier (Dropout, Linear).

    Shape: (N, 3, H, W) -> (N, num_classes); H, W >= 1 (224 in the paper).
    """

    def __init__(self, num_classes=1000, width_mult=1.0, inverted_residual_setting=None,
                 round_nearest=8, block=None, norm_layer=None, dropout=0.2):
        super().__init__()
        block = nn.InvertedResidual if block is None else block
        norm_layer = nn.BatchNorm2d if norm_layer is None else norm_layer
        input_channel, last_channel = 32, 1280
        if inverted_residual_setting is None:
            inverted_residual_setting = [
                # t, c, n, s
                [1, 16, 1, 1],
                [6, 24, 2, 2],
                [6, 32, 3, 2],
                [6, 64, 4, 2],
                [6, 96, 3, 1],
                [6, 160, 3, 2],
                [6, 320, 1, 1],
            ]
        if len(inverted_residual_setting) == 0 or len(inverted_residual_setting[0]) != 4:
            raise ValueError("inverted_residual_setting should be non-empty or a 4-element list, "
                             f"got {inverted_residual_setting}")
        input_channel = _make_divisible(input_channel * width_mult, round_nearest)
        self.last_channel = _make_divisible(last_channel * max(1.0, width_mult), round_nearest)
        features = [nn.Conv2dNormActivation(3, input_channel, stride=2, norm_layer=norm_layer,
                                            activation_layer=nn.ReLU6)]
        for t, c, n, s in inverted_residual_setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(block(input_channel, output_channel, s if i == 0 else 1,
                                      expand_ratio=t, norm_layer=norm_layer))
                input_channel = output_channel
        features.append(nn.Conv2dNormActivation(input_channel, self.last_channel, kernel_size=1,
                                                norm_layer=norm_layer, activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout),
                                        nn.Linear(self.last_channel, num_classes))

    def forward(self, x):
        x = self.features(x)            # (N, 1280, H/32, W/32)
        x = x.mean((2, 3))  # (N, 1280): adaptive_avg_pool2d(x, 1) flattened, as torchvision
        return self.classifier(x)


def mobilenet_v2(num_classes=1000, **kwargs):
    """MobileNetV2; 3,504,872 parameters at 1000 classes and width 1.0, as torchvision."""
    return MobileNetV2(num_classes=num_classes, **kwargs)
