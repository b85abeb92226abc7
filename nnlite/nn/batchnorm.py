"""BatchNorm1d / BatchNorm2d with PyTorch 2.13's arguments, buffers and state_dict
(docs/semantics.md §9.2-9.3).

state_dict keys, in order: weight, bias (when affine; bias also needs ``bias=True``),
running_mean, running_var, num_batches_tracked (int64, 0-d) (when track_running_stats).
"""
import numpy as np

from .. import functional as F
from ..functional._checks import float_tensor
from ..functional.normalization import _batch_norm
from ..tensor import Tensor
from . import init
from .module import Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    _version = 2

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, device=None, dtype=None, *, bias=True):
        from .layers import _check_size, _factory_dtype

        super().__init__()
        cls = type(self).__name__
        self.num_features = _check_size(num_features, "num_features", cls)
        dt = _factory_dtype(device, dtype, cls)
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        c = self.num_features
        if affine:
            self.weight = Parameter(np.empty(c, dtype=dt))
            if bias:
                self.bias = Parameter(np.empty(c, dtype=dt))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(c, dtype=dt)))
            self.register_buffer("running_var", Tensor(np.ones(c, dtype=dt)))
            self.register_buffer("num_batches_tracked", Tensor(np.zeros((), dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def _check_input_dim(self, input):  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, input):
        return self._forward(input)

    def _relu_fusable(self):
        """True when a ReLU applied right after this module may run inside its own BatchNorm
        node (``_forward(x, relu=True)``): in training mode only (where the native kernels gain
        from it; in eval mode the inference tracer and planner see the two ops and fold the
        BatchNorm into the conv), ``forward`` not overridden."""
        return self.training and type(self).forward is _BatchNorm.forward

    def _fuses_relu(self, nxt):
        """True when ``nxt`` (the next module of a Sequential) is a plain nn.ReLU that this
        module applies inside its own BatchNorm node (see ``_relu_fusable``)."""
        return self._relu_fusable() and type(nxt).__dict__.get("_plain_relu", False)

    def _running_factor(self):
        """The exponential average factor of this forward's running-stat update; in training
        mode with tracked statistics it counts the batch (num_batches_tracked += 1)."""
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.data += 1
            if self.momentum is None:                   # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.data)
        return factor

    def _forward(self, input, relu=False):
        input = float_tensor(input, type(self).__name__)
        self._check_input_dim(input)
        factor = self._running_factor()
        if self.training:
            bn_training = True
        else:
            bn_training = self.running_mean is None and self.running_var is None
        use_buffers = not self.training or self.track_running_stats
        return _batch_norm(input,
                           self.running_mean if use_buffers else None,
                           self.running_var if use_buffers else None,
                           self.weight, self.bias, bn_training, factor, self.eps, relu)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over N (and L) per feature.

    Train: y = (x - mean) / sqrt(var_biased + eps) * weight + bias; running stats
    r <- (1 - m) r + m * stat (unbiased var; m = 1 / num_batches_tracked if momentum is None).
    Eval: the running stats replace the batch stats.

    Shape: input (N, C) or (N, C, L) -> same.
    """

    def _check_input_dim(self, input):
        if input.ndim not in (2, 3):
            raise ValueError(f"expected 2D or 3D input (got {input.ndim}D input)")


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, H, W) per channel (formulas as BatchNorm1d,
    docs/semantics.md §9.2).

    Shape: input (N, C, H, W) -> same.
    """

    def _check_input_dim(self, input):
        if input.ndim != 4:
            raise ValueError(f"expected 4D input (got {input.ndim}D input)")
