"""Modules with PyTorch's names, arguments and state_dict keys."""
from . import functional, init  # noqa: F401
from .module import Identity, Module, ModuleList, Parameter, Sequential  # noqa: F401
from .layers import *  # noqa: F401,F403
from .activation import *  # noqa: F401,F403
from .upsampling import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .blocks import *  # noqa: F401,F403
