"""onnx's own backend conformance suite (``onnx.backend.test.BackendTest``) on nnlite.

The node tests whose graphs use only the ops of issue #14's list run (selection and the one
table of exclusions with reasons: tests/onnx_backend_cases.py); each compares nnlite's outputs
(values within the case's rtol/atol, shapes and dtypes exactly) with the expected outputs the
onnx package generates from its reference implementation. Skipped without onnx.
"""
import re
import warnings

import pytest

onnx = pytest.importorskip("onnx")

from onnx.backend.test import BackendTest  # noqa: E402
from onnx.backend.test.loader import load_model_tests, load_node_model_tests  # noqa: E402

import onnx_backend_cases as cases  # noqa: E402
from nnlite.onnx import backend as nnlite_backend  # noqa: E402

with warnings.catch_warnings():  # the case generators cast NaN/inf into small types
    warnings.simplefilter("ignore")
    _NODE_CASES = load_node_model_tests()

SELECTED = sorted(c.name for c in _NODE_CASES if cases.included(c.model))
EXCLUDED = sorted(n for n in SELECTED if cases.excluded_reason(n))

_bt = BackendTest(nnlite_backend, __name__)
for _name in SELECTED:
    _bt.include("^" + re.escape(_name) + "_cpu$")
for _kind in ("pytorch-converted", "pytorch-operator"):   # onnx's models converted from PyTorch
    for _case in load_model_tests(kind=_kind):
        _bt.include("^" + re.escape(_case.name) + "_cpu$")


def _skipper(reason):
    def test(self, *args, **kwargs):
        pytest.skip(reason)
    return test




def _prune(cls, keep):
    """Remove the tests ``keep`` rejects; excluded ones skip with their reason."""
    for attr in [a for a in vars(cls) if a.startswith("test_")]:
        base = re.sub(r"_cpu$", "", attr)
        if not attr.endswith("_cpu") or not keep(base):
            delattr(cls, attr)
        elif cases.excluded_reason(base):
            setattr(cls, attr, _skipper(cases.excluded_reason(base)))
    return cls


# the node tests of the selection, and onnx's models converted from PyTorch (modules and
# operators, opsets 6-9). Not run: the "real" (light model-zoo) cases, whose generated weights
# make every output the same uniform softmax (tests/test_onnx_zoo.py runs those architectures
# with random weights against ONNX Runtime instead), and the "simple" cases (sequences,
# strings, training gradients: outside nnlite's scope).
_SELECTED = set(SELECTED)
OnnxBackendNodeModelTest = _prune(_bt.test_cases["OnnxBackendNodeModelTest"],
                                  _SELECTED.__contains__)
OnnxBackendPyTorchConvertedModelTest = _prune(
    _bt.test_cases["OnnxBackendPyTorchConvertedModelTest"], lambda name: True)
OnnxBackendPyTorchOperatorModelTest = _prune(
    _bt.test_cases["OnnxBackendPyTorchOperatorModelTest"], lambda name: True)


def test_selection_covers_the_required_ops():
    """Every op the issue requires at 100 % has node tests selected, none of them excluded."""
    by_op = {}
    for c in _NODE_CASES:
        if c.name in SELECTED:
            for n in c.model.graph.node:
                by_op.setdefault(n.op_type, set()).add(c.name)
    for op in cases.REQUIRED_OPS:
        assert by_op.get(op), f"no node test selected for {op}"
    single = {c.name: {n.op_type for n in c.model.graph.node} for c in _NODE_CASES
              if c.name in SELECTED}
    for name in EXCLUDED:
        ops = single[name]
        required = ops & set(cases.REQUIRED_OPS)
        lowp = re.search("float16|fp16|bf16|softmax_precision", name)   # casts to float16
        assert not required or "_3d" in name or lowp, (
            f"{name} (ops {sorted(ops)}) is excluded although it exercises a required op")


def test_every_exclusion_pattern_is_used_and_has_a_reason():
    for pattern, reason in cases.EXCLUDED.items():
        assert reason and len(reason) > 20, pattern
        names = SELECTED + [a[:-4] for cls in (OnnxBackendPyTorchConvertedModelTest,
                                                OnnxBackendPyTorchOperatorModelTest)
                            for a in vars(cls) if a.startswith("test_")]
        assert any(re.fullmatch(pattern, n) for n in names), f"unused exclusion {pattern}"


def test_selected_node_cases_through_optimize_for_inference():
    """The same cases run through ``optimize_for_inference`` (a plan per input signature; every
    op inside the plan, fused where the planner fuses) must match the expected outputs too."""
    from onnx.backend.test.runner import Runner

    def tensor(item):
        if isinstance(item, onnx.TensorProto):
            return onnx.numpy_helper.to_array(item)
        return item

    failures = []
    for c in _NODE_CASES:
        if c.name not in SELECTED or c.name in EXCLUDED:
            continue
        try:
            rep = nnlite_backend.prepare(c.model, optimized=True)
            for inputs, ref in c.data_sets:
                out = rep.run([tensor(i) for i in inputs])
                Runner.assert_similar_outputs([tensor(r) for r in ref], out, c.rtol, c.atol)
        except Exception as exc:  # noqa: BLE001 - collected and reported together
            failures.append(f"{c.name}: {type(exc).__name__}: {str(exc)[:200]}")
    assert not failures, f"{len(failures)} cases fail optimized:\n" + "\n".join(failures)
