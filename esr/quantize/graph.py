"""Read an fp32 ONNX graph into quantisation units.

A *unit* is one node whose integer execution we control: the activation tensors it reads
and writes are quantised (one QDQ pair per tensor, shared by every consumer) and so are
its weights. Keeping a unit in fp32 removes its contribution; a tensor stays quantised
while any quantised unit touches it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from onnx import numpy_helper

WEIGHTED_OPS = {"Conv": 0, "MatMul": -1, "Gemm": 0}
"""Ops with a constant weight input (index 1) -> the weight's output-channel axis (MatMul: last)."""
BINARY_OPS = ("Add", "Mul")
UNARY_OPS = ("LeakyRelu", "Relu", "Sigmoid")
PASS_THROUGH_OPS = ("MaxPool", "Resize", "DepthToSpace")
"""Ops that move values without new ones: their output reuses the input's grid, so ONNX Runtime
drops the Q/DQ around them and runs them on uint8."""
CHANNEL_AGNOSTIC = ("LeakyRelu", "Relu")
GELU_CHAIN = ("Add", "Mul", "Mul")
"""Erf -> Add(1) -> Mul(x) -> Mul(0.5): the decomposed exact GELU of the torch exporter."""


@dataclass
class Unit:
    """One quantisable node: ``inputs``/``outputs`` are the activation tensors it quantises."""

    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    weight: str | None = None
    weight_axis: int = 0
    bias: str | None = None
    twin: str | None = None  # "softmax" / "gelu": its output is a twin-uniform candidate
    pass_through: bool = False  # output grid = input grid


@dataclass
class GraphInfo:
    model: onnx.ModelProto
    initializers: dict[str, onnx.TensorProto]
    float_tensors: set[str]
    consumers: dict[str, list[onnx.NodeProto]]
    producers: dict[str, onnx.NodeProto]
    units: list[Unit] = field(default_factory=list)

    def is_activation(self, name: str) -> bool:
        return name in self.float_tensors and name not in self.initializers

    def constant_array(self, name: str):
        return numpy_helper.to_array(self.initializers[name])


def constants_to_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Turn ``Constant`` nodes holding tensors into initializers (so weights are found in one place)."""
    keep = []
    for node in model.graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model


def analyse(model: onnx.ModelProto) -> GraphInfo:
    """Shape-infer ``model`` and list its units in graph order."""
    model = onnx.shape_inference.infer_shapes(constants_to_initializers(model))
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    floats = {v.name for v in list(graph.value_info) + list(graph.input) + list(graph.output)
              if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    producers: dict[str, onnx.NodeProto] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producers[name] = node
    info = GraphInfo(model, initializers, floats, consumers, producers)
    gelu_inner, gelu_out = gelu_nodes(info)
    for node in graph.node:
        unit = make_unit(info, node, node.name in gelu_inner, node.name in gelu_out)
        if unit is not None:
            info.units.append(unit)
    return info


def gelu_nodes(info: GraphInfo) -> tuple[set[str], set[str]]:
    """Names of the nodes inside decomposed GELUs and of each GELU's last node."""
    inner, last = set(), set()
    for node in info.model.graph.node:
        if node.op_type != "Erf":
            continue
        chain, current = [], node
        for op in GELU_CHAIN:
            nexts = info.consumers.get(current.output[0], [])
            if len(nexts) != 1 or nexts[0].op_type != op:
                break
            current = nexts[0]
            chain.append(current)
        if len(chain) == len(GELU_CHAIN):
            inner.update(n.name for n in chain[:-1])
            last.add(chain[-1].name)
    return inner, last


def make_unit(info: GraphInfo, node: onnx.NodeProto, in_gelu: bool, gelu_out: bool) -> Unit | None:
    """The unit for ``node``, or None when it is not quantised (shape ops, constants, GELU internals)."""
    acts = [n for n in node.input if info.is_activation(n)]
    outs = [n for n in node.output if n in info.float_tensors]
    if not outs or in_gelu:
        return None
    if gelu_out:
        return Unit(node.name, "Gelu", [], outs, twin="gelu")
    if node.op_type == "Softmax":
        return Unit(node.name, node.op_type, [], outs, twin="softmax")
    if node.op_type in WEIGHTED_OPS:
        weight = node.input[1] if len(node.input) > 1 and node.input[1] in info.initializers else None
        bias = node.input[2] if len(node.input) > 2 and node.input[2] in info.initializers else None
        if weight is None and len(acts) < 2:
            return None
        axis = WEIGHTED_OPS[node.op_type]
        if node.op_type == "Gemm":
            axis = 0 if any(a.name == "transB" and a.i for a in node.attribute) else 1
        if weight is not None and node.op_type == "MatMul":
            axis = len(info.initializers[weight].dims) - 1
        return Unit(node.name, node.op_type, acts[:1] if weight else acts, outs, weight, axis, bias)
    if node.op_type in BINARY_OPS and len(acts) == 2:
        return Unit(node.name, node.op_type, acts, outs)
    if node.op_type in UNARY_OPS and acts:
        return Unit(node.name, node.op_type, acts, outs)
    if node.op_type in PASS_THROUGH_OPS and acts[:1] == [node.input[0]]:
        return Unit(node.name, node.op_type, acts[:1], outs[:1], pass_through=True)
    return None
