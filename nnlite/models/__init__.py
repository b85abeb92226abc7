"""Whole networks: torchvision-compatible GoogLeNet, ResNet, MobileNetV2, and small CNNs.

The torchvision-compatible models have torchvision's module names, state_dict keys and shapes,
so ``model.load_state_dict({k: v.numpy() for k, v in tv_model.state_dict().items()})`` loads a
torchvision checkpoint (construct with the same arguments; GoogLeNet without auxiliary heads).
"""
from .googlenet import GoogLeNet, googlenet  # noqa: F401
from .mobilenet import MobileNetV2, mobilenet_v2  # noqa: F401
from .resnet import (  # noqa: F401
    ResNet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnext50_32x4d,
)
from .small import (  # noqa: F401
    SmallInceptionNet,
    TutorialInceptionNet,
    small_cnn,
    tutorial_inception_net,
)
