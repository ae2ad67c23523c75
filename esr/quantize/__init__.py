"""INT8 post-training quantisation of esr ONNX models into QDQ ONNX (``esr quantize``).

Entry point: :func:`esr.quantize.pipeline.quantize_onnx` with a :class:`~esr.quantize.pipeline.QuantConfig`.
Modules: ``grids`` (uniform/twin grids), ``ranges`` (the method registry), ``graph`` (units),
``calibrate`` (crops, statistics), ``qdq`` (QDQ writer), ``sublayer`` (PTQ-SL groups),
``sensitivity`` (mixed-precision fallback). The package imports nothing heavy itself.
"""

GRANULARITIES = ("tensor", "channel", "sublayer")
WEIGHT_TYPES = {"s7": (7, False), "s8": (8, False), "u8": (8, True)}
"""weight storage -> (bits, unsigned); see QuantConfig.weight_type."""
