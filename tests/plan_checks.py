"""Helpers of the plan tests that build small ONNX graphs: the model, and one run of it
plain, optimized and by onnx's ReferenceEvaluator (the independent oracle)."""
import numpy as np
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper as onh
from onnx.reference import ReferenceEvaluator

import nnlite
import nnlite.onnx as nxo


def make_model(nodes, inputs, inits, outputs=("y",), opset=17):
    """float32 graph inputs ``(name, shape)``, initializers ``{name: array}``, any outputs."""
    vis = [oh.make_tensor_value_info(n, TP.FLOAT, list(s)) for n, s in inputs]
    outs = [oh.make_tensor_value_info(o, TP.FLOAT, None) for o in outputs]
    graph = oh.make_graph(nodes, "g", vis, outs,
                          [onh.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)
    return model


def plain_and_optimized(model, feeds):
    """(plain outputs, optimized outputs, the optimized module) of ``model`` imported by
    nnlite and run on ``feeds`` ((name, array) pairs), both as tuples."""
    mod = nxo.load(model.SerializeToString())
    arrays = [a for _, a in feeds]
    plain = mod(*arrays)
    fast = nnlite.optimize_for_inference(mod)
    opt = fast(*arrays)
    return ((plain if isinstance(plain, tuple) else (plain,)),
            (opt if isinstance(opt, tuple) else (opt,)), fast)


def run_all(model, feeds, rtol=1e-5, atol=1e-5):
    """(plan, plain outputs): the plain and optimized nnlite runs each agree with onnx's
    ReferenceEvaluator, and with each other."""
    plain, opt, fast = plain_and_optimized(model, feeds)
    ref = ReferenceEvaluator(model).run(None, dict(feeds))
    for p, o, r in zip(plain, opt, ref):
        np.testing.assert_allclose(p.data, r, rtol=rtol, atol=atol)
        np.testing.assert_allclose(o.data, r, rtol=rtol, atol=atol)
        np.testing.assert_allclose(o.data, p.data, rtol=rtol, atol=atol)
    (plan, _), = fast._plans.values()
    return plan, plain
