"""Batch upscaling beyond one process: ``--shard I/N`` (job arrays, plain processes) and ``--ray`` (Ray Data)."""
