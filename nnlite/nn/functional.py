"""``import nnlite.nn.functional as F`` is the same module as ``nnlite.functional``."""
import sys

from .. import functional as _functional

sys.modules[__name__] = _functional
