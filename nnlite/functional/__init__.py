"""``nnlite.nn.functional`` (also ``nnlite.functional``): stateless ops on Tensors.

Import as ``import nnlite.nn.functional as F``.
"""
from .basic import *  # noqa: F401,F403
from .padding import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .activation import *  # noqa: F401,F403
from .vision import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
