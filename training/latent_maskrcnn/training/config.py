"""The training recipe as a YAML file: sections ``model``, ``data``, ``optimizer``, ``schedule``,
``run`` and ``probe``, each a dataclass that refuses keys it does not know (with a suggestion), plus the
learning-rate and KL-weight schedules it defines.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from latent_maskrcnn.model.config import ModelConfig

KL_SCHEDULES = ("warmup", "two_stage", "constant")
LR_DECAYS = ("cosine", "step", "constant")
OPTIMIZERS = ("sgd", "adamw")
SAVE_DTYPES = ("float32", "float16")


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the key."""


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"


def _from_dict(cls: type, values: Any, section: str) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{section}' must be a mapping, got {type(values).__name__}")
    known = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in known:
            raise ConfigError(f"unknown config key '{section}.{key}'{_suggest(str(key), known)}")
    try:
        return cls(**values)
    except TypeError as error:  # a required key is missing
        raise ConfigError(f"config section '{section}': {error}") from error


@dataclass
class DataSection:
    """A COCO-format training set; ``batch_size`` is per process (per GPU under torchrun)."""

    train_annotations: str
    train_images: str
    batch_size: int = 2
    num_workers: int = 0
    hflip: float = 0.5
    scale_range: list[float] | None = field(default_factory=lambda: [0.8, 1.25])
    color_jitter: list[float] | None = field(default_factory=lambda: [0.2, 0.2, 0.2, 0.02])
    """brightness, contrast, saturation, hue."""
    check_image_sizes: bool = True
    group_labellings: bool = False
    """Batch the entries that share one image file together (several labellings of one image,
    `make-dataset --labellings both`): with the same pixels under different labels in a batch,
    only the latent code can explain the difference. ``batch_size`` must be a multiple of the
    labellings per image."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if self.scale_range is not None and len(self.scale_range) != 2:
            raise ConfigError(f"data.scale_range must be [min, max] or null, got {self.scale_range}")
        if self.color_jitter is not None and len(self.color_jitter) != 4:
            raise ConfigError(f"data.color_jitter must be [brightness, contrast, saturation, hue] or null, got {self.color_jitter}")


@dataclass
class OptimizerSection:
    name: str = "sgd"
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip_norm: float | None = 10.0

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"optimizer.name must be one of {list(OPTIMIZERS)}, got {self.name!r}")
        if not self.lr > 0:
            raise ConfigError(f"optimizer.lr must be positive, got {self.lr}")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise ConfigError(f"optimizer.grad_clip_norm must be positive or null, got {self.grad_clip_norm}")


@dataclass
class ScheduleSection:
    """Steps, learning rate and the KL weight beta.

    KL schedules: ``warmup`` (the paper): beta = 0 for the first ``kl_zero_fraction`` of the
    steps, then a linear ramp to ``beta_max`` over ``kl_ramp_fraction`` of the steps.
    ``two_stage`` (the authors' code): beta = 0 until ``stage2_fraction`` of the steps, then a
    constant ``beta_max`` (they used 1e-5 to 1e-4) with the learning rate ``stage2_lr``.
    ``constant``: ``beta_max`` throughout. ``prior_mean_coin`` is the authors' trick: each
    image decodes, by a fair coin, a posterior sample or the prior mean.
    """

    steps: int = 1000
    lr_warmup_steps: int = 100
    lr_warmup_factor: float = 0.001
    lr_decay: str = "cosine"
    lr_decay_steps: list[int] = field(default_factory=list)
    lr_decay_gamma: float = 0.1
    lr_min_factor: float = 0.0
    kl_schedule: str = "warmup"
    beta_max: float = 1.0
    kl_zero_fraction: float = 0.25
    kl_ramp_fraction: float = 0.5
    stage2_fraction: float = 0.8
    stage2_lr: float | None = 2e-4
    prior_mean_coin: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"schedule.steps must be >= 1, got {self.steps}")
        if self.lr_decay not in LR_DECAYS:
            raise ConfigError(f"schedule.lr_decay must be one of {list(LR_DECAYS)}, got {self.lr_decay!r}")
        if self.kl_schedule not in KL_SCHEDULES:
            raise ConfigError(f"schedule.kl_schedule must be one of {list(KL_SCHEDULES)}, got {self.kl_schedule!r}")
        if self.beta_max < 0:
            raise ConfigError(f"schedule.beta_max must be >= 0, got {self.beta_max}")
        for name in ("kl_zero_fraction", "kl_ramp_fraction", "stage2_fraction", "lr_warmup_factor", "lr_min_factor"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"schedule.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.kl_zero_fraction + self.kl_ramp_fraction > 1.0 + 1e-9:
            raise ConfigError("schedule.kl_zero_fraction + kl_ramp_fraction must not exceed 1")
        if self.lr_warmup_steps < 0:
            raise ConfigError(f"schedule.lr_warmup_steps must be >= 0, got {self.lr_warmup_steps}")

    def beta(self, step: int) -> float:
        """KL weight at a (0-based) optimisation step."""
        if self.kl_schedule == "constant":
            return self.beta_max
        if self.kl_schedule == "two_stage":
            return self.beta_max if step >= self.stage2_start else 0.0
        zero_end = self.kl_zero_fraction * self.steps
        ramp = self.kl_ramp_fraction * self.steps
        if step < zero_end:
            return 0.0
        if ramp <= 0 or step >= zero_end + ramp:
            return self.beta_max
        return self.beta_max * (step - zero_end) / ramp

    @property
    def stage2_start(self) -> int:
        return int(round(self.stage2_fraction * self.steps))

    def lr(self, base_lr: float, step: int) -> float:
        """Learning rate at a (0-based) step: linear warm-up, then the decay."""
        if self.kl_schedule == "two_stage" and self.stage2_lr is not None and step >= self.stage2_start:
            return self.stage2_lr
        horizon = self.stage2_start if self.kl_schedule == "two_stage" else self.steps
        factor = 1.0
        if step < self.lr_warmup_steps:
            factor = self.lr_warmup_factor + (1 - self.lr_warmup_factor) * step / self.lr_warmup_steps
        if self.lr_decay == "cosine":
            progress = min(1.0, step / max(1, horizon))
            factor *= self.lr_min_factor + (1 - self.lr_min_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        elif self.lr_decay == "step":
            factor *= self.lr_decay_gamma ** sum(1 for milestone in self.lr_decay_steps if step >= milestone)
        return base_lr * factor


@dataclass
class RunSection:
    output_dir: str = "runs/latent_maskrcnn"
    seed: int = 0
    device: str = "auto"
    """auto (the GPU of this process when present, else CPU), cpu, cuda or cuda:N."""
    amp: str | bool = "auto"
    """Mixed precision (float16 autocast + gradient scaling): auto = on CUDA only."""
    threads: int | None = None
    """CPU threads of each process (torch.set_num_threads); null keeps torch's default."""
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    save_dtype: str = "float32"
    """Storage dtype of the final model file (float16 halves it)."""
    init_weights: str | None = None
    """A checkpoint (safetensors, e.g. a trained MaskRCNN baseline) or torchvision MaskRCNN
    state dict whose tensors initialise the model where names and shapes match; the rest keeps
    its initialisation. Used when a run starts, not on resume."""

    def __post_init__(self) -> None:
        if self.amp not in ("auto", True, False):
            raise ConfigError(f"run.amp must be auto, true or false, got {self.amp!r}")
        if self.save_dtype not in SAVE_DTYPES:
            raise ConfigError(f"run.save_dtype must be one of {list(SAVE_DTYPES)}, got {self.save_dtype!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"run.threads must be >= 1 or null, got {self.threads}")
        for name in ("log_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"run.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class ProbeSection:
    """The seamless-pair probe (`latent_maskrcnn.evaluation.pair_probe`) run at every checkpoint on a small
    held-out COCO set made by the synthetic generator: off while ``annotations`` is null.
    ``images`` defaults to the ``images`` folder beside the annotation file; ``max_images``
    counts images holding a usable pair (the first ones in id order)."""

    annotations: str | None = None
    images: str | None = None
    max_images: int = 24
    samples: int = 8
    p: float = 0.9
    score_threshold: float = 0.1
    iou_threshold: float = 0.5
    seam_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_images < 1:
            raise ConfigError(f"probe.max_images must be >= 1, got {self.max_images}")
        if self.samples < 1:
            raise ConfigError(f"probe.samples must be >= 1, got {self.samples}")
        for name in ("p", "iou_threshold", "seam_fraction"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ConfigError(f"probe.{name} must be in (0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.score_threshold < 1.0:
            raise ConfigError(f"probe.score_threshold must be in [0, 1), got {self.score_threshold}")
        if self.images is not None and self.annotations is None:
            raise ConfigError("probe.images is set but probe.annotations is not")

    @property
    def enabled(self) -> bool:
        return self.annotations is not None

    @property
    def image_dir(self) -> str | None:
        if self.annotations is None:
            return None
        return self.images if self.images is not None else str(Path(self.annotations).parent / "images")


SECTIONS = {"data": DataSection, "optimizer": OptimizerSection, "schedule": ScheduleSection, "run": RunSection,
            "probe": ProbeSection}
MODEL_KEYS = [f.name for f in dataclasses.fields(ModelConfig)]
RESUMABLE_CHANGES = {"schedule.steps", "run.log_every", "run.checkpoint_every", "run.keep_checkpoints",
                     "run.device", "run.threads", "run.output_dir", "data.num_workers"}
RESUMABLE_CHANGES |= {f"probe.{f.name}" for f in dataclasses.fields(ProbeSection)}
"""Keys that may differ between a run and its resumption (the probe only reads the model)."""


@dataclass
class TrainConfig:
    model: dict[str, Any]
    """`ModelConfig` keys; ``num_classes`` and ``class_names`` default to the data set's."""
    data: DataSection
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    run: RunSection = field(default_factory=RunSection)
    probe: ProbeSection = field(default_factory=ProbeSection)

    @classmethod
    def from_dict(cls, document: Any) -> "TrainConfig":
        if not isinstance(document, dict):
            raise ConfigError(f"a training config must be a mapping, got {type(document).__name__}")
        known = ["model", *SECTIONS]
        for key in document:
            if key not in known:
                raise ConfigError(f"unknown config section '{key}'{_suggest(str(key), known)}")
        if "data" not in document:
            raise ConfigError("the config needs a 'data' section (train_annotations, train_images)")
        model = document.get("model") or {}
        if not isinstance(model, dict):
            raise ConfigError("config section 'model' must be a mapping")
        for key in model:
            if key not in MODEL_KEYS:
                raise ConfigError(f"unknown config key 'model.{key}'{_suggest(str(key), MODEL_KEYS)}")
        sections = {name: _from_dict(section, document.get(name), name) for name, section in SECTIONS.items()}
        return cls(model=dict(model), **sections)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_config(self, class_names: list[str]) -> ModelConfig:
        """The model config with the data set's classes (refused if the config names others)."""
        values = dict(self.model)
        given_names = values.get("class_names")
        if given_names is not None and list(given_names) != list(class_names):
            raise ConfigError(f"model.class_names {given_names} differ from the data set's {class_names}")
        given_count = values.get("num_classes")
        if given_count is not None and given_count != len(class_names):
            raise ConfigError(f"model.num_classes is {given_count}, the data set has {len(class_names)} (with background)")
        values["num_classes"] = len(class_names)
        values["class_names"] = list(class_names)
        try:
            return ModelConfig.from_dict(values)
        except (ValueError, TypeError) as error:
            raise ConfigError(str(error)) from error


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` (value parsed as YAML) -> (path, value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".")]
    if len(path) != 2 or not all(path):
        raise ConfigError(f"override key {key!r} must be section.key (e.g. schedule.steps)")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({error})") from error
    return path, value


def apply_overrides(document: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    result = {key: (dict(value) if isinstance(value, dict) else value) for key, value in document.items()}
    for text in overrides:
        (section, key), value = parse_override(text)
        known_sections = ["model", *SECTIONS]
        if section not in known_sections:
            raise ConfigError(f"unknown config section '{section}' in override {text!r}{_suggest(section, known_sections)}")
        known_keys = MODEL_KEYS if section == "model" else [f.name for f in dataclasses.fields(SECTIONS[section])]
        if key not in known_keys:
            raise ConfigError(f"unknown config key '{section}.{key}' in override {text!r}{_suggest(key, known_keys)}")
        current = result.get(section)
        result[section] = dict(current) if isinstance(current, dict) else {}
        result[section][key] = value
    return result


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML training config and apply ``section.key=value`` overrides."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    if not isinstance(document, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return TrainConfig.from_dict(apply_overrides(document, overrides or []))


def config_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``section.key`` entries that differ between two config dicts."""
    differences = []
    for section in sorted(set(stored) | set(current)):
        old, new = stored.get(section) or {}, current.get(section) or {}
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                differences.append(f"{section}.{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return differences
