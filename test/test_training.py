"""The trainer: config checks, KL and learning-rate schedules, a loss that goes down, exact
resume, TensorBoard scalars, the baseline switch, and DistributedDataParallel over Gloo."""
from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file, save_file

from latent_maskrcnn.data.coco_dataset import DatasetError
from latent_maskrcnn.data.synthetic import make_dataset
from latent_maskrcnn.model.checkpoint import read_config
from latent_maskrcnn.training.config import ConfigError, ScheduleSection, TrainConfig, load_config
from latent_maskrcnn.training.state import ResumeError
from latent_maskrcnn.training.trainer import FINAL_MODEL, TENSORBOARD_DIR, ShardedEpochSampler, baseline_config, train
from latent_segmentation_ros import cli

TINY_MODEL = {
    "backbone": "mobilenet_v3_fpn",
    "min_size": 48,
    "max_size": 64,
    "fpn_channels": 16,
    "box_head_dim": 32,
    "mask_head_channels": 8,
    "anchor_sizes": [8, 16, 32, 64, 128],
    "rpn_pre_nms_top_n_train": 200,
    "rpn_post_nms_top_n_train": 64,
    "rpn_batch_size_per_image": 64,
    "box_batch_size_per_image": 32,
    "latent_dim": 4,
    "prior_channels": 8,
    "prior_hidden": 16,
    "encoder_channels": 8,
    "encoder_hidden": 16,
    "encoder_graph_layers": 1,
    "encoder_heads": 2,
}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_data")
    make_dataset(root, images=4, seed=5, height=48, width=64, progress=False)
    return root


def recipe(data_root, output_dir, **sections) -> dict:
    document = {
        "model": dict(TINY_MODEL),
        "data": {"train_annotations": str(data_root / "annotations.json"), "train_images": str(data_root / "images"),
                 "batch_size": 2},
        "optimizer": {"name": "adamw", "lr": 0.002, "weight_decay": 0.0, "grad_clip_norm": 5.0},
        "schedule": {"steps": 6, "lr_warmup_steps": 0, "lr_decay": "constant", "kl_schedule": "constant",
                     "beta_max": 0.01},
        "run": {"output_dir": str(output_dir), "seed": 3, "log_every": 2, "checkpoint_every": 3},
    }
    for section, values in sections.items():
        document[section].update(values)
    return document


def write_recipe(path, document) -> str:
    path.write_text(yaml.safe_dump(document))
    return str(path)


# ---------------------------------------------------------------------------- config
def test_unknown_keys_are_refused_with_a_suggestion(tmp_path, tiny_data):
    document = recipe(tiny_data, tmp_path / "run")
    document["schedule"]["stepz"] = 10
    with pytest.raises(ConfigError, match=r"schedule\.stepz.*did you mean 'steps'"):
        load_config(write_recipe(tmp_path / "a.yaml", document))
    document = recipe(tiny_data, tmp_path / "run")
    document["model"]["latnt_dim"] = 3
    with pytest.raises(ConfigError, match=r"model\.latnt_dim.*latent_dim"):
        load_config(write_recipe(tmp_path / "b.yaml", document))
    document = recipe(tiny_data, tmp_path / "run")
    document["optimiser"] = {}
    with pytest.raises(ConfigError, match="unknown config section 'optimiser'.*optimizer"):
        load_config(write_recipe(tmp_path / "c.yaml", document))


def test_overrides(tmp_path, tiny_data):
    path = write_recipe(tmp_path / "r.yaml", recipe(tiny_data, tmp_path / "run"))
    config = load_config(path, ["schedule.steps=40", "model.latent_dim=0", "data.scale_range=null"])
    assert config.schedule.steps == 40 and config.model["latent_dim"] == 0 and config.data.scale_range is None
    with pytest.raises(ConfigError, match="unknown config key 'run.outdir'"):
        load_config(path, ["run.outdir=x"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(path, ["steps"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_classes_come_from_the_data_and_must_agree(tmp_path, tiny_data):
    document = recipe(tiny_data, tmp_path / "run")
    config = TrainConfig.from_dict(document)
    assert config.model_config(["__background__", "item"]).num_classes == 2
    document["model"]["num_classes"] = 5
    with pytest.raises(ConfigError, match="num_classes is 5"):
        TrainConfig.from_dict(document).model_config(["__background__", "item"])


def test_kl_schedules():
    warmup = ScheduleSection(steps=100, kl_schedule="warmup", beta_max=2.0, kl_zero_fraction=0.3, kl_ramp_fraction=0.4)
    assert [warmup.beta(s) for s in (0, 29, 30, 50, 70, 99)] == [0.0, 0.0, 0.0, 1.0, 2.0, 2.0]
    two_stage = ScheduleSection(steps=100, kl_schedule="two_stage", beta_max=1e-4, stage2_fraction=0.8, stage2_lr=2e-4,
                                lr_warmup_steps=0, lr_decay="constant")
    assert two_stage.beta(79) == 0.0 and two_stage.beta(80) == 1e-4
    assert two_stage.lr(0.02, 79) == 0.02 and two_stage.lr(0.02, 80) == 2e-4
    constant = ScheduleSection(kl_schedule="constant", beta_max=0.5)
    assert constant.beta(0) == 0.5
    cosine = ScheduleSection(steps=100, lr_warmup_steps=10, lr_warmup_factor=0.1, lr_decay="cosine")
    assert cosine.lr(1.0, 0) == pytest.approx(0.1) and cosine.lr(1.0, 100) == pytest.approx(0.0)
    assert cosine.lr(1.0, 50) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="kl_schedule"):
        ScheduleSection(kl_schedule="linear")
    with pytest.raises(ConfigError, match="must not exceed 1"):
        ScheduleSection(kl_zero_fraction=0.7, kl_ramp_fraction=0.5)


def test_sampler_deals_disjoint_whole_batches_and_resumes_mid_epoch():
    ranks = [ShardedEpochSampler(11, batch_size=2, world_size=2, rank=r, seed=1) for r in range(2)]
    for sampler in ranks:
        sampler.set_position(epoch=3)
    keys = [list(sampler) for sampler in ranks]
    indices = [index for rank_keys in keys for _, index in rank_keys]
    assert len(indices) == 8 and len(set(indices)) == 8 and {epoch for epoch, _ in keys[0]} == {3}
    ranks[0].set_position(epoch=3, skip_batches=1)
    assert list(ranks[0]) == keys[0][2:]
    with pytest.raises(DatasetError, match="fewer than one batch"):
        ShardedEpochSampler(3, batch_size=2, world_size=2, rank=0, seed=1)


def test_grouped_sampler_keeps_the_labellings_of_one_image_in_one_batch():
    groups = [[0, 5], [1, 6], [2, 7], [3, 8], [4, 9]]
    sampler = ShardedEpochSampler(10, batch_size=4, world_size=1, rank=0, seed=2, groups=groups)
    keys = [index for _, index in sampler]
    assert len(keys) == 8 and sampler.batches_per_epoch == 2
    batches = [keys[:4], keys[4:]]
    for batch in batches:
        assert sorted(batch[:2]) in groups and sorted(batch[2:]) in groups
    sampler.set_position(0, skip_batches=1)
    assert [index for _, index in sampler] == batches[1]
    with pytest.raises(DatasetError, match="groups of one size"):
        ShardedEpochSampler(10, batch_size=3, world_size=1, rank=0, seed=2, groups=groups)
    with pytest.raises(DatasetError, match="groups of one size"):
        ShardedEpochSampler(10, batch_size=4, world_size=1, rank=0, seed=2, groups=[[0, 1, 2], [3, 4]])


def test_ungrouped_sampler_order_is_unchanged_by_singleton_groups():
    plain = ShardedEpochSampler(9, batch_size=2, world_size=1, rank=0, seed=3)
    singletons = ShardedEpochSampler(9, batch_size=2, world_size=1, rank=0, seed=3,
                                     groups=[[index] for index in range(9)])
    assert list(plain) == list(singletons)


# ---------------------------------------------------------------------------- training runs
def test_overfitting_two_images_lowers_the_loss(tmp_path):
    data = tmp_path / "two"
    make_dataset(data, images=2, seed=8, height=48, width=64, progress=False)
    document = recipe(data, tmp_path / "run", data={"hflip": 0.0, "scale_range": None, "color_jitter": None},
                      schedule={"steps": 24}, run={"checkpoint_every": 100, "log_every": 4})
    result = train(TrainConfig.from_dict(document), progress=False)
    totals = [entry["total"] for entry in result.history]
    assert len(totals) == 24 and result.step == 24
    first, last = sum(totals[:4]) / 4, sum(totals[-4:]) / 4
    assert last < 0.75 * first, totals
    assert all("loss_kl" in entry and "loss_mask" in entry for entry in result.history)
    assert (tmp_path / "run" / FINAL_MODEL).is_file()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / TENSORBOARD_DIR))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/total", "loss/loss_mask", "kl/loss_kl", "kl/beta", "lr", "grad_norm"} <= tags
    assert [event.step for event in events.Scalars("loss/total")] == [4, 8, 12, 16, 20, 24]


def test_resume_continues_exactly(tmp_path, tiny_data):
    document = recipe(tiny_data, tmp_path / "full", schedule={"kl_schedule": "warmup", "kl_zero_fraction": 0.3,
                                                              "kl_ramp_fraction": 0.3, "prior_mean_coin": True},
                      run={"keep_checkpoints": 5})
    full = train(TrainConfig.from_dict(document), progress=False)
    checkpoints = sorted(p.name for p in (tmp_path / "full" / "checkpoints").glob("step_*"))
    assert checkpoints == ["step_0000003", "step_0000006"]

    document["run"]["output_dir"] = str(tmp_path / "resumed")
    resumed = train(TrainConfig.from_dict(document), resume=tmp_path / "full" / "checkpoints" / "step_0000003", progress=False)
    assert resumed.step == 6 and len(resumed.history) == 3
    assert resumed.history == full.history[3:]
    a, b = load_file(str(tmp_path / "full" / FINAL_MODEL)), load_file(str(tmp_path / "resumed" / FINAL_MODEL))
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)

    document["run"]["output_dir"] = str(tmp_path / "full")
    with pytest.raises(ConfigError, match="already holds a training run"):
        train(TrainConfig.from_dict(document), progress=False)
    document["optimizer"]["lr"] = 0.5
    with pytest.raises(ResumeError, match=r"optimizer\.lr"):
        train(TrainConfig.from_dict(document), resume=tmp_path / "full" / "checkpoints" / "step_0000003", progress=False)
    with pytest.raises(ResumeError, match="no checkpoint"):
        train(TrainConfig.from_dict(document), resume=tmp_path / "nowhere", progress=False)


def test_images_without_instances_train(tmp_path, tiny_data):
    document = json.loads((tiny_data / "annotations.json").read_text())
    document["annotations"] = []
    annotations = tmp_path / "empty.json"
    annotations.write_text(json.dumps(document))
    recipe_document = recipe(tiny_data, tmp_path / "run", data={"train_annotations": str(annotations)},
                             schedule={"steps": 2})
    result = train(TrainConfig.from_dict(recipe_document), progress=False)
    assert result.step == 2
    assert all(torch.isfinite(torch.tensor(entry["total"])) for entry in result.history)


def test_train_command_baseline_and_bad_input(tmp_path, tiny_data, capsys):
    config = write_recipe(tmp_path / "r.yaml", recipe(tiny_data, tmp_path / "run"))
    assert cli.main(["train", "--config", config, "--baseline", "--no-progress", "schedule.steps=2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2
    assert read_config(tmp_path / "run_baseline" / FINAL_MODEL).latent_dim == 0
    assert not (tmp_path / "run").exists()
    assert baseline_config(load_config(config)).model["latent_dim"] == 0
    assert cli.main(["train", "--config", config, "--baseline", "--resume", "--no-progress", "schedule.steps=3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 3 and summary["resumed_from"] == 2

    assert cli.main(["train", "--config", config, "schedule.stepz=3"]) == 2
    assert "schedule.stepz" in capsys.readouterr().err
    missing = write_recipe(tmp_path / "m.yaml", recipe(tmp_path / "absent", tmp_path / "run2"))
    assert cli.main(["train", "--config", missing]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "run2").exists()


# ---------------------------------------------------------------------------- DistributedDataParallel
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, document: dict, out_dir: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    result = train(TrainConfig.from_dict(document), progress=False)
    state = {key: value.detach().clone().contiguous() for key, value in result.model.state_dict().items()}
    save_file(state, os.path.join(out_dir, f"replica{rank}.safetensors"))
    with open(os.path.join(out_dir, f"history{rank}.json"), "w") as handle:
        json.dump(result.history, handle)


def test_ddp_replicas_stay_identical(tmp_path, tiny_data):
    run_dir = tmp_path / "run"
    document = recipe(tiny_data, run_dir, data={"batch_size": 1}, schedule={"steps": 3}, run={"checkpoint_every": 2})
    mp.spawn(_ddp_worker, args=(2, _free_port(), document, str(tmp_path)), nprocs=2, join=True)
    replicas = [load_file(str(tmp_path / f"replica{rank}.safetensors")) for rank in range(2)]
    assert replicas[0].keys() == replicas[1].keys()
    assert all(torch.equal(replicas[0][key], replicas[1][key]) for key in replicas[0])
    initial = load_file(str(run_dir / "checkpoints" / "step_0000002" / "model.safetensors"))
    assert any(not torch.equal(initial[key], replicas[0][key]) for key in initial)
    histories = [json.loads((tmp_path / f"history{rank}.json").read_text()) for rank in range(2)]
    assert histories[0][0]["total"] != histories[1][0]["total"], "both processes saw the same images"
    # only the main process writes
    assert len(list((run_dir / TENSORBOARD_DIR).iterdir())) == 1
    assert json.loads((run_dir / "training_summary.json").read_text())["world_size"] == 2


# ---------------------------------------------------------------------------- shipped recipes
CONFIG_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "training", "configs")


@pytest.mark.parametrize("name", sorted(p for p in os.listdir(CONFIG_DIR) if p.endswith(".yaml")))
def test_shipped_configs_load(name):
    config = load_config(os.path.join(CONFIG_DIR, name))
    assert config.model_config(["__background__", "item"]).num_classes == 2


def test_demo_model_fits_the_size_limit():
    from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN

    config = load_config(os.path.join(CONFIG_DIR, "demo.yaml"))
    model = LatentMaskRCNN(config.model_config(["__background__", "item"]))
    stored_bytes = sum(t.numel() * (2 if t.is_floating_point() else t.element_size()) for t in model.state_dict().values())
    assert config.run.save_dtype == "float16" and stored_bytes < 20e6
    assert config.model["latent_dim"] > 0 and config.schedule.kl_schedule == "warmup"


def test_probe_runs_at_every_checkpoint_and_survives_a_resume(tmp_path, tiny_data):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from latent_maskrcnn.data.synthetic import AmbiguityRates

    held_out = tmp_path / "held_out"
    make_dataset(held_out, images=3, seed=9, height=48, width=64, progress=False,
                 rates=AmbiguityRates(seamless_pair=1.0))
    document = recipe(tiny_data, tmp_path / "run", schedule={"steps": 4}, run={"checkpoint_every": 2})
    document["probe"] = {"annotations": str(held_out / "annotations.json"), "max_images": 2, "samples": 2}
    result = train(TrainConfig.from_dict(document), progress=False)
    assert result.step == 4
    run_dir = tmp_path / "run"
    entries = [json.loads(line) for line in (run_dir / "probe.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in entries] == [2, 4]
    for entry in entries:
        assert entry["pairs"] == 2 and entry["num_samples"] == 2 and entry["seconds"] > 0
        assert set(entry["methods"]) == {"confidence_mask", "prior_mean"}
    summary = json.loads((run_dir / "training_summary.json").read_text())
    assert [row["step"] for row in summary["probe"]["history"]] == [2, 4]
    assert summary["probe"]["last"]["step"] == 4 and summary["probe_seconds"] > 0
    events = EventAccumulator(str(run_dir / TENSORBOARD_DIR))
    events.Reload()
    assert [event.step for event in events.Scalars("probe/samples_mixed")] == [2, 4]
    assert {"probe/confidence_mask_seam_covered", "probe/prior_mean_seam_covered", "time/probe_seconds"} <= set(
        events.Tags()["scalars"])

    # resuming from step 2 drops the stale step-4 entry and writes it again; probe keys may change
    document["schedule"]["steps"] = 6
    document["probe"]["samples"] = 3
    train(TrainConfig.from_dict(document), resume=run_dir / "checkpoints" / "step_0000002", progress=False)
    entries = [json.loads(line) for line in (run_dir / "probe.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in entries] == [2, 4, 6]
    assert [entry["num_samples"] for entry in entries] == [2, 3, 3]


def test_the_probe_of_a_baseline_run_reads_its_single_prediction(tmp_path, tiny_data):
    from latent_maskrcnn.data.synthetic import AmbiguityRates

    held_out = tmp_path / "held_out"
    make_dataset(held_out, images=1, seed=9, height=48, width=64, progress=False,
                 rates=AmbiguityRates(seamless_pair=1.0))
    document = recipe(tiny_data, tmp_path / "run", schedule={"steps": 2}, run={"checkpoint_every": 2})
    document["probe"] = {"annotations": str(held_out / "annotations.json"), "max_images": 1}
    result = train(baseline_config(TrainConfig.from_dict(document)), progress=False)
    entries = [json.loads(line) for line in (result.output_dir / "probe.jsonl").read_text().splitlines()]
    assert len(entries) == 1 and entries[0]["pairs"] == 1
    assert entries[0]["samples"] is None and entries[0]["num_samples"] == 1
    assert set(entries[0]["methods"]) == {"maskrcnn"}


def test_probe_config_is_checked(tmp_path, tiny_data):
    document = recipe(tiny_data, tmp_path / "run")
    document["probe"] = {"images": str(tiny_data / "images")}
    with pytest.raises(ConfigError, match="probe.annotations"):
        TrainConfig.from_dict(document)
    document["probe"] = {"annotations": "x.json", "max_imgs": 3}
    with pytest.raises(ConfigError, match="did you mean 'max_images'"):
        TrainConfig.from_dict(document)
    document["probe"] = {"annotations": str(tmp_path / "missing.json")}
    with pytest.raises(DatasetError, match="does not exist"):
        train(TrainConfig.from_dict(document), progress=False)
