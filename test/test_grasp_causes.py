"""`latent-seg grasp-causes`: the chosen grasp of each scene, split by the kinds of the items
it lifts; hand-built grasps whose answer is known, then the node's pipeline on generated data."""
import json

import numpy as np
import pytest
import torch

from latent_maskrcnn.data.coco_dataset import CocoInstanceDataset
from latent_maskrcnn.data.synthetic import AmbiguityRates, make_dataset
from latent_maskrcnn.evaluation.double_pick import CAUSES
from latent_maskrcnn.evaluation.pair_probe import instance_kinds
from latent_maskrcnn.model.checkpoint import save_model
from latent_maskrcnn.model.config import tiny_config
from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN
from latent_segmentation_ros import cli
from latent_segmentation_ros.core.results import GraspCandidate
from latent_segmentation_ros.replay.grasp_causes import (
    BASELINE,
    CONFIDENCE_MASK,
    PRIOR_MEAN,
    SCENE_CAMERA,
    GraspCauseCounts,
    scene_rgb,
    trace_grasps,
)
from latent_segmentation_ros.replay.runner import build_pair_processor
from latent_segmentation_ros.replay.scoring import grasp_against_truth, grasp_items_touched
from latent_segmentation_ros.replay.sweep import load_baseline

H, W, RADIUS = 40, 64, 3.0


def block(y0, y1, x0, x1):
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def grasp(centres, sealed):
    centres = np.asarray(centres, dtype=np.float32)
    return GraspCandidate(mask_id=0, u=float(centres[:, 0].mean()), v=float(centres[:, 1].mean()), angle=0.0,
                          sealed_cups=int(np.sum(sealed)), total_cups=len(sealed), score=1.0,
                          cup_centers=centres, cup_sealed=np.asarray(sealed, dtype=bool))


LEFT, RIGHT, OTHER = block(10, 30, 10, 32), block(10, 30, 32, 54), block(32, 40, 0, 20)
TRUTH = np.stack([LEFT, RIGHT, OTHER])


def test_a_grasp_across_the_seam_of_a_split_pair_counts_under_pair_seam():
    counts = GraspCauseCounts()
    across = grasp([(24, 20), (40, 20)], [True, True])       # one cup on each half
    counts.add(across, RADIUS, TRUTH, ["pair_half", "pair_half", "plain"])
    assert grasp_items_touched(across, RADIUS, TRUTH).tolist() == [0, 1]
    summary = counts.summary()
    assert (summary["scenes"], summary["grasps"], summary["double_picks"]) == (1, 1, 1)
    assert summary["causes"]["pair_seam"] == 1 and sum(summary["causes"].values()) == 1
    assert summary["combinations"] == {"pair_half+pair_half": 1}
    # the same grasp is a double pick for the scorer behind sweep-p
    assert grasp_against_truth(across, RADIUS, TRUTH)[2]


def test_a_grasp_on_halves_of_two_different_pairs_is_no_seam():
    across = grasp([(24, 20), (40, 20)], [True, True])
    kinds = ["pair_half", "pair_half", "plain"]
    same, different = GraspCauseCounts(), GraspCauseCounts()
    same.add(across, RADIUS, TRUTH, kinds, [5, 5, None])
    different.add(across, RADIUS, TRUTH, kinds, [5, 8, None])
    assert same.summary()["causes"]["pair_seam"] == 1
    assert different.summary()["causes"]["pair_other"] == 1 and different.summary()["causes"]["pair_seam"] == 0


def test_only_sealed_cups_lift_and_a_grasp_on_floor_is_no_item():
    counts = GraspCauseCounts()
    one_side = grasp([(20, 20), (40, 20)], [True, False])     # the cup over the other half is off
    counts.add(one_side, RADIUS, TRUTH, ["pair_half", "pair_half", "plain"])
    counts.add(grasp([(60, 4)], [True]), RADIUS, TRUTH, ["pair_half", "pair_half", "plain"])
    counts.add(grasp([(20, 20)], [False]), RADIUS, TRUTH, None)          # no cup switches on
    counts.add(None, RADIUS, TRUTH, None)                                 # the planner found none
    summary = counts.summary()
    assert summary == {
        "scenes": 4, "grasps": 2, "no_grasp": 2, "on_no_item": 1, "double_picks": 0, "double_pick_rate": 0.0,
        "causes": {cause: 0 for cause in CAUSES}, "combinations": {},
    }


@pytest.mark.parametrize("kinds, cause, combination", [
    (["plain", "plain", "plain"], "plain", "plain+plain"),
    (["glare_stripe", "plain", "plain"], "glare_stripe", "glare_stripe+plain"),
    (["film_bag", "under_film", "plain"], "film", "film_bag+under_film"),
    (None, "unknown", "unknown+unknown"),                                  # data without kinds
    (["plain", "plain"], "unknown", "unknown+unknown"),                    # kinds that do not line up
])
def test_causes_follow_the_kinds_of_the_lifted_items(kinds, cause, combination):
    counts = GraspCauseCounts()
    counts.add(grasp([(24, 20), (40, 20)], [True, True]), RADIUS, TRUTH, kinds)
    summary = counts.summary()
    assert summary["causes"][cause] == 1 and summary["combinations"] == {combination: 1}


# ---------------------------------------------------------------------------- the node's pipeline
SMALL_GRIPPER = {"cup_rows": 2, "cup_cols": 2, "cup_radius": 1.5, "cup_spacing": 4.0}  # for 60 x 80 scenes

@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    make_dataset(root, images=3, seed=11, height=60, width=80, rates=AmbiguityRates(seamless_pair=1.0), progress=False)
    return root


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(1)
    save_model(LatentMaskRCNN(tiny_config()).eval(), folder / "latent.safetensors")
    # one detection per image with a mask of a few hundred pixels, so that the planner finds grasps
    torch.manual_seed(5)
    save_model(LatentMaskRCNN(tiny_config(latent_dim=0, box_detections_per_img=1)).eval(), folder / "maskrcnn.safetensors")
    return folder / "latent.safetensors", folder / "maskrcnn.safetensors"


def test_scene_rgb_is_the_camera_image_of_a_data_set_image():
    image = torch.tensor([[[0.0, 1.0]], [[0.5, 0.2]], [[1.0, 0.0]]])          # [3, 1, 2]
    assert scene_rgb(image).tolist() == [[[0, 128, 255], [255, 51, 0]]]
    assert scene_rgb(image).dtype == np.uint8


def test_trace_counts_each_scene_once_per_method_as_the_scorer_does(scenes, models):
    checkpoint, baseline_checkpoint = models
    setup = build_pair_processor(checkpoint, mode="confidence_mask", mask_threshold=0.5, samples=2, score_threshold=0.0, min_mask_area=1, cameras=[SCENE_CAMERA],
                                 grasp_overrides=SMALL_GRIPPER)
    baseline = load_baseline(baseline_checkpoint, setup)
    dataset = CocoInstanceDataset(scenes / "annotations.json", scenes / "images")
    result = trace_grasps(setup, dataset, p=0.9, baseline=baseline)
    assert list(result["methods"]) == [CONFIDENCE_MASK, PRIOR_MEAN, BASELINE]
    assert result["scenes"] == 3 and result["scenes_without_kinds"] == 0
    for summary in result["methods"].values():
        assert summary["scenes"] == 3 and summary["grasps"] + summary["no_grasp"] == 3
        assert sum(summary["causes"].values()) == summary["double_picks"] == sum(summary["combinations"].values())
    assert result["methods"][BASELINE]["grasps"] > 0
    # The baseline's row, recomputed scene by scene with the planner and sweep-p's grasp scorer.
    doubles = on_no_item = grasps = 0
    for index in range(len(dataset)):
        image, target = dataset[index]
        truth = target["masks"].numpy().astype(bool)
        (result_of_scene,) = baseline.process([scene_rgb(image)], [SCENE_CAMERA])
        candidates = setup.planner.plan_result(result_of_scene)
        if candidates and candidates[0].cup_sealed.any():
            grasps += 1
            _, touched, double = grasp_against_truth(candidates[0], setup.cup_radius, truth)
            doubles += double
            on_no_item += touched == 0
        assert len(instance_kinds(dataset, index, target)) == truth.shape[0]
    row = result["methods"][BASELINE]
    assert (row["grasps"], row["double_picks"], row["on_no_item"]) == (grasps, doubles, on_no_item)


def test_cli_writes_the_table_and_refuses_a_missing_data_folder(scenes, models, tmp_path, capsys):
    checkpoint, baseline_checkpoint = models
    code = cli.main(["grasp-causes", "--data", str(scenes), "--out", str(tmp_path / "out"), "--checkpoint", str(checkpoint),
                     "--baseline", str(baseline_checkpoint), "--samples", "2", "--score-threshold", "0",
                     "--max-scenes", "2", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| MaskRCNN baseline |" in printed and "| prior mean |" in printed and "pair_seam" in printed
    written = json.loads((tmp_path / "out" / "grasp_causes.json").read_text())
    assert written["scenes"] == 2 and written["num_samples"] == 2
    assert "| confidence masks p = 0.90 |" in (tmp_path / "out" / "grasp_causes.md").read_text()
    code = cli.main(["grasp-causes", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "x"),
                     "--checkpoint", str(checkpoint), "--no-progress"])
    assert code == 2
    assert "annotation file" in capsys.readouterr().err
