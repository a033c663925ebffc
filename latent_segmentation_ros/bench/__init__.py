"""`latent-seg bench replay|node`: replay throughput and memory, and both nodes live over DDS.
Each module has `add_arguments(parser)` and `run(args) -> dict`; ros/ is imported only when
the node benchmark runs.
"""
