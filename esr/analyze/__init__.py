"""Roofline latency analysis of deploy graphs (``esr analyze``).

- :mod:`esr.analyze.graph`: per-layer FLOPs and bytes of an ONNX graph at a precision;
- :mod:`esr.analyze.hardware`: hardware profiles (datasheet JSON files and the measured ``local`` one);
- :mod:`esr.analyze.microbench`: GEMM/conv throughput and memory bandwidth of this machine;
- :mod:`esr.analyze.roofline`: predicted time per layer (roofline / fitted efficiency + kernel overhead);
- :mod:`esr.analyze.calibrate`: ONNX Runtime per-layer profiling and the LASNet-style fit;
- :mod:`esr.analyze.plot`: the roofline figure.

Importing this package is cheap; the sub-modules import torch / onnx.
"""
