"""The global random generator used for parameter init and dropout (``nnlite.manual_seed``)."""
import numpy as np

_rng = np.random.default_rng()


def manual_seed(seed):
    """Reseed nnlite's generator so that init and dropout are reproducible."""
    global _rng
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed expects an int, got {seed!r}")
    _rng = np.random.default_rng(int(seed))
    return _rng


def get_rng():
    return _rng
