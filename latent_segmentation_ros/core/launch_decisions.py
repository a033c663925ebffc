"""What the launch files decide, as plain functions (tests reach them without launch installed).

``picking.launch.py`` and ``replay.launch.py`` only wire these into launch's event handlers:
which process's exit ends a launch with an error, what the end of the bag replay says and
returns, and where its recording goes by default. ``latent-seg nodes`` (a ROS 2 without
``ros2 launch``) applies the same rule to its two nodes.

A launch ends with an error by raising :class:`LaunchFailure` from an event handler:
``ros2 launch`` then logs the message, stops every process and exits with code 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

# Seconds the replay launch keeps recording after the player ended, so that the last frames
# go through the nodes and into the recording.
DRAIN_S = 5.0
BAG_SUFFIXES = (".mcap", ".db3")


class LaunchFailure(RuntimeError):
    """A launch cannot go on; the message says which process ended and how."""


def describe_exit(returncode: int) -> str:
    """``exited with code 2``, ``exited cleanly`` or ``was killed by signal 9``."""
    if returncode == 0:
        return "exited cleanly"
    if returncode < 0:
        return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def unexpected_exit(name: str, returncode: int, shutting_down: bool) -> str | None:
    """The error that a process which runs until the launch stops it (a node, the recorder)
    ending means, or None when the launch is already shutting down (it asked them to end).

    Any exit while the launch runs is an error, a clean one too: the cell then lacks that
    process (e.g. the segmentation node refusing to start leaves the grasp node alone)."""
    if shutting_down:
        return None
    return f"{name} {describe_exit(returncode)} while the launch was running; stopping the launch"


@dataclass(frozen=True)
class PlayerOutcome:
    """How the bag replay ended: whether it worked and what the launch logs."""

    succeeded: bool
    message: str


def player_outcome(returncode: int, output: str | Path, shutting_down: bool = False) -> PlayerOutcome | None:
    """The replay launch's verdict when ``ros2 bag play`` ended: success only for exit code 0;
    None when the launch is already shutting down (Ctrl-C, or another process failed first)."""
    if shutting_down:
        return None
    if returncode == 0:
        return PlayerOutcome(True, f"bag finished; outputs recorded in {output} (stopping in {DRAIN_S:g} s)")
    return PlayerOutcome(
        False,
        f"ros2 bag play {describe_exit(returncode)}: the bag was not replayed and {output} holds no replay "
        "(is rosbag2 installed? try `ros2 bag play --help`)",
    )


def bag_name(bag: str | Path) -> str:
    """The bag's name without a storage suffix: ``/data/tote_bag/`` and ``tote_bag.mcap`` -> tote_bag."""
    name = Path(str(bag).rstrip("/")).name
    for suffix in BAG_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def require_programs(programs: dict[str, str | None]) -> None:
    """Raises LaunchFailure naming the programs not found (name -> its path or None): launch
    only logs a process that cannot start and would wait for it forever."""
    missing = sorted(name for name, path in programs.items() if not path)
    if missing:
        raise LaunchFailure(
            f"not found on PATH: {', '.join(missing)} (ros2cli and rosbag2 come with a ROS 2 installation; "
            "source its setup script)"
        )


def live_output(out: str, bag: str | Path, now: datetime, cwd: str | Path) -> Path:
    """Where the replay launch records: ``out`` when given, else ``<bag name>_live_<time>`` in
    the current directory (never beside the input bag, whose folder may be read-only or shared;
    the time keeps runs apart, as ``ros2 bag record``'s own default name does).

    Raises LaunchFailure when the folder exists already (``ros2 bag record`` would refuse it)
    or no bag is given."""
    if not str(bag).strip():
        raise LaunchFailure("bag:= is required: the rosbag2 to play (directory, or .mcap/.db3 file)")
    if out.strip():
        path = Path(out).expanduser()
        path = path if path.is_absolute() else Path(cwd) / path
    else:
        path = Path(cwd) / f"{bag_name(bag)}_live_{now:%Y_%m_%d-%H_%M_%S}"
    if path.exists():
        raise LaunchFailure(f"out: {path} exists already; give another out:=DIR (ros2 bag record writes a new folder)")
    return path
