"""Per-layer FLOPs and bytes of an ONNX deploy graph.

A *layer* is one kernel of the deploy graph: an ONNX node, or a convolution with the
activation that follows it (Relu, LeakyRelu, Sigmoid, Tanh, Clip, HardSigmoid) when the
convolution's output feeds only that activation, the fusion every deploy runtime does
(ONNX Runtime FusedConv / NCHWc Conv, TensorRT). Shapes come from ONNX shape inference on
a static-shape graph. Bytes are what a kernel reads and writes once: every non-scalar
input (activations and weights) plus its outputs, floating-point tensors at the chosen
precision (fp32 4 B, fp16 2 B, int8 1 B), integer tensors at their own width.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import onnx
from onnx import TensorProto

from esr.registry import Registry

PRECISION_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
"""Bytes per floating-point element at each precision."""

FUSABLE_ACTIVATIONS = frozenset({"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid"})
GELU_CHAIN = ("Erf", "Add", "Mul", "Mul")
"""The ops after ``Div(x, sqrt 2)`` in an exported exact GELU; onnxruntime runs the five as one ``Gelu`` kernel."""
GELU_FLOPS_PER_ELEMENT = 8.0
"""A divide, an erf (4), an add and two multiplies per output element."""
NO_KERNEL_OPS = frozenset({"Constant", "Identity"})
"""Ops that produce no kernel at run time (folded or aliased)."""
VIEW_OPS = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Flatten"})
"""Ops that only relabel a buffer: a kernel launch, no bytes moved."""

CostFn = Callable[[onnx.NodeProto, list, list], float]
OP_FLOPS = Registry("op FLOP rule")
"""op_type -> ``fn(node, input_shapes, output_shapes) -> FLOPs``; unlisted ops count 0 FLOPs (data movement)."""


def _numel(shape: list[int] | None) -> int:
    return math.prod(shape) if shape else 0


def _attr(node: onnx.NodeProto, name: str, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _per_output_element(cost: float, *ops: str) -> None:
    def rule(node: onnx.NodeProto, ins: list, outs: list) -> float:
        return cost * _numel(outs[0])

    for op in ops:
        OP_FLOPS.register(rule, name=op)


def _per_input_element(cost: float, *ops: str) -> None:
    def rule(node: onnx.NodeProto, ins: list, outs: list) -> float:
        return cost * _numel(ins[0])

    for op in ops:
        OP_FLOPS.register(rule, name=op)


_per_output_element(1.0, "Add", "Sub", "Mul", "Div", "Relu", "LeakyRelu", "PRelu", "Clip", "Max", "Min", "Neg", "Abs",
                    "Where", "HardSigmoid")
_per_output_element(4.0, "Sigmoid", "Tanh", "Erf", "Exp", "Log", "Sqrt", "Pow", "Reciprocal", "Gelu", "HardSwish")
_per_output_element(4.0, "Resize")  # bilinear: 4 taps per output element
_per_input_element(2.0, "ReduceMean", "ReduceSum", "ReduceL2", "ReduceMax", "GlobalAveragePool")
_per_input_element(5.0, "Softmax", "LayerNormalization", "InstanceNormalization")


@OP_FLOPS.register(name="Conv")
def _conv_flops(node: onnx.NodeProto, ins: list, outs: list) -> float:
    weight = ins[1]  # (Cout, Cin / groups, kh, kw)
    return 2.0 * _numel(outs[0]) * _numel(weight[1:])


@OP_FLOPS.register(name="ConvTranspose")
def _conv_transpose_flops(node: onnx.NodeProto, ins: list, outs: list) -> float:
    weight = ins[1]  # (Cin, Cout / groups, kh, kw)
    return 2.0 * _numel(ins[0]) * _numel(weight[1:])


@OP_FLOPS.register(name="MatMul")
def _matmul_flops(node: onnx.NodeProto, ins: list, outs: list) -> float:
    return 2.0 * _numel(outs[0]) * ins[0][-1]


@OP_FLOPS.register(name="Gemm")
def _gemm_flops(node: onnx.NodeProto, ins: list, outs: list) -> float:
    k = ins[0][0] if _attr(node, "transA", 0) else ins[0][-1]
    return 2.0 * _numel(outs[0]) * k


@OP_FLOPS.register(name="MaxPool")
def _pool_flops(node: onnx.NodeProto, ins: list, outs: list) -> float:
    return float(_numel(outs[0]) * _numel(list(_attr(node, "kernel_shape", [1]))))


OP_FLOPS.register(_pool_flops, name="AveragePool")


@dataclass
class Layer:
    """One kernel of the deploy graph.

    ``flops``: floating-point operations (a multiply-add is 2); ``bytes``: bytes read + written
    at the precision; ``key``: the op class whose efficiency factor a calibrated profile applies
    (``Conv3x3``, ``Conv1x1``, ``MatMul``, ``Add``...).
    """

    name: str
    op: str
    key: str
    nodes: list[str]
    outputs: list[str]
    output_shape: list[int]
    flops: float
    bytes: float
    weight_bytes: float
    anchor_op: str = ""
    inputs: list[str] = field(default_factory=list)
    conv_channels: tuple[int, int] | None = None  # (input channels per group, output channels) of a dense Conv

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOP per byte."""
        return self.flops / self.bytes if self.bytes else 0.0


def op_key(node: onnx.NodeProto, ins: list) -> str:
    """The efficiency class of ``node``: convolutions by kernel size (and ``DW`` when depthwise)."""
    if node.op_type in ("Conv", "ConvTranspose") and len(ins) > 1 and ins[1]:
        kh, kw = ins[1][2:4]
        groups = _attr(node, "group", 1)
        prefix = "DWConv" if groups > 1 and groups == ins[0][1] else node.op_type
        return f"{prefix}{kh}x{kw}"
    return node.op_type


def gelu_chain(node: onnx.NodeProto, consumers: dict[str, list[onnx.NodeProto]],
               graph_outputs: set[str]) -> list[onnx.NodeProto] | None:
    """The :data:`GELU_CHAIN` nodes that follow ``node`` (a ``Div``), each the only reader of the one before;
    else None."""
    if node.op_type != "Div":
        return None
    chain, current = [], node
    for op_type in GELU_CHAIN:
        readers = consumers.get(current.output[0], [])
        if current.output[0] in graph_outputs or len(readers) != 1 or readers[0].op_type != op_type:
            return None
        current = readers[0]
        chain.append(current)
    return chain


def dense_conv_channels(node: onnx.NodeProto, ins: list) -> tuple[int, int] | None:
    """``(input channels, output channels)`` of an ungrouped ``Conv``, else None."""
    if node.op_type != "Conv" or len(ins) < 2 or not ins[1] or _attr(node, "group", 1) != 1:
        return None
    return int(ins[1][1]), int(ins[1][0])


def _shapes_and_types(model: onnx.ModelProto) -> tuple[dict[str, list[int]], dict[str, int], set[str]]:
    graph = model.graph
    shapes: dict[str, list[int]] = {}
    dtypes: dict[str, int] = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        tensor_type = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
        shapes[value.name] = dims
        dtypes[value.name] = tensor_type.elem_type
    constants = set()
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
        dtypes[init.name] = init.data_type
        constants.add(init.name)
    for node in graph.node:
        if node.op_type == "Constant":
            value = _attr(node, "value", None)
            if value is not None:
                shapes[node.output[0]] = list(value.dims)
                dtypes[node.output[0]] = value.data_type
            constants.add(node.output[0])
    return shapes, dtypes, constants


def _element_bytes(dtype: int, precision: str) -> int:
    if dtype in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16):
        return PRECISION_BYTES[precision]
    return onnx.helper.tensor_dtype_to_np_dtype(dtype).itemsize if dtype else 4


def analyze_graph(model: onnx.ModelProto, precision: str = "fp32") -> list[Layer]:
    """The layers of a static-shape ONNX ``model`` in execution order.

    Raises ``ValueError`` if a tensor shape stays unknown after shape inference
    (export with static shapes first) or the precision is unknown.
    """
    if precision not in PRECISION_BYTES:
        raise ValueError(f"unknown precision {precision!r} (known: {', '.join(PRECISION_BYTES)})")
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes, dtypes, constants = _shapes_and_types(model)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in model.graph.output}

    def shape_of(name: str) -> list[int]:
        shape = shapes.get(name)
        if shape is None or any(d < 0 for d in shape):
            raise ValueError(f"tensor {name!r} has no static shape (export the graph with static input shapes)")
        return shape

    def tensor_bytes(name: str) -> float:
        return float(_numel(shape_of(name)) * _element_bytes(dtypes.get(name, TensorProto.FLOAT), precision))

    layers: list[Layer] = []
    fused: set[str] = set()
    for node in model.graph.node:
        if node.op_type in NO_KERNEL_OPS or node.name in fused:
            continue
        ins = [shape_of(name) if name else [] for name in node.input]
        outs = [shape_of(name) for name in node.output]
        rule = OP_FLOPS.get(node.op_type) if node.op_type in OP_FLOPS else None
        flops = float(rule(node, ins, outs)) if rule else 0.0
        inputs = [name for name in node.input if name and _numel(shapes.get(name)) > 1]
        weight_bytes = sum(tensor_bytes(name) for name in inputs if name in constants)
        members, op, outputs, key = [node.name], node.op_type, list(node.output), op_key(node, ins)
        follower = consumers.get(node.output[0], [])
        gelu = gelu_chain(node, consumers, graph_outputs)
        if gelu:
            fused.update(member.name for member in gelu)
            members += [member.name for member in gelu]
            op = key = "Gelu"
            outputs, inputs = list(gelu[-1].output), [node.input[0]]
            flops = GELU_FLOPS_PER_ELEMENT * _numel(shape_of(outputs[0]))
        elif (node.op_type == "Conv" and len(follower) == 1 and follower[0].op_type in FUSABLE_ACTIVATIONS
                and node.output[0] not in graph_outputs):
            activation = follower[0]
            fused.add(activation.name)
            members.append(activation.name)
            op = f"Conv+{activation.op_type}"
            outputs = list(activation.output)
            act_rule = OP_FLOPS.get(activation.op_type)
            flops += act_rule(activation, [outs[0]], [outs[0]])
        moved = 0.0 if node.op_type in VIEW_OPS else sum(tensor_bytes(n) for n in inputs) + sum(
            tensor_bytes(n) for n in outputs)
        layers.append(Layer(
            name=node.name or outputs[0], op=op, key=key, nodes=members, outputs=outputs,
            output_shape=shape_of(outputs[0]), flops=flops, bytes=moved, weight_bytes=weight_bytes,
            anchor_op=node.op_type, inputs=inputs, conv_channels=dense_conv_channels(node, ins),
        ))
    return layers
