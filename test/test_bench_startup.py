"""`latent-seg bench startup` where ROS 2 and the built messages exist: one start of the real
segmentation node, its log read for 'loaded' and 'ready', the first answer timed; a bad option
is refused before anything starts."""
import json

import pytest

from latent_segmentation_ros import cli


def test_a_bad_repeat_count_is_refused(capsys):
    assert cli.main(["bench", "startup", "--repeats", "0"]) == 2
    assert "--repeats must be >= 1" in capsys.readouterr().err


def test_one_start_is_measured_from_the_nodes_own_log(ros_domain, tmp_path, capsys):
    pytest.importorskip("rclpy")
    pytest.importorskip("latent_segmentation_ros.msg", reason="messages not built (colcon build)")
    import torch

    from latent_maskrcnn.model.checkpoint import save_model
    from latent_maskrcnn.model.config import tiny_config
    from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN

    torch.manual_seed(0)
    checkpoint = save_model(LatentMaskRCNN(tiny_config()), tmp_path / "tiny.safetensors")
    assert cli.main(["bench", "startup", "--repeats", "1", "--checkpoint", str(checkpoint), "--device", "cpu",
                     "--num-samples", "2", "--height", "64", "--width", "80", "--domain-id", str(ros_domain),
                     "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    (run,) = result["install"]["runs"]
    assert run["exit_code"] == 0
    assert 0 < run["loaded_in_s"] <= run["ready_s"]  # the model load is part of the start
    assert run["ready_s"] < run["first_answer_s"] + 1.0  # ready (log) before the first answer (measured)
    assert result["install"]["median"]["first_answer_s"] == run["first_answer_s"]
    assert "baseline" not in result and "ratio_to_baseline" not in result
