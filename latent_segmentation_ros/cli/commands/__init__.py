"""`latent-seg` subcommands, one module each.

Every module exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Module top levels import only light dependencies so that ``latent-seg --help`` stays fast;
heavy imports (torch, rosbags) happen inside ``run``.
"""

COMMAND_MODULES = {
    "train": "train",
    "evaluate": "evaluate",
    "probe-latent": "probe_latent",
    "make-dataset": "make_dataset",
    "make-bag": "make_bag",
    "replay": "replay",
    "sweep-p": "sweep_p",
    "grasp-causes": "grasp_causes",
    "score": "score",
    "bench": "bench",
    "demo": "demo",
    "nodes": "nodes",
}
