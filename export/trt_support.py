"""Op-support check of an ONNX graph against TensorRT 10's ONNX parser (onnx-tensorrt operators.md).

:data:`TRT10_OPS` lists the standard-domain ops the TensorRT 10 parser converts, with
the restrictions that matter for SR graphs. A node is ``unsupported`` (the build fails
without a plugin), ``restricted`` (converts only with the noted attributes/dtypes) or
fine. Tensor dtypes TensorRT lacks (double, string, complex) are flagged too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx

TRT10_OPS: frozenset[str] = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div
Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm
GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization HardSigmoid
HardSwish Hardmax Identity If InstanceNormalization IsInf IsNaN LRN LayerNormalization LeakyRelu Less
LessOrEqual Log LogSoftmax Loop LpNormalization LpPool MatMul Max MaxPool Mean Min Mish Mod Mul Neg
NonMaxSuppression NonZero Not OneHot Or PRelu Pad ParametricSoftplus Pow QuantizeLinear RandomNormal
RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp
ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence
RoiAlign Round STFT ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh
Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile
TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())
"""Standard-domain ONNX ops the TensorRT 10 ONNX parser supports."""

RESTRICTIONS: dict[str, str] = {
    "Pad": "modes constant/reflect/edge; reflect and edge need pads < the padded size",
    "Resize": "modes nearest/linear/cubic; antialias unsupported",
    "Mod": "fmod=0 on integer tensors only",
    "DepthToSpace": "DCR and CRD modes; 4-D input",
    "Einsum": "no ellipsis, at most 2 inputs",
    "Loop": "trip count and condition must be build-time constants or shape-derived",
    "MaxPool": "2-D/3-D only; no indices output, no dilations",
    "Split": "split sizes must be build-time constants",
}
"""Ops that convert only under these conditions (checked by the TensorRT build, reported here)."""

UNSUPPORTED_DTYPES = {onnx.TensorProto.DOUBLE: "double (cast to float32 by the parser)",
                      onnx.TensorProto.STRING: "string", onnx.TensorProto.COMPLEX64: "complex64",
                      onnx.TensorProto.COMPLEX128: "complex128"}


@dataclass
class SupportReport:
    """Verdict of :func:`check_trt_support`: ``ok`` when no node or tensor would fail the build."""

    unsupported: dict[str, int] = field(default_factory=dict)
    restricted: dict[str, str] = field(default_factory=dict)
    dtypes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.unsupported and not any("string" in d or "complex" in d for d in self.dtypes)

    def lines(self) -> list[str]:
        """Human-readable verdict, one finding per line."""
        out = [f"TensorRT 10 op support: {'OK' if self.ok else 'FAILS'}"]
        out += [f"  unsupported: {op} x{n} (needs a plugin)" for op, n in self.unsupported.items()]
        out += [f"  restricted: {op}: {why}" for op, why in self.restricted.items()]
        out += [f"  dtype: {d}" for d in self.dtypes]
        return out


def check_trt_support(graph: onnx.ModelProto) -> SupportReport:
    """Classify every node of ``graph`` (including subgraphs' op types by name) and tensor dtype."""
    report = SupportReport()
    for node in graph.graph.node:
        domain = node.domain or "ai.onnx"
        op = node.op_type if domain == "ai.onnx" else f"{domain}::{node.op_type}"
        if domain != "ai.onnx" or op not in TRT10_OPS:
            report.unsupported[op] = report.unsupported.get(op, 0) + 1
        elif op in RESTRICTIONS:
            report.restricted[op] = RESTRICTIONS[op]
    tensors = list(graph.graph.input) + list(graph.graph.output) + list(graph.graph.value_info)
    elem_types = {(t.name, t.type.tensor_type.elem_type) for t in tensors}
    elem_types |= {(t.name, t.data_type) for t in graph.graph.initializer}
    for name, elem in sorted(elem_types):
        if elem in UNSUPPORTED_DTYPES:
            report.dtypes.append(f"{name}: {UNSUPPORTED_DTYPES[elem]}")
    return report
