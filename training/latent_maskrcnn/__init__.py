"""Latent-MaskRCNN (Liu et al., ICRA 2023) on torchvision's MaskRCNN, with p-confidence masks,
Union-NMS, prior-mean predictions, metrics, synthetic data and training. Never imports ROS.

The subpackages are the layers: ``model``, ``aggregation``, ``evaluation``, ``training``,
``data`` and ``bench`` (docs/architecture.md). Every name in ``__all__`` is the function or
class of that name, imported from its module on first use; no subpackage shares a public
name, so no import can hide one.
"""
from latent_maskrcnn._exports import export_lazily

# Public names, imported on first use so that `import latent_maskrcnn.<light module>` stays fast.
_LAZY_EXPORTS = {
    "ModelConfig": "model.config",
    "tiny_config": "model.config",
    "LatentMaskRCNN": "model.latent_mask_rcnn",
    "DiagonalGaussian": "model.distributions",
    "kl_divergence": "model.distributions",
    "save_model": "model.checkpoint",
    "load_model": "model.checkpoint",
    "load_weights": "model.checkpoint",
    "read_config": "model.checkpoint",
    "CheckpointError": "model.checkpoint",
    "load_torchvision_maskrcnn_weights": "model.checkpoint",
    "WeightLoadReport": "model.checkpoint",
    "generate_scene": "data.synthetic",
    "make_dataset": "data.synthetic",
    "AmbiguityRates": "data.synthetic",
    "CocoInstanceDataset": "data.coco_dataset",
    "DatasetError": "data.coco_dataset",
    "build_augmentations": "data.coco_dataset",
    "collate": "data.coco_dataset",
    "train": "training.trainer",
    "TrainResult": "training.trainer",
    "TrainConfig": "training.config",
    "ConfigError": "training.config",
    "load_config": "training.config",
    "aggregate": "aggregation.aggregate",
    "confidence_masks": "aggregation.aggregate",
    "union_nms": "aggregation.aggregate",
    "ConfidenceMaskResult": "aggregation.aggregate",
    "UnionNMSResult": "aggregation.aggregate",
    "PreparedSamples": "aggregation.aggregate",
    "prepare_samples": "aggregation.aggregate",
    "prepare_prediction_samples": "aggregation.aggregate",
    "support_size": "aggregation.aggregate",
    "MODES": "aggregation.aggregate",
    "check_mode": "aggregation.aggregate",
    "DatasetMetrics": "evaluation.metrics",
    "evaluate_image": "evaluation.metrics",
    "overlap_matrices": "evaluation.metrics",
    "iou_matrix": "evaluation.metrics",
    "iop_matrix": "evaluation.metrics",
    "iog_matrix": "evaluation.metrics",
    "match_detections": "evaluation.metrics",
    "mr_at_hp": "evaluation.metrics",
    "average_recall": "evaluation.metrics",
    "mask_map": "evaluation.metrics",
    "roc_auc": "evaluation.metrics",
    "GripperSimulation": "evaluation.double_pick",
    "simulate_picks": "evaluation.double_pick",
    "EvaluationSettings": "evaluation.runner",
    "run_methods": "evaluation.runner",
    "write_report": "evaluation.runner",
}

__all__ = sorted(_LAZY_EXPORTS)
export_lazily(__name__, _LAZY_EXPORTS)
