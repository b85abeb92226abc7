"""Which of onnx's backend node tests nnlite's conformance run includes, and the excluded ones
with their reasons (the one place they are listed). Used by tests/test_onnx_backend.py.

Included: every node test whose graph uses only the ops of ``INCLUDED_OPS`` (the 1-D/2-D
vision op set of issue #14), default domain. Excluded: ``EXCLUDED`` (regex -> reason).
"""
import re

INCLUDED_OPS = frozenset("""
Relu LeakyRelu PRelu Elu Selu Celu Sigmoid HardSigmoid HardSwish Tanh Softplus Softsign Gelu
Mish Erf ThresholdedRelu
Add Sub Mul Div Pow Mod Sqrt Reciprocal Neg Abs Exp Log Floor Ceil Round Sign Min Max Sum Mean
Where Equal Greater GreaterOrEqual Less LessOrEqual Not And Or Clip Cast CastLike
Shape Size Reshape Flatten Transpose Squeeze Unsqueeze Concat Split Slice Gather GatherElements
GatherND
Expand Tile ConstantOfShape Constant Range Identity Dropout ArgMax ArgMin TopK
ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL2 ReduceL1 ReduceSumSquare
ReduceLogSumExp
BatchNormalization InstanceNormalization LayerNormalization GroupNormalization LRN
LpNormalization
Conv ConvTranspose MaxPool AveragePool LpPool GlobalAveragePool GlobalMaxPool GlobalLpPool
MaxUnpool RoiAlign MaxRoiPool Pad
Resize Upsample DepthToSpace SpaceToDepth
Gemm MatMul Softmax LogSoftmax Hardmax
""".split())

# ops whose node tests must all pass (issue #14 "done when"); none of them may be excluded
REQUIRED_OPS = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool",
                "GlobalMaxPool", "LpPool", "BatchNormalization", "Relu", "Clip", "Gemm",
                "Concat", "Add", "Softmax")

_LOWP = ("float16, bfloat16, float8/float4/int4/uint4/int2/uint2 and string tensors: nnlite "
         "computes in float32/float64 (and integer/bool for index ops)")

_3D = ("3-D (volumetric) convolution/pooling: nnlite runs 1-D and 2-D windows; the importer "
       "refuses these models with a clear OnnxImportError")
_STRING = "string tensors: nnlite computes on numbers only"
_SEQ = "sequence and optional types: nnlite graphs carry tensors only"

# regex (matched against the whole test name without the _cpu suffix) -> reason
EXCLUDED = {
    r"test_(averagepool|maxpool|lppool|convtranspose|conv)_3d.*": _3D,
    r"test_(AvgPool3d|Conv3d|MaxPool3d).*": _3D,            # pytorch-converted
    r"test_cast(like)?_.*(FLOAT16|BFLOAT16|FLOAT8|E8M0|INT4|UINT4|INT2|UINT2|FLOAT4).*": _LOWP,
    r"test_.*_(float16|bfloat16|fp16|bf16)(_.*)?": _LOWP,
    r"test_attention_.*_softmax_precision(_expanded)?": _LOWP,   # casts to float16
    r"test_equal_string.*": _STRING,
    r"test_identity_(sequence|opt)": _SEQ,
    r"test_training_dropout(_default)?(_mask)?": (
        "training-mode Dropout with ratio > 0 draws a random mask (the expected output comes "
        "from NumPy's generator); nnlite imports models for inference and raises a clear error"),
}


def included(model):
    """True when every node of the test's graph is a default-domain op of INCLUDED_OPS."""
    ops = {(n.domain, n.op_type) for n in model.graph.node}
    return bool(ops) and all(d in ("", "ai.onnx") and op in INCLUDED_OPS for d, op in ops)


def excluded_reason(name):
    """The reason ``name`` (test_..., with or without _cpu) is excluded, or None."""
    name = re.sub(r"_cpu$", "", name)
    for pattern, reason in EXCLUDED.items():
        if re.fullmatch(pattern, name):
            return reason
    return None
