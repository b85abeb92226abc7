"""Loss modules (CrossEntropyLoss, NLLLoss, MSELoss) over ``nnlite.functional``'s losses.

As in PyTorch, a class ``weight`` is a registered buffer (so it appears in the state_dict).
"""
from .. import functional as F
from ..functional._checks import float_tensor, reduction_string
from .module import Module

__all__ = ["CrossEntropyLoss", "NLLLoss", "MSELoss"]


class _Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction="mean"):
        super().__init__()
        self.reduction = reduction_string(size_average, reduce, reduction, stacklevel=4)


class _WeightedLoss(_Loss):
    def __init__(self, weight=None, size_average=None, reduce=None, reduction="mean"):
        super().__init__(size_average, reduce, reduction)
        cls = type(self).__name__
        self.register_buffer("weight", None if weight is None
                             else float_tensor(weight, cls, "weight"))


class NLLLoss(_WeightedLoss):
    """``F.nll_loss`` as a module.

    Shape: input (N, C) / (N, C, d1, ...) / (C,); target (N,) / (N, d1, ...) / ();
    output () or, with reduction='none', the target's shape.
    """

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class CrossEntropyLoss(_WeightedLoss):
    """``F.cross_entropy`` (log_softmax + nll_loss, optional label smoothing) as a module.

    Shape: input (N, C) / (N, C, d1, ...) / (C,); target class indices (N,) / (N, d1, ...) / ()
    or probabilities of the input's shape; output () or, with reduction='none', per element.
    """

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean", label_smoothing=0.0):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, weight=self.weight,
                               ignore_index=self.ignore_index, reduction=self.reduction,
                               label_smoothing=self.label_smoothing)


class MSELoss(_Loss):
    """Mean (or summed, or per-element) squared error.

    Shape: input (*), target of the same shape; output () or, with reduction='none', (*).
    """

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)
