"""PTQ-SL sub-layerwise weight granularity: groups of output channels share one scale.

Channels are grouped by their clipping range (sorted, then cut into groups of ``group_size``).
Where a conv's output feeds only convs (directly or through LeakyReLU/ReLU), its output
channels are first permuted into that sorted order and the permutation is folded into the
consumers' input channels, so the groups are contiguous and the reorder costs nothing at run
time; elsewhere (residual adds) the groups are kept as scattered channel sets.
"""
from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from esr.quantize.graph import CHANNEL_AGNOSTIC, GraphInfo, Unit


def group_absmax(absmax: np.ndarray, group_size: int) -> tuple[np.ndarray, list[list[int]]]:
    """Per-channel clip values where each group of ``group_size`` similar channels shares its max."""
    order = np.argsort(absmax, kind="stable")
    shared = absmax.copy()
    groups = []
    for start in range(0, len(order), group_size):
        members = order[start:start + group_size]
        shared[members] = absmax[members].max()
        groups.append(sorted(int(m) for m in members))
    return shared, groups


def _conv_consumers(info: GraphInfo, tensor: str) -> list | None:
    """Convs (group 1) reading ``tensor`` as data input, through at most one channel-agnostic op; None if not foldable."""
    outputs = {o.name for o in info.model.graph.output}
    if tensor in outputs:
        return None
    consumers = info.consumers.get(tensor, [])
    if len(consumers) == 1 and consumers[0].op_type in CHANNEL_AGNOSTIC:
        return _conv_consumers(info, consumers[0].output[0])
    for node in consumers:
        grouped = any(a.name == "group" and a.i != 1 for a in node.attribute)
        if node.op_type != "Conv" or grouped or node.input[0] != tensor or node.input[1] not in info.initializers:
            return None
    return consumers or None


def _set(info: GraphInfo, name: str, array: np.ndarray) -> None:
    info.initializers[name].CopyFrom(numpy_helper.from_array(array.astype(np.float32), name))


def reorder_channels(info: GraphInfo, units: list[Unit]) -> dict[str, list[int]]:
    """Permute each foldable conv's output channels into ascending |W| order (in place, same function).

    Returns conv name -> the permutation applied (new channel i = old channel perm[i]).
    """
    applied = {}
    for unit in units:
        if unit.op != "Conv" or unit.weight is None:
            continue
        consumers = _conv_consumers(info, unit.outputs[0])
        if consumers is None or any(c.input[1] == unit.weight for c in consumers):
            continue
        weight = info.constant_array(unit.weight)
        perm = np.argsort(np.abs(weight.reshape(weight.shape[0], -1)).max(axis=1), kind="stable")
        _set(info, unit.weight, weight[perm])
        if unit.bias is not None:
            _set(info, unit.bias, info.constant_array(unit.bias)[perm])
        for consumer in consumers:
            _set(info, consumer.input[1], info.constant_array(consumer.input[1])[:, perm])
        applied[unit.name] = [int(p) for p in perm]
    return applied
