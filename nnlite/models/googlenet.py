"""GoogLeNet (Inception v1) with torchvision's module names, state_dict keys and shapes.

Szegedy et al., "Going Deeper with Convolutions" (2014). The auxiliary classifiers are not built
(``aux1`` / ``aux2`` are None, as torchvision with ``aux_logits=False``), so the state_dict of a
torchvision ``googlenet(aux_logits=False)`` — or one with the ``aux1.*``/``aux2.*`` keys
removed — loads strictly.
"""
import nnlite

from .. import nn

__all__ = ["GoogLeNet", "googlenet"]


class GoogLeNet(nn.Module):
    """GoogLeNet without auxiliary heads.

    ``branch3_kernel_size`` is the kernel of the Inception branch the paper calls 5x5:
    3 reproduces torchvision (and its pretrained weights); 5 builds the paper's network (its
    parameter count then differs). ``transform_input=True`` applies torchvision's re-normalisation
    of ImageNet-normalised input (needed with torchvision's pretrained weights).

    Shape: (N, 3, H, W) -> (N, num_classes); H, W >= 15 (224 in the paper).
    """

    def __init__(self, num_classes=1000, transform_input=False, dropout=0.2,
                 branch3_kernel_size=3):
        super().__init__()
        self.aux_logits = False
        self.transform_input = transform_input

        def inception(*channels):
            return nn.Inception(*channels, branch3_kernel_size=branch3_kernel_size)

        self.conv1 = nn.BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = nn.BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = nn.BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception3a = inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

        self.inception4a = inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = inception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)

        self.inception5a = inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = inception(832, 384, 192, 384, 48, 128, 128)

        self.aux1 = None
        self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)

    def _transform_input(self, x):
        if not self.transform_input:
            return x
        chans = [x[:, i:i + 1] * (std / 0.5) + (mean - 0.5) / 0.5
                 for i, (mean, std) in enumerate(((0.485, 0.229), (0.456, 0.224),
                                                  (0.406, 0.225)))]
        return nnlite.cat(chans, 1)

    def forward(self, x):
        x = self._transform_input(x)
        x = self.maxpool1(self.conv1(x))              # (N, 64, H/4, W/4)
        x = self.maxpool2(self.conv3(self.conv2(x)))  # (N, 192, H/8, W/8)
        x = self.maxpool3(self.inception3b(self.inception3a(x)))  # (N, 480, H/16, W/16)
        x = self.inception4a(x)
        x = self.inception4b(x)
        x = self.inception4c(x)
        x = self.inception4d(x)
        x = self.maxpool4(self.inception4e(x))        # (N, 832, H/32, W/32)
        x = self.inception5b(self.inception5a(x))     # (N, 1024, H/32, W/32)
        x = self.avgpool(x).flatten(1)                # (N, 1024)
        return self.fc(self.dropout(x))


def googlenet(num_classes=1000, **kwargs):
    """GoogLeNet (no auxiliary heads); 6,624,904 parameters at num_classes=1000, as torchvision.

    Keyword arguments go to ``GoogLeNet`` (``transform_input``, ``dropout``,
    ``branch3_kernel_size``).
    """
    return GoogLeNet(num_classes=num_classes, **kwargs)
