"""Write QDQ ONNX: QuantizeLinear/DequantizeLinear pairs on activations, int8 weights, int32 biases.

This is the explicit-quantisation format ONNX Runtime fuses into QLinearConv/QLinearMatMul
(graph optimisations on) and TensorRT reads as explicit INT8. A twin-uniform tensor becomes
``Where(Less(x, t), DQ(Q(x; d1)), DQ(Q(x; d2)))``: standard ops any runtime runs.
"""
from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import helper, numpy_helper

from esr.quantize.graph import GraphInfo, Unit
from esr.quantize.grids import TwinGrid, UniformGrid

Grid = UniformGrid | TwinGrid


def _grid_initializers(graph: onnx.GraphProto, prefix: str, grid: UniformGrid) -> tuple[str, str]:
    scale = numpy_helper.from_array(np.asarray(grid.scale, np.float32), f"{prefix}_scale")
    zp_type = np.int8 if grid.signed else np.uint8
    zero = numpy_helper.from_array(np.asarray(grid.zero_point).astype(zp_type), f"{prefix}_zero_point")
    graph.initializer.extend([scale, zero])
    return scale.name, zero.name


def _axis_attr(grid: UniformGrid) -> dict:
    return {"axis": grid.axis} if grid.axis is not None and np.ndim(grid.scale) else {}


def _qdq_nodes(graph: onnx.GraphProto, tensor: str, tag: str, grid: UniformGrid) -> tuple[list, str]:
    scale, zero = _grid_initializers(graph, f"{tensor}_{tag}", grid)
    quantised, restored = f"{tensor}_{tag}_q", f"{tensor}_{tag}_dq"
    nodes = [
        helper.make_node("QuantizeLinear", [tensor, scale, zero], [quantised], name=f"{tensor}_{tag}_Q"),
        helper.make_node("DequantizeLinear", [quantised, scale, zero], [restored], name=f"{tensor}_{tag}_DQ"),
    ]
    return nodes, restored


def activation_nodes(graph: onnx.GraphProto, tensor: str, grid: Grid) -> tuple[list, str]:
    """Nodes computing the quantised value of ``tensor``, and the name of that value."""
    if isinstance(grid, UniformGrid):
        return _qdq_nodes(graph, tensor, "qdq", grid)
    small_nodes, small = _qdq_nodes(graph, tensor, "twin_small", grid.small)
    large_nodes, large = _qdq_nodes(graph, tensor, "twin_large", grid.large)
    threshold = numpy_helper.from_array(np.asarray(grid.threshold, np.float32), f"{tensor}_twin_threshold")
    graph.initializer.append(threshold)
    mask, out = f"{tensor}_twin_mask", f"{tensor}_twin"
    nodes = small_nodes + large_nodes + [
        helper.make_node("Less", [tensor, threshold.name], [mask], name=f"{tensor}_twin_Less"),
        helper.make_node("Where", [mask, small, large], [out], name=f"{tensor}_twin_Where"),
    ]
    return nodes, out


def weight_nodes(graph: onnx.GraphProto, name: str, weight: np.ndarray, grid: UniformGrid) -> tuple[list, str]:
    """int8 initializer + DequantizeLinear standing in for the float weight ``name``."""
    q = numpy_helper.from_array(grid.quantize(weight).astype(np.int8 if grid.signed else np.uint8), f"{name}_q")
    graph.initializer.append(q)
    scale, zero = _grid_initializers(graph, f"{name}_w", grid)
    out = f"{name}_dq"
    return [helper.make_node("DequantizeLinear", [q.name, scale, zero], [out], name=f"{name}_DQ",
                             **_axis_attr(grid))], out


def bias_nodes(graph: onnx.GraphProto, name: str, bias: np.ndarray, input_grid: UniformGrid,
               weight_grid: UniformGrid) -> tuple[list, str]:
    """int32 bias on the accumulator grid ``s_x * s_w`` (what QLinearConv adds before requantising)."""
    scale = (np.float32(input_grid.scale) * np.asarray(weight_grid.scale, np.float32)).astype(np.float32)
    scale = np.broadcast_to(scale, bias.shape).copy()
    q = numpy_helper.from_array(np.rint(bias / scale).astype(np.int32), f"{name}_int32")
    s = numpy_helper.from_array(scale, f"{name}_b_scale")
    z = numpy_helper.from_array(np.zeros(bias.shape, np.int32), f"{name}_b_zero_point")
    graph.initializer.extend([q, s, z])
    out = f"{name}_dq"
    return [helper.make_node("DequantizeLinear", [q.name, s.name, z.name], [out], name=f"{name}_DQ", axis=0)], out


def build_qdq(info: GraphInfo, enabled: set[str], act_grids: dict[str, Grid],
              weight_grids: dict[str, UniformGrid]) -> onnx.ModelProto:
    """A copy of ``info.model`` with the units named in ``enabled`` quantised.

    ``act_grids`` maps activation tensor -> grid, ``weight_grids`` weight initializer -> grid;
    both must cover every tensor the enabled units touch.
    """
    model = copy.deepcopy(info.model)
    graph = model.graph
    units = [u for u in info.units if u.name in enabled]
    tensors = sorted({t for u in units for t in u.inputs + u.outputs})
    outputs = {o.name for o in graph.output}
    renamed: dict[str, str] = {}
    new_nodes: dict[str, list] = {}  # producer tensor -> nodes to insert after it
    for tensor in tensors:
        if tensor in outputs:
            continue
        nodes, restored = activation_nodes(graph, tensor, act_grids[tensor])
        renamed[tensor] = restored
        new_nodes[tensor] = nodes
    weight_swap: dict[tuple[str, int], str] = {}
    weight_nodes_all = []
    initial = {t.name: t for t in graph.initializer}
    for unit in units:
        if unit.weight is None:
            continue
        nodes, out = weight_nodes(graph, f"{unit.name}_{unit.weight}", numpy_helper.to_array(initial[unit.weight]),
                                  weight_grids[unit.weight])
        weight_nodes_all += nodes
        weight_swap[(unit.name, 1)] = out
        input_grid = act_grids.get(unit.inputs[0]) if unit.inputs else None
        if unit.bias is not None and isinstance(input_grid, UniformGrid) and unit.inputs[0] in renamed:
            nodes, out = bias_nodes(graph, f"{unit.name}_{unit.bias}", numpy_helper.to_array(initial[unit.bias]),
                                    input_grid, weight_grids[unit.weight])
            weight_nodes_all += nodes
            weight_swap[(unit.name, 2)] = out
    ordered = list(weight_nodes_all)
    for tensor in [i.name for i in graph.input]:
        ordered += new_nodes.get(tensor, [])
    for node in graph.node:
        for index, name in enumerate(node.input):
            if (node.name, index) in weight_swap:
                node.input[index] = weight_swap[(node.name, index)]
            elif name in renamed:
                node.input[index] = renamed[name]
        ordered.append(node)
        for name in node.output:
            ordered += new_nodes.get(name, [])
    del graph.node[:]
    graph.node.extend(ordered)
    _drop_unused_initializers(graph)
    return model


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
