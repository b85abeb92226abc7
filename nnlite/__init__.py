"""nnlite: a from-scratch CPU convolution engine on NumPy with Cython/C kernels.

>>> import nnlite, nnlite.nn as nn, nnlite.nn.functional as F
>>> x = nnlite.tensor(np.random.rand(1, 3, 32, 32).astype("float32"), requires_grad=True)
>>> y = nn.Conv2d(3, 8, 3, padding=1)(x).relu().sum(); y.backward()
"""
__version__ = "0.1.0"


def _thread_policy():
    # No two thread pools spinning on the same cores (README, "Backends and threads"):
    # - OpenMP workers sleep (futex) between parallel regions instead of spin-waiting: on a
    #   loaded or shared machine a spinning team turns a 1 ms 2-thread conv into 10-40 ms.
    #   libgomp reads this once, when the first extension loads it, so it is set before any
    #   extension import.
    # - OpenBLAS workers spin ~0.1 s after every BLAS call (2**28 cycles) and halve the speed of
    #   the OpenMP conv that follows; 4 makes them sleep at once. OpenBLAS reads it when NumPy
    #   loads it: effective when nnlite is imported before NumPy (else export it).
    # Values already in the environment are left alone. Returns the OpenBLAS idle policy in
    # effect, for ``nnlite info``.
    import os
    import sys

    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    preset = os.environ.get("OPENBLAS_THREAD_TIMEOUT")
    if preset is not None:
        return f"OPENBLAS_THREAD_TIMEOUT={preset} (from the environment)"
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = "4"
    if "numpy" in sys.modules:
        return ("OpenBLAS default (workers spin ~0.1 s after each threaded call): NumPy was "
                "imported before nnlite; import nnlite first or export OPENBLAS_THREAD_TIMEOUT=4")
    return "OPENBLAS_THREAD_TIMEOUT=4 (set by nnlite: idle workers sleep at once)"


_BLAS_IDLE = _thread_policy()


# glibc malloc keeps this much free memory at the top of its heap instead of returning it to
# the system (M_TOP_PAD). By default it gives back every freed stretch above 128 KB, and the
# next step's temporaries fault the same pages in again: the digits example's training step (a
# few hundred KB per activation) took 285-450 page faults per step, 0.6 with this setting,
# and ran 1.2-1.4x faster (KVM, AMD EPYC Zen 4). The cost is up to this much memory kept
# resident after a peak.
MALLOC_TOP_PAD = 64 << 20


def _malloc_policy():
    # NNLITE_MALLOC_TOP_PAD=<bytes> overrides the pad; 0 leaves malloc alone. Only glibc has
    # mallopt's M_TOP_PAD; elsewhere nothing is changed. Returns the policy, for ``nnlite info``.
    import ctypes
    import os
    import sys

    env = os.environ.get("NNLITE_MALLOC_TOP_PAD")
    try:
        pad = MALLOC_TOP_PAD if env is None else int(env)
    except ValueError:
        return f"malloc left alone (NNLITE_MALLOC_TOP_PAD={env!r} is not an integer)"
    if pad <= 0:
        return "malloc left alone (NNLITE_MALLOC_TOP_PAD=0)"
    if not sys.platform.startswith("linux"):
        return "malloc left alone (not glibc)"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "malloc left alone (not glibc)"
    m_top_pad = -2
    if mallopt(m_top_pad, min(pad, 2 ** 31 - 1)) != 1:
        return "malloc left alone (mallopt refused M_TOP_PAD)"
    return f"glibc M_TOP_PAD = {pad >> 20} MB (freed heap memory kept for reuse)"


_MALLOC = _malloc_policy()

from ._config import (  # noqa: F401
    available_backends,
    backend,
    get_num_threads,
    set_num_threads,
    using_backend,
)
from ._random import manual_seed  # noqa: F401
from ._algorithms import available_conv_algorithms, conv_algorithm, get_conv_algorithm  # noqa
from .autograd import Function, enable_grad, is_grad_enabled, no_grad, set_grad_enabled  # noqa: F401
from .tensor import Tensor, cat, stack, tensor  # noqa: F401
from . import kernels  # noqa: F401,E402
from . import functional  # noqa: F401,E402
from . import nn  # noqa: F401,E402
from . import ops  # noqa: F401,E402
from . import optim  # noqa: F401,E402


def _apply_env_threads():
    # NNLITE_NUM_THREADS applies to the BLAS too; otherwise the BLAS keeps its own default
    import os

    if os.environ.get("NNLITE_NUM_THREADS"):
        set_num_threads(get_num_threads())


_apply_env_threads()
from .io import load, save  # noqa: E402
from .summary import summary  # noqa: E402
from . import models  # noqa: E402
from .inference import optimize_for_inference  # noqa: E402
