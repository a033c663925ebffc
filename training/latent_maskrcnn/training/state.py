"""Training checkpoints without pickle: model weights via `checkpoint.save_model`, optimizer
tensors in ``trainer_state.safetensors``, everything else (step, optimizer hyper-parameters,
gradient-scaler state, the run config) in ``trainer_state.json``.

Layout of a run folder::

    OUT/checkpoints/step_0000500/model.safetensors (+ .json)
    OUT/checkpoints/step_0000500/trainer_state.safetensors
    OUT/checkpoints/step_0000500/trainer_state.json
    OUT/checkpoints/latest.json        {"step": 500, "checkpoint": "step_0000500"}
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from latent_maskrcnn.model.checkpoint import save_model
from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN

STATE_FORMAT = "latent_maskrcnn_trainer_state"
STATE_VERSION = 1
MODEL_FILE = "model.safetensors"
STATE_TENSORS = "trainer_state.safetensors"
STATE_JSON = "trainer_state.json"
LATEST = "latest.json"
CHECKPOINT_DIR = "checkpoints"


class ResumeError(ValueError):
    """A checkpoint that cannot be resumed from; the message says why."""


@dataclass
class TrainerState:
    step: int
    config: dict[str, Any]
    optimizer: dict[str, Any]
    scaler: dict[str, Any]
    world_size: int
    directory: Path

    @property
    def model_path(self) -> Path:
        return self.directory / MODEL_FILE


def _split_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{param_id}.{name}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_state_dict(saved: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Rebuild ``optimizer.state_dict()`` from the JSON part and the tensors."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        prefix, param_id, name = key.split(".", 2)
        if prefix != "optimizer":
            continue
        state.setdefault(int(param_id), {})[name] = value
    for param_id, entries in saved.get("scalars", {}).items():
        state.setdefault(int(param_id), {}).update(entries)
    return {"state": state, "param_groups": saved["param_groups"]}


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: LatentMaskRCNN,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    config: dict[str, Any],
    world_size: int,
    keep: int,
) -> Path:
    """Write a complete checkpoint into a temporary folder, then move it into place and point
    ``latest.json`` at it, so an interrupted save never leaves a broken latest checkpoint."""
    root = run_dir / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    partial = root / (checkpoint_name(step) + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    save_model(model, partial / MODEL_FILE)
    tensors, optimizer_json = _split_optimizer_state(optimizer.state_dict())
    save_file(tensors, str(partial / STATE_TENSORS), metadata={"format": STATE_FORMAT})
    document = {
        "format": STATE_FORMAT,
        "format_version": STATE_VERSION,
        "step": int(step),
        "world_size": int(world_size),
        "optimizer": optimizer_json,
        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
        "config": config,
    }
    (partial / STATE_JSON).write_text(json.dumps(document, indent=1, sort_keys=True))
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    latest = root / LATEST
    latest_tmp = root / (LATEST + ".partial")
    latest_tmp.write_text(json.dumps({"step": int(step), "checkpoint": final.name}))
    latest_tmp.replace(latest)
    kept = sorted(path for path in root.glob("step_*") if path.is_dir() and not path.name.endswith(".partial"))
    for old in kept[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, the ``checkpoints`` folder or a run folder -> the checkpoint folder."""
    path = Path(path)
    for candidate_root in (path, path / CHECKPOINT_DIR):
        latest = candidate_root / LATEST
        if latest.is_file():
            try:
                name = json.loads(latest.read_text())["checkpoint"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ResumeError(f"{latest} is not a valid latest-checkpoint pointer: {error}") from error
            return candidate_root / name
    if (path / STATE_JSON).is_file():
        return path
    raise ResumeError(f"no checkpoint to resume from at {path} (expected {CHECKPOINT_DIR}/{LATEST} or {STATE_JSON})")


def load_trainer_state(path: str | Path) -> tuple[TrainerState, dict[str, torch.Tensor]]:
    directory = resolve_checkpoint(path)
    for name in (STATE_JSON, STATE_TENSORS, MODEL_FILE):
        if not (directory / name).is_file():
            raise ResumeError(f"checkpoint {directory} lacks {name}")
    try:
        document = json.loads((directory / STATE_JSON).read_text())
    except json.JSONDecodeError as error:
        raise ResumeError(f"{directory / STATE_JSON} is not valid JSON: {error}") from error
    if document.get("format") != STATE_FORMAT or document.get("format_version") != STATE_VERSION:
        raise ResumeError(f"{directory / STATE_JSON} is not a version-{STATE_VERSION} {STATE_FORMAT} file")
    try:
        tensors = load_file(str(directory / STATE_TENSORS))
    except (SafetensorError, OSError) as error:
        raise ResumeError(f"{directory / STATE_TENSORS} is not readable: {error}") from error
    state = TrainerState(
        step=int(document["step"]),
        config=document["config"],
        optimizer=document["optimizer"],
        scaler=document.get("scaler") or {},
        world_size=int(document.get("world_size", 1)),
        directory=directory,
    )
    return state, tensors
