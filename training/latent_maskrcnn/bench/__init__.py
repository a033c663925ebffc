"""`latent-seg bench model|aggregate`: each module has `add_arguments(parser)` and
`run(args) -> dict`, sizes its own workload and imports what it measures when it runs.
"""
