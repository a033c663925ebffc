"""The Latent-MaskRCNN trainer: sum of the MaskRCNN losses + beta * KL with a KL schedule,
mixed precision on the GPU, gradient clipping, safetensors checkpoints and exact resume,
TensorBoard scalars, and DistributedDataParallel when launched by ``torchrun``.

Determinism: the sample order depends on (seed, epoch), the augmentation of a sample on
(seed, epoch, index), and the model's own randomness (posterior samples, the prior-mean coin)
is reseeded at every step from (seed, step, rank). A resumed run therefore continues exactly
where the interrupted one would have gone, without storing random generator states.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn

from latent_maskrcnn.data.coco_dataset import CocoInstanceDataset, DatasetError, build_augmentations, collate
from latent_maskrcnn.evaluation.pair_probe import ProbeSet, ProbeSettings, load_probe_set, probe_scalars, run_probe
from latent_maskrcnn.model.checkpoint import load_torchvision_maskrcnn_weights, load_weights, save_model
from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN
from .state import (
    CHECKPOINT_DIR,
    LATEST,
    ResumeError,
    load_trainer_state,
    optimizer_state_dict,
    save_checkpoint,
)
from .config import RESUMABLE_CHANGES, ConfigError, TrainConfig, config_differences

LOG = logging.getLogger(__name__)
FINAL_MODEL = "model.safetensors"
SUMMARY = "training_summary.json"
TENSORBOARD_DIR = "tensorboard"
PROBE_LOG = "probe.jsonl"
KL_KEY = "loss_kl"


# ---------------------------------------------------------------------------- processes
@dataclass
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialized_here: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(setting: str, local_rank: int) -> torch.device:
    if setting == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if setting.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"run.device is {setting!r} but no CUDA device is available")
        return torch.device(f"cuda:{local_rank}") if setting == "cuda" else torch.device(setting)
    if setting == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"run.device must be auto, cpu, cuda or cuda:N, got {setting!r}")


def init_distributed(device_setting: str) -> DistributedContext:
    """One process of a ``torchrun`` launch (WORLD_SIZE > 1: joins the process group through
    the env:// rendezvous, NCCL on GPUs, Gloo on CPUs) or a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_setting, local_rank)
    initialized_here = False
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
        initialized_here = True
    return DistributedContext(rank, world_size, local_rank, device, initialized_here)


def step_seed(seed: int, step: int, rank: int, purpose: int = 0) -> int:
    """Seed of the model's randomness at one step of one process (``purpose`` 1: the sample
    order of an epoch)."""
    entropy = [int(purpose), int(seed), int(step), int(rank)]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


class ShardedEpochSampler(torch.utils.data.Sampler):
    """Per epoch, a seeded permutation of the data set, cut to whole batches of every process,
    dealt out to the processes; yields ``(epoch, index)`` keys and can start mid-epoch.

    With ``groups`` (lists of indices of equal length, e.g. the labellings of one image) the
    groups are permuted and kept together: every batch holds whole groups."""

    def __init__(self, size: int, batch_size: int, world_size: int, rank: int, seed: int,
                 groups: list[list[int]] | None = None) -> None:
        self.size, self.batch_size, self.world_size, self.rank, self.seed = size, batch_size, world_size, rank, seed
        self.groups = groups if groups is not None else [[index] for index in range(size)]
        group_size = len(self.groups[0]) if self.groups else 1
        if any(len(group) != group_size for group in self.groups) or batch_size % group_size:
            sizes = sorted({len(group) for group in self.groups})
            raise DatasetError(f"grouped batches need groups of one size dividing batch_size {batch_size}, "
                               f"got group sizes {sizes}")
        self.groups_per_batch = batch_size // group_size
        self.batches_per_epoch = len(self.groups) // (self.groups_per_batch * world_size)
        if self.batches_per_epoch == 0:
            raise DatasetError(
                f"the data set has {size} images, fewer than one batch per process "
                f"(batch_size {batch_size} x {world_size} processes)"
            )
        self.epoch = 0
        self.skip_batches = 0

    def set_position(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = int(epoch), int(skip_batches)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(step_seed(self.seed, self.epoch, 0, purpose=1))
        order = torch.randperm(len(self.groups), generator=generator).tolist()
        used = order[: self.batches_per_epoch * self.groups_per_batch * self.world_size]
        mine = used[self.rank :: self.world_size]
        for group in mine[self.skip_batches * self.groups_per_batch :]:
            for index in self.groups[group]:
                yield self.epoch, index

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.skip_batches) * self.batch_size


# ---------------------------------------------------------------------------- building blocks
def baseline_config(config: TrainConfig) -> TrainConfig:
    """The same recipe as plain MaskRCNN (latent_dim = 0), in ``<output_dir>_baseline``."""
    model = dict(config.model)
    model["latent_dim"] = 0
    run = dataclasses.replace(config.run, output_dir=config.run.output_dir.rstrip("/") + "_baseline")
    return dataclasses.replace(config, model=model, run=run)


def build_dataset(config: TrainConfig) -> CocoInstanceDataset:
    data = config.data
    augmentations = build_augmentations(
        hflip=data.hflip,
        scale_range=tuple(data.scale_range) if data.scale_range else None,
        color=tuple(data.color_jitter) if data.color_jitter else None,
    )
    return CocoInstanceDataset(
        data.train_annotations,
        data.train_images,
        transforms=augmentations,
        augment_seed=config.run.seed,
        check_image_sizes=data.check_image_sizes,
    )


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    parameters = [p for p in model.parameters() if p.requires_grad]
    section = config.optimizer
    if section.name == "sgd":
        return torch.optim.SGD(parameters, lr=section.lr, momentum=section.momentum, weight_decay=section.weight_decay)
    return torch.optim.AdamW(parameters, lr=section.lr, betas=tuple(section.betas), weight_decay=section.weight_decay)


def use_amp(setting: str | bool, device: torch.device) -> bool:
    if setting == "auto":
        return device.type == "cuda"
    if setting and device.type != "cuda":
        raise ConfigError("run.amp: true needs a CUDA device (use auto or false on the CPU)")
    return bool(setting)


def objective(losses: dict[str, torch.Tensor], beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(MaskRCNN losses summed, total = that + beta * loss_kl)."""
    detection = sum(value for key, value in losses.items() if key != KL_KEY)
    kl = losses.get(KL_KEY)
    total = detection if kl is None else detection + beta * kl
    return detection, total


def _to_device(images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]], device: torch.device):
    images = [image.to(device, non_blocking=True) for image in images]
    targets = [{key: value.to(device, non_blocking=True) for key, value in target.items()} for target in targets]
    return images, targets


@dataclass
class TrainResult:
    model: LatentMaskRCNN
    step: int
    output_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)
    """Per step of this process: lr, beta, total, detection and each loss term."""
    seconds: float = 0.0
    seconds_per_step: float = float("nan")


class _RankZeroWriter:
    """TensorBoard scalars, written by the main process only."""

    def __init__(self, log_dir: Path | None) -> None:
        self.writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


def _average_window(window: list[dict[str, float]], context: DistributedContext) -> dict[str, float]:
    keys = sorted(window[0])
    sums = torch.tensor([[entry[key] for key in keys] for entry in window], dtype=torch.float64).sum(dim=0)
    if context.distributed:
        sums = sums.to(context.device)
        dist.all_reduce(sums)
        sums = sums.cpu()
    means = sums / (len(window) * context.world_size)
    return dict(zip(keys, means.tolist()))


def _tensorboard_values(means: dict[str, float], seconds_per_step: float) -> dict[str, float]:
    values = {"loss/total": means["total"], "loss/detection": means["detection"], "kl/beta": means["beta"],
              "kl/loss_kl": means.get(KL_KEY, 0.0), "kl/weighted": means["beta"] * means.get(KL_KEY, 0.0),
              "lr": means["lr"], "grad_norm": means["grad_norm"], "time/seconds_per_step": seconds_per_step}
    values.update({f"loss/{key}": value for key, value in means.items() if key.startswith("loss_") and key != KL_KEY})
    return values


def _probe(model: LatentMaskRCNN, probe_set: ProbeSet, config: TrainConfig, step: int) -> dict:
    """The seamless-pair probe of the model at ``step`` (it only reads the model: `sample`
    runs in eval mode under inference mode with its own generator and restores train mode)."""
    section = config.probe
    result = run_probe(model, probe_set, num_samples=section.samples, p=section.p,
                       score_threshold=section.score_threshold, seed=section.seed,
                       settings=ProbeSettings(section.iou_threshold, section.seam_fraction))
    return {"step": step, **result}


def _read_probe_log(path: Path, up_to_step: int | None = None) -> list[dict]:
    """The probe entries of a run, one per step (the last written wins), in step order."""
    if not path.is_file():
        return []
    entries: dict[int, dict] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            entry = json.loads(line)
            step = int(entry["step"])
        except (ValueError, KeyError, TypeError):
            LOG.warning("%s line %d is not a probe entry; skipped", path, number)
            continue
        if up_to_step is None or step <= up_to_step:
            entries[step] = entry
    return [entries[step] for step in sorted(entries)]


def _sync_buffers(module: nn.Module) -> None:
    """DDP broadcasts buffers before each forward; after the last one each process holds its
    own batch-norm statistics. Make every replica identical to the main process's."""
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)


# ---------------------------------------------------------------------------- the loop
def train(config: TrainConfig, resume: str | os.PathLike | bool | None = None, progress: bool = True) -> TrainResult:
    """Train as ``config`` says. ``resume``: True (the latest checkpoint of the run's output
    folder) or a checkpoint / run folder. Everything is checked before the first step."""
    context = init_distributed(config.run.device)
    try:
        return _train(config, context, resume, progress)
    finally:
        if context.initialized_here:
            dist.destroy_process_group()


def _train(config: TrainConfig, context: DistributedContext, resume: Any, progress: bool) -> TrainResult:
    from tqdm import tqdm

    run = config.run
    schedule = config.schedule
    output_dir = Path(run.output_dir)
    if run.threads is not None:
        torch.set_num_threads(run.threads)
    dataset = build_dataset(config)
    model_config = config.model_config(dataset.class_names)
    amp = use_amp(run.amp, context.device)
    groups = dataset.file_groups if config.data.group_labellings else None
    sampler = ShardedEpochSampler(len(dataset), config.data.batch_size, context.world_size, context.rank, run.seed,
                                  groups)
    probe_set = None
    if config.probe.enabled and context.is_main:
        probe_set = load_probe_set(config.probe.annotations, config.probe.image_dir, config.probe.max_images)
        LOG.info("probe: %d seamless pairs from %d images of %s", len(probe_set.pairs), probe_set.scanned,
                 config.probe.annotations)

    state = None
    if resume:
        state, state_tensors = load_trainer_state(output_dir if resume is True else resume)
        differences = [d for d in config_differences(state.config, config.to_dict()) if d.split(":")[0] not in RESUMABLE_CHANGES]
        if differences:
            raise ResumeError(f"the config differs from the checkpoint's ({state.directory}): " + "; ".join(differences))
        if state.world_size != context.world_size:
            LOG.warning("resuming a %d-process run with %d processes: the sample order changes",
                        state.world_size, context.world_size)
        if state.step >= schedule.steps:
            raise ResumeError(f"checkpoint {state.directory} is at step {state.step}, schedule.steps is {schedule.steps}: nothing to do")
    elif (output_dir / CHECKPOINT_DIR / LATEST).exists():
        raise ConfigError(f"{output_dir} already holds a training run; resume it (--resume) or choose another run.output_dir")

    torch.manual_seed(run.seed)
    model = LatentMaskRCNN(model_config)
    if state is not None:
        load_weights(model, state.model_path)
    elif run.init_weights:
        report = load_torchvision_maskrcnn_weights(model, run.init_weights)
        LOG.info("initialised %d tensors from %s; %d keep their initialisation (%s)", len(report.loaded),
                 run.init_weights, len(report.not_initialised), ", ".join(report.not_initialised[:6]) + " ...")
    model.posterior_or_prior_mean_coin = schedule.prior_mean_coin
    model.to(context.device).train()
    optimizer = build_optimizer(model, config)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    if state is not None:
        optimizer.load_state_dict(optimizer_state_dict(state.optimizer, state_tensors))
        if amp and state.scaler:
            scaler.load_state_dict(state.scaler)
    trained: nn.Module = model
    if context.distributed:
        device_ids = [context.device.index] if context.device.type == "cuda" else None
        trained = nn.parallel.DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)
    parameters = [p for p in model.parameters() if p.requires_grad]

    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.data.batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=config.data.num_workers,
        drop_last=True,
        persistent_workers=config.data.num_workers > 0,
        pin_memory=context.device.type == "cuda",
    )
    start_step = state.step if state is not None else 0
    writer = _RankZeroWriter(output_dir / TENSORBOARD_DIR if context.is_main else None)
    if context.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        if probe_set is not None:  # entries of a later step than the resumed one are stale
            kept = _read_probe_log(output_dir / PROBE_LOG, start_step)
            (output_dir / PROBE_LOG).write_text("".join(json.dumps(entry) + "\n" for entry in kept))
        LOG.info("training %s on %s x %d, %d images, steps %d..%d", model_config.backbone, context.device,
                 context.world_size, len(dataset), start_step, schedule.steps)

    history: list[dict[str, float]] = []
    window: list[dict[str, float]] = []
    bar = tqdm(total=schedule.steps, initial=start_step, unit="step", dynamic_ncols=True,
               disable=not (progress and context.is_main), desc="train")
    step = start_step
    epoch = step // sampler.batches_per_epoch
    sampler.set_position(epoch, step % sampler.batches_per_epoch)
    batches = iter(loader)
    started = time.perf_counter()
    first_step_done = None
    window_started = time.perf_counter()
    probe_seconds = 0.0
    try:
        while step < schedule.steps:
            try:
                images, targets = next(batches)
            except StopIteration:
                epoch += 1
                sampler.set_position(epoch, 0)
                batches = iter(loader)
                continue
            images, targets = _to_device(images, targets, context.device)
            torch.manual_seed(step_seed(run.seed, step, context.rank))
            lr = schedule.lr(config.optimizer.lr, step)
            beta = schedule.beta(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device_type=context.device.type, dtype=torch.float16, enabled=amp):
                losses = trained(images, targets)
            detection, total = objective(losses, beta)
            if not torch.isfinite(total) and not amp:
                raise FloatingPointError(
                    f"the loss became {total.item()} at step {step}: "
                    + ", ".join(f"{key}={value.item():.4g}" for key, value in losses.items())
                    + " (lower optimizer.lr or set optimizer.grad_clip_norm)"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.unscale_(optimizer)
            max_norm = config.optimizer.grad_clip_norm if config.optimizer.grad_clip_norm is not None else math.inf
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
            scaler.step(optimizer)
            scaler.update()
            step += 1
            record = {"lr": lr, "beta": beta, "total": float(total.detach()), "detection": float(detection.detach()),
                      "grad_norm": float(grad_norm)}
            record.update({key: float(value.detach()) for key, value in losses.items()})
            history.append(record)
            window.append(record)
            if first_step_done is None:
                first_step_done = time.perf_counter()
            bar.update(1)
            if step % run.log_every == 0 or step == schedule.steps:
                means = _average_window(window, context)
                elapsed = (time.perf_counter() - window_started) / len(window)
                writer.scalars(_tensorboard_values(means, elapsed), step)
                bar.set_postfix(loss=f"{means['total']:.3f}", kl=f"{means.get(KL_KEY, 0.0):.3g}", beta=f"{beta:.3g}", lr=f"{lr:.2g}")
                window = []
                window_started = time.perf_counter()
            if step % run.checkpoint_every == 0 or step == schedule.steps:
                if context.distributed:
                    _sync_buffers(model)
                if context.is_main:
                    save_checkpoint(output_dir, step, model, optimizer, scaler, config.to_dict(), context.world_size,
                                    run.keep_checkpoints)
                if probe_set is not None:
                    probed = time.perf_counter()
                    entry = _probe(model, probe_set, config, step)
                    writer.scalars({**probe_scalars(entry), "time/probe_seconds": entry["seconds"]}, step)
                    with open(output_dir / PROBE_LOG, "a") as handle:
                        handle.write(json.dumps(entry) + "\n")
                    spent = time.perf_counter() - probed
                    probe_seconds += spent
                    window_started += spent  # s/step of the next window without the probe
                if context.distributed:
                    dist.barrier()
    finally:
        bar.close()
        writer.close()

    seconds = time.perf_counter() - started
    per_step = (time.perf_counter() - first_step_done) / (len(history) - 1) if len(history) > 1 else float("nan")
    if context.is_main:
        dtype = torch.float16 if run.save_dtype == "float16" else None
        save_model(model, output_dir / FINAL_MODEL, dtype=dtype)
        tail = history[-min(len(history), 50):]
        summary = {
            "steps": step,
            "steps_this_run": len(history),
            "resumed_from": start_step,
            "seconds": round(seconds, 2),
            "seconds_per_step": round(per_step, 4),
            "world_size": context.world_size,
            "device": str(context.device),
            "amp": amp,
            "images": len(dataset),
            "model_file": FINAL_MODEL,
            "model_bytes": (output_dir / FINAL_MODEL).stat().st_size,
            "parameters": sum(p.numel() for p in model.parameters()),
            "final_losses": {key: sum(entry[key] for entry in tail) / len(tail) for key in tail[0]} if tail else {},
            "probe_seconds": round(probe_seconds, 2),
            "config": config.to_dict(),
        }
        if probe_set is not None:
            entries = _read_probe_log(output_dir / PROBE_LOG)
            summary["probe"] = {
                "file": PROBE_LOG,
                "last": entries[-1] if entries else None,
                "history": [{"step": entry["step"], **probe_scalars(entry), "seconds": entry["seconds"]} for entry in entries],
            }
        (output_dir / "training_summary.json").write_text(json.dumps(summary, indent=2))
    if context.distributed:
        dist.barrier()
    return TrainResult(model, step, output_dir, history, seconds, per_step)
