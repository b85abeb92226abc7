"""ResNet / ResNeXt with torchvision's module names, state_dict keys and shapes.

He et al., "Deep Residual Learning for Image Recognition" (2015); the bottleneck puts its stride
on the 3x3 conv (torchvision's "v1.5"). Blocks: ``nnlite.nn.BasicBlock`` / ``Bottleneck``.
"""
from .. import nn
from ..nn.blocks import conv1x1
from ..nn.module import norm_act

__all__ = ["ResNet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
           "resnext50_32x4d"]


class ResNet(nn.Module):
    """conv1 7x7/2 -> bn1 -> relu -> maxpool 3x3/2 -> layer1..layer4 -> avgpool -> fc.

    ``block`` is ``nn.BasicBlock`` or ``nn.Bottleneck``; ``layers`` the block count per stage.
    ``zero_init_residual`` sets the last BN weight of every residual branch to 0.

    Shape: (N, 3, H, W) -> (N, num_classes); H, W >= 1 (224 in the paper).
    """

    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False, groups=1,
                 width_per_group=64, replace_stride_with_dilation=None, norm_layer=None):
        super().__init__()
        norm_layer = nn.BatchNorm2d if norm_layer is None else norm_layer
        self._norm_layer = norm_layer
        if len(layers) != 4:
            raise ValueError(f"ResNet: layers must have 4 entries, got {layers!r}")
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError("replace_stride_with_dilation should be None or a 3-element tuple, "
                             f"got {replace_stride_with_dilation!r}")
        self.inplanes = 64
        self.dilation = 1
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2, replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], 2, replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], 2, replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        if zero_init_residual:  # each residual branch starts as zero: the block is the identity
            for m in self.modules():
                if isinstance(m, nn.Bottleneck):
                    m.bn3.weight.data[...] = 0
                elif isinstance(m, nn.BasicBlock):
                    m.bn2.weight.data[...] = 0

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        norm_layer = self._norm_layer
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       norm_layer(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width,
                        previous_dilation, norm_layer)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups,
                                base_width=self.base_width, dilation=self.dilation,
                                norm_layer=norm_layer))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(norm_act(self.bn1, self.relu, self.conv1(x)))  # (N, 64, H/4, W/4)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)                                     # (N, 512 * e, H/32, W/32)
        x = self.avgpool(x).flatten(1)                         # (N, 512 * e)
        return self.fc(x)


def resnet18(num_classes=1000, **kwargs):
    """ResNet-18: BasicBlock x [2, 2, 2, 2]; 11,689,512 parameters at 1000 classes."""
    return ResNet(nn.BasicBlock, [2, 2, 2, 2], num_classes=num_classes, **kwargs)


def resnet34(num_classes=1000, **kwargs):
    """ResNet-34: BasicBlock x [3, 4, 6, 3]."""
    return ResNet(nn.BasicBlock, [3, 4, 6, 3], num_classes=num_classes, **kwargs)


def resnet50(num_classes=1000, **kwargs):
    """ResNet-50: Bottleneck x [3, 4, 6, 3]; 25,557,032 parameters at 1000 classes."""
    return ResNet(nn.Bottleneck, [3, 4, 6, 3], num_classes=num_classes, **kwargs)


def resnet101(num_classes=1000, **kwargs):
    """ResNet-101: Bottleneck x [3, 4, 23, 3]."""
    return ResNet(nn.Bottleneck, [3, 4, 23, 3], num_classes=num_classes, **kwargs)


def resnet152(num_classes=1000, **kwargs):
    """ResNet-152: Bottleneck x [3, 8, 36, 3]."""
    return ResNet(nn.Bottleneck, [3, 8, 36, 3], num_classes=num_classes, **kwargs)


def resnext50_32x4d(num_classes=1000, **kwargs):
    """ResNeXt-50 32x4d: Bottleneck x [3, 4, 6, 3] with 32 groups of width 4."""
    return ResNet(nn.Bottleneck, [3, 4, 6, 3], num_classes=num_classes, groups=32,
                  width_per_group=4, **kwargs)
