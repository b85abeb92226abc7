"""An ``onnx.backend`` implementation over nnlite, so onnx's own conformance suite
(``onnx.backend.test.BackendTest``) can run nnlite: ``prepare(model)`` imports the model with
``nnlite.onnx.load`` and ``run(inputs)`` executes it, returning NumPy arrays.

``prepare(model, optimized=True)`` runs the model through ``nnlite.optimize_for_inference``
instead (one compiled plan per input-shape signature). Needs the optional ``onnx`` package.
"""
import numpy as np

from . import load

__all__ = ["NnliteBackend", "NnliteRep", "prepare", "run_model", "supports_device"]

try:
    from onnx.backend.base import Backend as _Backend, BackendRep as _BackendRep
except ImportError:  # the module stays importable without onnx; prepare() then raises
    _Backend = _BackendRep = object


class NnliteRep(_BackendRep):
    """A prepared model: ``run(inputs)`` -> tuple of ndarrays (one per graph output)."""

    def __init__(self, module, optimized=False):
        self.module = module
        self.runner = module
        if optimized:
            from ..inference import optimize_for_inference

            self.runner = optimize_for_inference(module)

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            inputs = [inputs[name] for name in self.module.input_names]
        elif isinstance(inputs, np.ndarray) or not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        arrays = [np.asarray(x) for x in inputs]
        if hasattr(self.runner, "run_arrays"):
            return tuple(self.runner.run_arrays(*arrays))
        out = self.runner(*arrays)
        outs = out if isinstance(out, tuple) else (out,)
        return tuple(np.asarray(o.data) for o in outs)


class NnliteBackend(_Backend):
    """``onnx.backend.base.Backend`` running models with nnlite on the CPU."""

    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        if not cls.supports_device(device):
            raise ValueError(f"nnlite runs on the CPU only, not on {device!r}")
        return NnliteRep(load(model), optimized=bool(kwargs.get("optimized", False)))

    @classmethod
    def run_model(cls, model, inputs, device="CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device="CPU", outputs_info=None, **kwargs):
        raise NotImplementedError("nnlite runs whole models; wrap the node in a graph")

    @classmethod
    def supports_device(cls, device):
        return str(device).upper().startswith("CPU")


prepare = NnliteBackend.prepare
run_model = NnliteBackend.run_model
supports_device = NnliteBackend.supports_device
