"""Small Inception-style CNNs for 8x8 (scikit-learn digits) and 28x28 (MNIST-size) images."""
from .. import nn

__all__ = ["SmallInceptionNet", "small_cnn", "TutorialInceptionNet", "tutorial_inception_net"]


class SmallInceptionNet(nn.Module):
    """stem (BasicConv2d 3x3) -> Inception -> 2x2 max-pool -> Inception -> global average pool
    -> dropout -> fc. Built from ``nn.BasicConv2d`` and ``nn.Inception`` (paper-style 5x5 branch).

    Channels: stem ``width``; inception1 (w, w/2, w/2, w, w/4, w/2, w/2) -> 5w/2; inception2
    (5w/2, w, w, 2w, w/2, w, w) -> 5w. With width=16: 13,746 parameters at 10 classes.

    Shape: (N, in_channels, H, W) -> (N, num_classes); H, W >= 2 (8x8 digits, 28x28 MNIST).
    """

    def __init__(self, in_channels=1, num_classes=10, width=16, dropout=0.2):
        super().__init__()
        if width % 4 or width <= 0:
            raise ValueError(f"SmallInceptionNet: width must be a positive multiple of 4, "
                             f"got {width!r}")
        w = width
        self.stem = nn.BasicConv2d(in_channels, w, kernel_size=3, padding=1)
        self.inception1 = nn.Inception(w, w // 2, w // 2, w, w // 4, w // 2, w // 2,
                                       branch3_kernel_size=5)
        self.pool = nn.MaxPool2d(2)
        c1 = self.inception1.out_channels
        self.inception2 = nn.Inception(c1, w, w, 2 * w, w // 2, w, w, branch3_kernel_size=5)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.inception2.out_channels, num_classes)

    def forward(self, x):
        x = self.inception1(self.stem(x))      # (N, 5w/2, H, W)
        x = self.inception2(self.pool(x))      # (N, 5w, H/2, W/2)
        x = self.avgpool(x).flatten(1)         # (N, 5w)
        return self.fc(self.dropout(x))


def small_cnn(in_channels=1, num_classes=10, **kwargs):
    """A ``SmallInceptionNet`` (for 8x8 or 28x28 single-channel images by default)."""
    return SmallInceptionNet(in_channels=in_channels, num_classes=num_classes, **kwargs)


class TutorialInceptionNet(nn.Module):
    """The MNIST network of the widely used PyTorch Inception tutorial, for 28x28 input:
    conv1 5x5 (1 -> 10) -> max-pool 2 -> ReLU -> InceptionA -> conv2 5x5 (88 -> 20) -> max-pool 2
    -> ReLU -> InceptionA -> flatten (88 * 4 * 4 = 1408) -> fc.

    Shape: (N, in_channels, 28, 28) -> (N, num_classes).
    """

    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(88, 20, kernel_size=5)
        self.incept1 = nn.InceptionA(10)
        self.incept2 = nn.InceptionA(20)
        self.mp = nn.MaxPool2d(2)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(1408, num_classes)

    def forward(self, x):
        x = self.incept1(self.relu(self.mp(self.conv1(x))))  # (N, 88, 12, 12)
        x = self.incept2(self.relu(self.mp(self.conv2(x))))  # (N, 88, 4, 4)
        return self.fc(x.flatten(1))                         # (N, 1408) -> (N, num_classes)


def tutorial_inception_net(in_channels=1, num_classes=10):
    """The tutorial's 28x28 MNIST Inception network (``TutorialInceptionNet``)."""
    return TutorialInceptionNet(in_channels=in_channels, num_classes=num_classes)
