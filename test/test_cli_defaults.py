"""The command line's defaults, and the defaults its help shows, are the nodes' own.

Every option of every `latent-seg` subcommand whose flag names a node parameter must take its
default from the parameter table (or be listed below with the reason it differs); the
simulated gripper's options and every other holder of the gripper settings share one definition.
"""
from __future__ import annotations

import argparse
from typing import Iterator

import pytest

from latent_maskrcnn.evaluation.gripper_defaults import SIMULATED_GRIPPER_CIRCLES, SIMULATED_GRIPPER_RADIUS
from latent_segmentation_ros import cli
from latent_segmentation_ros.core.parameter_options import COMPARISON_MASK_THRESHOLD
from latent_segmentation_ros.core.parameters import GRASP_PARAMETERS, SEGMENTATION_PARAMETERS

NODE_PARAMETERS = {**SEGMENTATION_PARAMETERS, **GRASP_PARAMETERS}
# Flag -> node parameter: the parameter's own name, plus the shorter flags the CLI uses.
MIRROR_FLAGS = {"--" + name.replace("_", "-"): name for name in NODE_PARAMETERS}
MIRROR_FLAGS.update({"--samples": "num_samples", "--slop": "sync_slop", "--topics": "camera_topics"})

# Options whose flag names a node parameter but which deliberately differ, with the reason.
NOT_MIRRORS = {
    "--checkpoint": "None is the bundled demo model, as the node's empty string",
    "--seed": "seeds scenes, circles or benchmark inputs, not the node's latent codes",
}
# Commands comparing the confidence masks with the baselines: their --mask-threshold is the
# comparison's (core.parameter_options.COMPARISON_MASK_THRESHOLD), not the node's.
COMPARISON_COMMANDS = {("evaluate",), ("grasp-causes",), ("sweep-p",), ("demo",)}
# latent_maskrcnn's benchmarks size their own workload (and never import the ROS package).
OWN_WORKLOAD = {("bench", "model"), ("bench", "aggregate")}


def _subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subcommands(sub, path + (name,))


PARSERS = dict(_subcommands(cli.build_parser()))


def _options(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        for flag in action.option_strings:
            yield flag, action


def _help(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_help().split())


def test_every_subcommand_is_walked() -> None:
    for command in ("replay", "sweep-p", "score", "demo", "evaluate", ("bench", "replay")):
        assert (command if isinstance(command, tuple) else (command,)) in PARSERS


@pytest.mark.parametrize("path", sorted(PARSERS), ids=lambda path: " ".join(path) or "latent-seg")
def test_options_mirroring_node_parameters_have_the_tables_default(path: tuple[str, ...]) -> None:
    parser = PARSERS[path]
    help_text = _help(parser)
    for flag, action in _options(parser):
        parameter = MIRROR_FLAGS.get(flag)
        if parameter is None or flag in NOT_MIRRORS or path in OWN_WORKLOAD:
            continue
        if getattr(action, "comparison_option", None) == parameter:
            # The comparison commands binarise the confidence masks where docs/results.md measured
            # them; their help says so and names the node's own default beside.
            assert path in COMPARISON_COMMANDS, path
            assert action.default == COMPARISON_MASK_THRESHOLD != NODE_PARAMETERS[parameter].default
            assert f"the node starts at {NODE_PARAMETERS[parameter].default}" in help_text, path
            continue
        assert getattr(action, "node_parameter", None) == parameter, (
            f"latent-seg {' '.join(path)} {flag} stands for the node parameter {parameter}: "
            f"declare it with core.parameter_options.add_node_option"
        )
        default = NODE_PARAMETERS[parameter].default
        assert action.default == default, (path, flag)
        assert f"(default: the node's {parameter}, {default})" in help_text, (path, flag)
        if NODE_PARAMETERS[parameter].choices:
            assert list(action.choices) == list(NODE_PARAMETERS[parameter].choices)


# The options many commands share: one default and one wording each, on every subcommand
# (latent_maskrcnn's benchmarks included, which spell them out without importing this package).
COMMON_DEFAULTS = {"--device": "auto", "--threads": None, "--seed": 0, "--storage": "mcap"}
COMMON_HELP = {
    "--device": "auto (cuda when available, else cpu), cpu, cuda or cuda:N",
    "--threads": "torch CPU threads (default: torch's choice, one per core)",
    "--seed": "(default 0)",
    "--storage": "mcap or sqlite3 (default mcap)",
}


def _value_options(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    """Options that take a value (not flags, not --help, not subcommands)."""
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0 or isinstance(action, argparse._SubParsersAction):
            continue
        yield action.option_strings[-1], action


@pytest.mark.parametrize("path", sorted(PARSERS), ids=lambda path: " ".join(path) or "latent-seg")
def test_one_rule_for_the_shared_options(path: tuple[str, ...]) -> None:
    parser = PARSERS[path]
    for flag, action in _value_options(parser):
        help_text = " ".join(parser._get_formatter()._expand_help(action).split()) if action.help else ""
        if flag in COMMON_DEFAULTS:
            assert action.default == COMMON_DEFAULTS[flag], (path, flag, action.default)
            assert not action.required, (path, flag)
            assert COMMON_HELP[flag] in help_text, (path, flag, help_text)
        if flag == "--storage":
            assert list(action.choices) == ["mcap", "sqlite3"], path
        # Every option that takes a value says what it is and what it is when not given.
        if not action.required:
            assert "default" in help_text, f"latent-seg {' '.join(path)} {flag}: help does not say its default"


def test_each_output_option_says_what_its_command_writes() -> None:
    outs = {path: " ".join(PARSERS[path]._option_string_actions["--out"].help.split())
            for path in PARSERS if "--out" in PARSERS[path]._option_string_actions}
    assert "sweep" in outs[("sweep-p",)] and outs[("sweep-p",)] != outs[("replay",)]


def test_threads_and_device_are_on_every_command_that_runs_the_network() -> None:
    for path in [("replay",), ("sweep-p",), ("demo",), ("evaluate",), ("grasp-causes",), ("probe-latent",),
                 ("bench", "replay"), ("bench", "model"), ("bench", "aggregate")]:
        options = PARSERS[path]._option_string_actions
        assert "--threads" in options, path
        if path != ("bench", "model") and path != ("probe-latent",):
            assert "--device" in options, path


def test_replay_help_shows_the_nodes_score_threshold(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["replay", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: the node's score_threshold, 0.1)" in text
    assert SEGMENTATION_PARAMETERS["score_threshold"].default == 0.1


def test_the_node_and_replay_start_where_the_comparison_chose(tmp_path) -> None:
    # docs/results.md: at equal pickable area the prior mean with its masks binarised near 0.8
    # double-picks least; the comparison commands keep the confidence masks at 0.5.
    args = cli.build_parser().parse_args(["replay", "--bag", str(tmp_path), "--out", str(tmp_path)])
    assert (args.mode, args.mask_threshold) == ("prior_mean", 0.8)
    for command in ("evaluate", "grasp-causes"):
        extra = ["--checkpoint", "c"] if command == "evaluate" else []
        parsed = cli.build_parser().parse_args([command, *extra, "--data", "d", "--out", "o"])
        assert parsed.mask_threshold == 0.5, command


def test_parsed_defaults_are_the_nodes(tmp_path) -> None:
    args = cli.build_parser().parse_args(["replay", "--bag", str(tmp_path), "--out", str(tmp_path)])
    for name, value in (("p", args.p), ("num_samples", args.samples), ("score_threshold", args.score_threshold),
                        ("mode", args.mode), ("sync_slop", args.slop), ("queue_size", args.queue_size),
                        ("camera_topics", args.topics)):
        assert value == SEGMENTATION_PARAMETERS[name].default, name
    # The list default is a copy: parsing never changes the table.
    assert args.topics is not SEGMENTATION_PARAMETERS["camera_topics"].default


def test_gripper_options_share_one_definition() -> None:
    seen = 0
    for path, parser in PARSERS.items():
        options = dict(_options(parser))
        if "--gripper-radius" not in options:
            continue
        seen += 1
        assert options["--gripper-radius"].default == SIMULATED_GRIPPER_RADIUS
        assert options["--circles"].default == SIMULATED_GRIPPER_CIRCLES
        text = _help(parser)
        assert f"double-pick metric (default {SIMULATED_GRIPPER_RADIUS})" in text, path
        assert f"circles per image (default {SIMULATED_GRIPPER_CIRCLES})" in text, path
    assert seen == 5  # replay, sweep-p, score, evaluate, demo


def test_every_holder_of_the_gripper_settings_agrees() -> None:
    from latent_maskrcnn.evaluation.double_pick import GripperSimulation
    from latent_maskrcnn.evaluation.runner import EvaluationSettings
    from latent_segmentation_ros.core.camera_sync import SyncPolicy
    from latent_segmentation_ros.core.grasp_planner import SuctionCupLayout
    from latent_segmentation_ros.replay.scoring import ScoringConfig

    gripper = GripperSimulation()
    assert (gripper.radius, gripper.circles) == (SIMULATED_GRIPPER_RADIUS, SIMULATED_GRIPPER_CIRCLES)
    settings = EvaluationSettings()
    assert (settings.gripper_radius, settings.circles) == (SIMULATED_GRIPPER_RADIUS, SIMULATED_GRIPPER_CIRCLES)
    scoring = ScoringConfig()
    assert (scoring.gripper_radius, scoring.circles) == (SIMULATED_GRIPPER_RADIUS, SIMULATED_GRIPPER_CIRCLES)
    # The evaluation's paper settings are the node's defaults too.
    assert settings.num_samples == SEGMENTATION_PARAMETERS["num_samples"].default
    assert settings.p == SEGMENTATION_PARAMETERS["p"].default
    assert settings.score_threshold == SEGMENTATION_PARAMETERS["score_threshold"].default

    layout = SuctionCupLayout.grid()
    assert layout.cup_radius == GRASP_PARAMETERS["cup_radius"].default
    rows, cols = GRASP_PARAMETERS["cup_rows"].default, GRASP_PARAMETERS["cup_cols"].default
    assert layout.offsets.shape == (rows * cols, 2)
    spacing = GRASP_PARAMETERS["cup_spacing"].default
    assert sorted(set(layout.offsets[:, 0].round(6))) == [(c - (cols - 1) / 2) * spacing for c in range(cols)]
    sync = SyncPolicy()
    assert (sync.slop, sync.queue_size) == (
        SEGMENTATION_PARAMETERS["sync_slop"].default,
        SEGMENTATION_PARAMETERS["queue_size"].default,
    )


def test_cli_help_stays_light() -> None:
    """Building every parser must not import torch or numpy (``latent-seg --help`` is instant)."""
    import subprocess
    import sys

    code = (
        "import sys; from latent_segmentation_ros import cli; cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_thread_count_below_one_is_refused_before_torch_runs(tmp_path, capsys) -> None:
    code = cli.main(["replay", "--bag", str(tmp_path / "bag"), "--out", str(tmp_path / "out"), "--threads", "0"])
    assert code == 2
    assert "--threads must be at least 1, got 0" in capsys.readouterr().err
