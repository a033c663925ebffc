"""Weights as one ``.safetensors`` file with the model config in its metadata (never pickle).

A human-readable sidecar ``<path>.json`` repeats the config. Loading checks everything before
touching a model and raises `CheckpointError` naming what differs. A file is untrusted input: its
config is bounded (``CONFIG_CEILINGS``) and the model it describes is first built on the meta
device (no memory) and compared with the file's tensors, so a config that asks for a huge model
is refused before anything is allocated; non-finite weights are refused as corrupt.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from .config import ModelConfig
from .latent_mask_rcnn import LatentMaskRCNN

FORMAT_NAME = "latent_maskrcnn"
FORMAT_VERSION = "1"
_SAVE_DTYPES = {None: None, torch.float32: torch.float32, torch.float16: torch.float16, torch.bfloat16: torch.bfloat16}
_DTYPE_NAMES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_MAX_LISTED = 10
# Ceilings of the config values that decide how many modules a model builds (a loop per layer or
# class name): far above any real model, so that a checkpoint's config cannot make building its
# model run for ever. Sizes of tensors need none: they are checked on the meta device.
CONFIG_CEILINGS = {"num_classes": 100_000, "encoder_graph_layers": 64, "encoder_heads": 4096}


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the difference."""


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _MAX_LISTED else "")


def save_model(model: LatentMaskRCNN, path: str | Path, dtype: torch.dtype | str | None = None) -> Path:
    """Write ``model``'s weights and config; ``dtype=torch.float16`` (or ``"float16"``) halves
    the file (floating tensors only; loading casts back to the model's dtype)."""
    if isinstance(dtype, str):
        dtype = _DTYPE_NAMES.get(dtype, dtype)
    if dtype not in _SAVE_DTYPES:
        raise ValueError(f"dtype must be None, float32, float16 or bfloat16, got {dtype!r}")
    if not isinstance(model, LatentMaskRCNN) and isinstance(getattr(model, "module", None), LatentMaskRCNN):
        model = model.module  # DistributedDataParallel wrapper
    path = Path(path)
    tensors = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[name] = tensor.contiguous().clone()
    config_json = json.dumps(model.config.to_dict(), sort_keys=True)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": config_json,
        "dtype": str(dtype or "as_model").replace("torch.", ""),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    sidecar = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "weights_file": path.name,
        "stored_dtype": metadata["dtype"],
        "num_tensors": len(tensors),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "config": model.config.to_dict(),
    }
    Path(str(path) + ".json").write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    return path


def _read(path: Path) -> tuple[dict[str, str], dict[str, Tensor]]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, RuntimeError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {error}") from error
    return metadata, tensors


def read_config(path: str | Path) -> ModelConfig:
    """The config stored in a checkpoint, without loading its tensors into a model."""
    metadata, _ = _read(Path(path))
    return _config_from_metadata(Path(path), metadata)


def _config_from_metadata(path: Path, metadata: dict[str, str]) -> ModelConfig:
    if metadata.get("format") != FORMAT_NAME or "config" not in metadata:
        raise CheckpointError(
            f"{path} is a safetensors file but not a {FORMAT_NAME} checkpoint (metadata keys: {sorted(metadata)})"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {metadata.get('format_version')!r}, this code reads {FORMAT_VERSION!r}"
        )
    try:
        data = json.loads(metadata["config"])
    except (ValueError, RecursionError) as error:
        raise CheckpointError(f"{path} holds a config that is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds an invalid model config: a JSON object is needed, got {type(data).__name__}")
    # save_model stores the class names; without them the config would make up one per class
    if not isinstance(data.get("class_names"), list):
        raise CheckpointError(f"{path} holds an invalid model config: class_names must be a list")
    for name, ceiling in CONFIG_CEILINGS.items():
        value = data.get(name)
        if isinstance(value, (int, float)) and value > ceiling:
            raise CheckpointError(f"{path} holds an invalid model config: {name} {value} exceeds {ceiling}")
    try:
        return ModelConfig.from_dict(data)
    except (ValueError, TypeError, OverflowError) as error:
        raise CheckpointError(f"{path} holds an invalid model config: {error}") from error


def _expected_state(config: ModelConfig, source: str) -> dict[str, Tensor]:
    """Names and shapes of the tensors a model of ``config`` has, built on the meta device."""
    try:
        with torch.device("meta"):
            return LatentMaskRCNN(config).state_dict()
    except Exception as error:  # torch and torchvision refuse impossible sizes in their own ways
        raise CheckpointError(f"{source} holds a config whose model cannot be built: {type(error).__name__}: {error}") from None


def _check_finite(tensors: Mapping[str, Tensor], source: str) -> None:
    """Refuse NaN or infinite weights: a corrupt file, which would load and then predict garbage."""
    bad = [key for key, value in tensors.items() if value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if bad:
        raise CheckpointError(f"{source} holds NaN or infinite values (corrupt?) in {_listing(sorted(bad))}")


def check_state_dict(expected: Mapping[str, Tensor], given: Mapping[str, Tensor], source: str) -> None:
    """Raise `CheckpointError` naming missing and unexpected keys and shape mismatches."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = [
        f"{key}: checkpoint {list(given[key].shape)} vs model {list(expected[key].shape)}"
        for key in sorted(set(expected) & set(given))
        if tuple(given[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_listing(mismatched)}")
    if problems:
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems))


def _config_differences(model_config: ModelConfig, stored: ModelConfig) -> list[str]:
    mine, theirs = model_config.to_dict(), stored.to_dict()
    return [f"{key}: checkpoint {theirs[key]!r} vs model {mine[key]!r}" for key in mine if mine[key] != theirs[key]]


def load_weights(model: LatentMaskRCNN, path: str | Path, strict_config: bool = True) -> LatentMaskRCNN:
    """Load a checkpoint into an existing model. With ``strict_config`` a config that differs
    from the model's is refused, naming the fields; tensors are always checked key by key."""
    path = Path(path)
    metadata, tensors = _read(path)
    stored = _config_from_metadata(path, metadata)
    differences = _config_differences(model.config, stored)
    if strict_config and differences:
        raise CheckpointError(f"{path} was saved with another config: " + "; ".join(differences))
    expected = model.state_dict()
    check_state_dict(expected, tensors, str(path))
    _check_finite(tensors, str(path))
    converted = {key: value.to(dtype=expected[key].dtype) for key, value in tensors.items()}
    model.load_state_dict(converted, strict=True)
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LatentMaskRCNN:
    """Rebuild the model from the stored config, load its weights, eval mode.

    The tensors are checked against the config's model built on the meta device first, so the
    real model is only built for a file that holds all of its weights."""
    path = Path(path)
    metadata, tensors = _read(path)
    config = _config_from_metadata(path, metadata)
    check_state_dict(_expected_state(config, str(path)), tensors, str(path))
    _check_finite(tensors, str(path))
    model = LatentMaskRCNN(config)
    expected = model.state_dict()
    model.load_state_dict({key: value.to(dtype=expected[key].dtype) for key, value in tensors.items()}, strict=True)
    return model.to(device).eval()


@dataclass
class WeightLoadReport:
    """What `load_torchvision_maskrcnn_weights` did with each key."""

    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # key in the given state dict -> reason
    not_initialised: list[str] = field(default_factory=list)  # model keys left as they were
    ignored: list[str] = field(default_factory=list)  # batch-norm step counters the model lacks

    def summary(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors, skipped {len(self.skipped)}, "
                 f"{len(self.not_initialised)} model tensors left as initialised"]
        lines += [f"  skipped {key}: {reason}" for key, reason in sorted(self.skipped.items())]
        return "\n".join(lines)


def _read_state_dict_file(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    with open(path, "rb") as handle:
        head = handle.read(16)
    if path.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):
        _, tensors = _read(path)
        return tensors
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # weights_only refuses pickled code; corrupt files raise various errors
        raise CheckpointError(f"{path} is not a readable torch state dict (weights_only=True): {error}") from error
    if isinstance(loaded, dict) and "model" in loaded and isinstance(loaded["model"], dict):
        loaded = loaded["model"]  # torchvision reference-script checkpoints wrap the state dict
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return loaded


def load_torchvision_maskrcnn_weights(
    model: LatentMaskRCNN, state_dict: Mapping[str, Tensor] | str | Path
) -> WeightLoadReport:
    """Initialise the decoder (backbone, FPN, RPN, RoI heads) from a torchvision MaskRCNN state
    dict, e.g. COCO-pretrained ``maskrcnn_resnet50_fpn``. Tensors whose shape depends on the
    class count (the box and mask predictors) or on another architecture are skipped and
    reported; the prior, encoder and injection keep their initialisation."""
    if isinstance(state_dict, (str, Path)):
        state_dict = _read_state_dict_file(Path(state_dict))
    own = model.state_dict()
    report = WeightLoadReport()
    updates = {}
    for key, value in state_dict.items():
        if key not in own and key.endswith("num_batches_tracked"):
            report.ignored.append(key)  # BatchNorm bookkeeping; frozen batch norm has none
        elif key not in own:
            report.skipped[key] = "no such tensor in this model"
        elif tuple(value.shape) != tuple(own[key].shape):
            report.skipped[key] = f"shape {list(value.shape)} vs model {list(own[key].shape)}"
        else:
            updates[key] = value.to(dtype=own[key].dtype)
            report.loaded.append(key)
    if not updates:
        raise CheckpointError("no tensor of the given state dict matches this model (is it a MaskRCNN state dict?)")
    model.load_state_dict(updates, strict=False)
    report.not_initialised = sorted(set(own) - set(updates))
    return report


def describe(path: str | Path) -> dict[str, Any]:
    """Config and tensor count of a checkpoint, for command-line listings."""
    metadata, tensors = _read(Path(path))
    config = _config_from_metadata(Path(path), metadata)
    return {"path": str(path), "config": config.to_dict(), "num_tensors": len(tensors), "stored_dtype": metadata.get("dtype")}
