"""From a synchronised camera pair to per-camera mask results, with the model loaded once.

The network (backbone, prior, K decodings) is the expensive part; aggregation is cheap. So the
pipeline runs the model once per frame on all cameras in one batch and keeps the K samples:
a new ``p`` or a switch between confidence masks and Union-NMS re-aggregates the last frame at
once (:meth:`PerceptionPipeline.refresh`) without running the network again. The samples keep
the mask head's low-resolution probabilities too, so a new ``mask_threshold`` re-binarises them
(one paste per detection) instead of running the network.
"""
from __future__ import annotations

import hashlib
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from latent_segmentation_ros.core.parameters import SEGMENTATION_PARAMETERS
from latent_segmentation_ros.core.results import CameraResult, tight_boxes

_SETTING_NAMES = ("p", "mask_threshold", "num_samples", "flip_samples", "mode", "score_threshold", "min_mask_area", "seed")


class CheckpointLoadError(ValueError):
    """The checkpoint does not load; the message names the path and the cause."""


@dataclass(frozen=True)
class PipelineSettings:
    """What the aggregation and the sampling use; validated by the node parameter rules."""

    p: float = SEGMENTATION_PARAMETERS["p"].default
    mask_threshold: float = SEGMENTATION_PARAMETERS["mask_threshold"].default
    num_samples: int = SEGMENTATION_PARAMETERS["num_samples"].default
    flip_samples: bool = SEGMENTATION_PARAMETERS["flip_samples"].default
    mode: str = SEGMENTATION_PARAMETERS["mode"].default
    score_threshold: float = SEGMENTATION_PARAMETERS["score_threshold"].default
    min_mask_area: int = SEGMENTATION_PARAMETERS["min_mask_area"].default
    seed: int = SEGMENTATION_PARAMETERS["seed"].default

    def __post_init__(self) -> None:
        reasons = [SEGMENTATION_PARAMETERS[name].check(getattr(self, name)) for name in _SETTING_NAMES]
        reasons = [r for r in reasons if r]
        if reasons:
            raise ValueError("; ".join(reasons))

    @property
    def network_mode(self) -> str:
        """What the model is asked for: the prior mean, or K samples."""
        return "prior_mean" if self.mode == "prior_mean" else "sample"

    @property
    def samples_drawn(self) -> int:
        return 1 if self.mode == "prior_mean" else self.num_samples

    @property
    def flips(self) -> bool:
        """Whether the model decodes mirror views: only K samples have them, not the prior mean."""
        return self.flip_samples and self.network_mode == "sample"

    def sampling_key(self) -> tuple:
        """Settings that change the network output (anything else only re-aggregates)."""
        return (self.network_mode, self.samples_drawn, self.seed, self.flips)


@dataclass
class _Frame:
    """The last processed frame: images, the model output, how it was drawn and the mask
    threshold its masks are binarised at."""

    images: list[np.ndarray]
    cameras: list[str]
    samples: list[list[dict]]
    sampling_key: tuple
    network_ms: float
    prepared: dict[int, tuple[float, Any]]
    mask_threshold: float


class PerceptionPipeline:
    """Latent-MaskRCNN plus aggregation for a set of synchronised cameras.

    ``model`` follows `latent_maskrcnn`'s contract: ``model.sample(images, num_samples, seed,
    mode)`` (plus ``flip=True`` when ``flip_samples`` asks for it) returns per image a list of
    prediction dicts. ``aggregate`` defaults to
    `latent_maskrcnn.aggregation.aggregate.aggregate`. ``process`` and ``refresh`` may be called from one
    worker thread while another thread changes settings.
    """

    def __init__(
        self,
        model: Any,
        settings: PipelineSettings | None = None,
        model_id: str = "",
        class_names: Sequence[str] | None = None,
        device: str = "cpu",
        aggregate: Callable[..., dict] | None = None,
    ) -> None:
        self.model = model
        self.model_id = model_id
        config = getattr(model, "config", None)
        names = class_names if class_names is not None else getattr(config, "class_names", None)
        names = list(names or [])
        # names of classes 1..C; latent_maskrcnn's configs list the background first
        self.class_names = names[1:] if names[:1] == ["__background__"] else names
        self.device = device
        if aggregate is None:
            from latent_maskrcnn.aggregation.aggregate import aggregate as aggregate_samples

            aggregate = aggregate_samples
        self._aggregate = aggregate
        self._settings = settings or PipelineSettings()
        self._settings_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._frame: _Frame | None = None
        self.network_calls = 0

    # ----------------------------------------------------------------------- construction
    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | None = None,
        device: str = "auto",
        settings: PipelineSettings | None = None,
        warm_up_kernel: bool = True,
    ) -> "PerceptionPipeline":
        """Load a `.safetensors` checkpoint (default: the bundled demo model).

        On the CPU the compiled aggregation kernel is compiled (or loaded from its cache) here,
        unless ``warm_up_kernel`` is False (the node compiles it in the background instead).

        Raises CheckpointLoadError naming the path and the cause (missing file, wrong format,
        weights that do not fit the stored config, an unavailable device).
        """
        from latent_segmentation_ros.core.resources import default_checkpoint

        if path is None or str(path) == "":
            try:
                path = default_checkpoint()
            except FileNotFoundError as error:
                raise CheckpointLoadError(f"no checkpoint given and the bundled demo model is missing: {error}") from None
        path = Path(path).expanduser()
        if not path.is_file():
            raise CheckpointLoadError(f"cannot load checkpoint {path}: no such file")
        try:
            resolved = resolve_device(device)
        except ValueError as error:
            raise CheckpointLoadError(f"cannot load checkpoint {path}: {error}") from None
        try:
            from latent_maskrcnn.model.checkpoint import load_model

            model = load_model(path, resolved)
        except Exception as error:  # any failure to load is reported with the path and cause
            raise CheckpointLoadError(f"cannot load checkpoint {path}: {type(error).__name__}: {error}") from error
        if warm_up_kernel and str(resolved).split(":")[0] == "cpu":
            _warm_up_kernel()
        return cls(model, settings=settings, model_id=checkpoint_id(path), device=resolved)

    # ----------------------------------------------------------------------- settings
    @property
    def settings(self) -> PipelineSettings:
        return self._settings

    def update_settings(self, **changes: Any) -> PipelineSettings:
        """Validate and apply; takes effect at the next :meth:`process` or :meth:`refresh`."""
        unknown = sorted(set(changes) - set(_SETTING_NAMES))
        if unknown:
            raise ValueError(f"unknown pipeline settings: {', '.join(unknown)}")
        with self._settings_lock:
            self._settings = replace(self._settings, **changes)
            return self._settings

    def set_p(self, p: float) -> PipelineSettings:
        return self.update_settings(p=p)

    def set_mode(self, mode: str) -> PipelineSettings:
        return self.update_settings(mode=mode)

    def set_num_samples(self, num_samples: int) -> PipelineSettings:
        return self.update_settings(num_samples=num_samples)

    # ----------------------------------------------------------------------- processing
    @property
    def has_frame(self) -> bool:
        return self._frame is not None

    def needs_network(self) -> bool:
        """Whether :meth:`refresh` would run the network (the sampling settings changed)."""
        frame = self._frame
        return frame is not None and frame.sampling_key != self._settings.sampling_key()

    def process(self, images: Sequence[np.ndarray], cameras: Sequence[str]) -> list[CameraResult]:
        """Run the model on the synchronised images (uint8 [H, W, 3] RGB, one per camera).

        Raises ValueError for a wrong number of images, a non-RGB uint8 array, or cameras whose
        images differ in size.
        """
        images, cameras = check_images(images, cameras)
        with self._run_lock:
            settings = self._settings
            samples, network_ms = self._run_network(images, settings)
            self._frame = _Frame(images, cameras, samples, settings.sampling_key(), network_ms, {}, settings.mask_threshold)
            return self._aggregate_frame(self._frame, settings, network_ms)

    def refresh(self) -> list[CameraResult] | None:
        """The last frame under the current settings (None before the first frame).

        Re-aggregates the kept samples (re-binarised first when ``mask_threshold`` changed); runs
        the network again only when the sampling changed (num_samples, flip_samples, seed, or a
        switch to or from prior_mean).
        """
        with self._run_lock:
            frame = self._frame
            if frame is None:
                return None
            settings = self._settings
            if frame.sampling_key != settings.sampling_key() or not _can_rebinarize(frame, settings):
                samples, network_ms = self._run_network(frame.images, settings)
                frame = _Frame(frame.images, frame.cameras, samples, settings.sampling_key(), network_ms, {},
                               settings.mask_threshold)
                self._frame = frame
                return self._aggregate_frame(frame, settings, network_ms)
            if frame.mask_threshold != settings.mask_threshold:
                start = time.perf_counter()
                frame.samples = [_rebinarized(samples, settings.mask_threshold) for samples in frame.samples]
                frame.prepared, frame.mask_threshold = {}, settings.mask_threshold
                return self._aggregate_frame(frame, settings, (time.perf_counter() - start) * 1000.0)
            return self._aggregate_frame(frame, settings, 0.0)

    def last_samples(self) -> list[list[dict]] | None:
        """The model output kept for the last frame (per camera, the prediction dicts with their
        mask probabilities), as its masks are binarised now; None before the first frame."""
        frame = self._frame
        return None if frame is None else [list(samples) for samples in frame.samples]

    def _run_network(self, images: list[np.ndarray], settings: PipelineSettings) -> tuple[list[list[dict]], float]:
        start = time.perf_counter()
        tensors = image_tensors(images, self.device)
        seed = None if settings.seed < 0 else settings.seed
        sampling = {"num_samples": settings.samples_drawn, "seed": seed, "mode": settings.network_mode,
                    "mask_threshold": settings.mask_threshold, "keep_mask_probabilities": True}
        if settings.flips:
            sampling["flip"] = True
        samples = self.model.sample(tensors, **sampling)
        self.network_calls += 1
        if len(samples) != len(images):
            raise RuntimeError(f"the model returned {len(samples)} results for {len(images)} images")
        return samples, (time.perf_counter() - start) * 1000.0

    def _aggregate_frame(self, frame: _Frame, settings: PipelineSettings, network_ms: float) -> list[CameraResult]:
        start = time.perf_counter()
        outputs = [
            self._aggregate_camera(frame, index, settings) for index in range(len(frame.cameras))
        ]
        elapsed_ms = network_ms + (time.perf_counter() - start) * 1000.0
        results = []
        for camera, output in zip(frame.cameras, outputs):
            results.append(self._to_result(camera, output, settings, elapsed_ms, frame.images[0].shape[:2]))
        return results

    def _aggregate_camera(self, frame: _Frame, index: int, settings: PipelineSettings) -> dict:
        samples = frame.samples[index]
        if settings.mode == "prior_mean":
            return self._aggregate(samples, "prior_mean", settings.p, settings.score_threshold)
        prepared = self._prepared(frame, index, settings.score_threshold)
        return self._aggregate(prepared, settings.mode, settings.p, settings.score_threshold)

    def _prepared(self, frame: _Frame, index: int, score_threshold: float) -> Any:
        """The camera's samples prepared for aggregation, kept for the next re-aggregation."""
        try:
            from latent_maskrcnn.aggregation.aggregate import prepare_prediction_samples
        except ImportError:
            return frame.samples[index]
        cached = frame.prepared.get(index)
        if cached is None or cached[0] > score_threshold:
            cached = (score_threshold, prepare_prediction_samples(frame.samples[index], score_threshold))
            frame.prepared[index] = cached
        return cached[1]

    def _to_result(
        self, camera: str, output: dict, settings: PipelineSettings, elapsed_ms: float, size: tuple[int, int]
    ) -> CameraResult:
        masks = _numpy(output["masks"]).astype(bool).reshape(-1, *size)
        scores = _numpy(output["scores"]).astype(np.float32).reshape(-1)
        labels = _numpy(output["labels"]).astype(np.int64).reshape(-1)
        support = _numpy(output.get("support_counts", np.ones(len(scores)))).astype(np.int64).reshape(-1)
        shown = published_masks(masks, scores, settings.min_mask_area)
        masks = masks[shown]
        return CameraResult(
            camera=camera,
            masks=masks,
            scores=scores[shown],
            labels=labels[shown],
            boxes=tight_boxes(masks),
            support_counts=support[shown],
            mode=settings.mode,
            p=float(settings.p),
            num_samples=settings.samples_drawn,
            model_id=self.model_id,
            inference_time_ms=float(elapsed_ms),
            class_names=self.class_names,
        )


def image_tensors(images: Sequence[np.ndarray], device: str = "cpu") -> list:
    """uint8 [H, W, 3] RGB images as the float [3, H, W] tensors in [0, 1] the model takes."""
    import torch

    return [
        torch.from_numpy(np.require(image, requirements=["C", "W"])).to(device).permute(2, 0, 1).float().div_(255.0)
        for image in images
    ]


def published_masks(masks: np.ndarray, scores: np.ndarray, min_mask_area: int) -> np.ndarray:
    """Indices of the masks the node publishes, in its order: at least ``min_mask_area`` pixels
    (and one), by decreasing score (stable)."""
    kept = np.flatnonzero(masks.sum(axis=(1, 2)) >= max(1, min_mask_area))
    return kept[np.argsort(-scores[kept], kind="stable")]


def _can_rebinarize(frame: _Frame, settings: PipelineSettings) -> bool:
    """Whether the kept samples can be binarised at the settings' mask threshold without the network."""
    from latent_maskrcnn.model.postprocess import MASK_PROBABILITIES

    return frame.mask_threshold == settings.mask_threshold or all(
        MASK_PROBABILITIES in prediction for samples in frame.samples for prediction in samples
    )


def _rebinarized(samples: list[dict], threshold: float) -> list[dict]:
    from latent_maskrcnn.model.postprocess import with_mask_threshold

    return [with_mask_threshold(prediction, threshold) for prediction in samples]


def check_images(images: Sequence[np.ndarray], cameras: Sequence[str]) -> tuple[list[np.ndarray], list[str]]:
    """The images as a list after the checks :meth:`PerceptionPipeline.process` promises."""
    images, cameras = list(images), [str(c) for c in cameras]
    if not images:
        raise ValueError("no images given")
    if len(images) != len(cameras):
        raise ValueError(f"{len(images)} images for {len(cameras)} cameras ({', '.join(cameras)})")
    if len(set(cameras)) != len(cameras):
        raise ValueError(f"camera names must be unique, got {cameras}")
    for camera, image in zip(cameras, images):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, "shape", None)
            dtype = getattr(image, "dtype", type(image).__name__)
            raise ValueError(f"camera {camera}: expected a uint8 [H, W, 3] RGB array, got {dtype} {shape}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"camera {camera}: the image is empty ({image.shape})")
    sizes = {camera: image.shape[:2] for camera, image in zip(cameras, images)}
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{c} {h}x{w}" for c, (h, w) in sizes.items())
        raise ValueError(f"the cameras' images differ in size (height x width): {listing}")
    return images, cameras


def _warm_up_kernel() -> None:
    """Compile (first run: ~20 s) or load (< 1 s) the CPU aggregation kernel; say so when slow,
    since a command that sits silent for 20 s looks hung."""
    from latent_maskrcnn.aggregation import confidence_kernel
    from latent_maskrcnn.aggregation.confidence_masks import warm_up_compiled_kernel

    started = time.perf_counter()
    warm_up_compiled_kernel()
    seconds = time.perf_counter() - started
    if seconds > 2.0:
        where = confidence_kernel.CACHE_PATH or "nowhere writable: compiled again by every process"
        print(f"compiled the CPU aggregation kernel in {seconds:.1f} s (cached in {where})", file=sys.stderr)


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when available else "cpu"; a CUDA device that is absent is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} requested but only {torch.cuda.device_count()} CUDA devices exist")
        return device
    raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {device!r}")


def checkpoint_id(path: str | Path) -> str:
    """``<file stem>@<first 12 hex digits of the file's SHA-256>``: names the exact weights."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{Path(path).stem}@{digest.hexdigest()[:12]}"


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)
