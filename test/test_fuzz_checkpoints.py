"""Fuzzing checkpoint loading: random bytes, truncated and damaged safetensors files, and wrong or
missing metadata (format, version, a config with any field set to any JSON value). Every file
either loads into a working model or is refused with a CheckpointError; nothing is unpickled, no
model is built before the file is known to hold all of its weights, and memory stays within a
few times the file's size."""
from __future__ import annotations

import json
import math
import struct
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from fuzzing import MIB, bounded, fuzz
from latent_maskrcnn.model.checkpoint import (
    CONFIG_CEILINGS,
    CheckpointError,
    load_model,
    load_torchvision_maskrcnn_weights,
    load_weights,
    read_config,
    save_model,
)
from latent_maskrcnn.model.config import tiny_config
from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN

CONFIG = tiny_config(backbone="mobilenet_v3_fpn")  # the smallest model: 3.3 M weights


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A valid checkpoint (float16: 6.6 MB), its bytes and the length of its JSON header."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("checkpoint") / "model.safetensors"
    save_model(LatentMaskRCNN(CONFIG).eval(), path, dtype="float16")
    content = path.read_bytes()
    return path, content, struct.unpack("<Q", content[:8])[0]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    return LatentMaskRCNN(CONFIG).eval()


def attempt(path: Path, model=None):
    """Every loader on ``path``: None when all refused it with a CheckpointError, else the model
    ``load_model`` built (the others then loaded too)."""
    outcomes = []
    for loader in (load_model, read_config, lambda p: load_weights(model, p),
                   lambda p: load_torchvision_maskrcnn_weights(model, p)):
        if loader is not load_model and model is None:
            continue
        try:
            outcomes.append(loader(path))
        except CheckpointError as error:
            assert str(path) in str(error) or path.name in str(error) or "state dict" in str(error), error
            outcomes.append(None)
    loaded = outcomes[0]
    if loaded is not None:
        assert isinstance(loaded, LatentMaskRCNN) and not loaded.training
    return loaded


def written(where: str, content: bytes, name: str = "fuzzed.safetensors") -> Path:
    path = Path(where) / name
    path.write_bytes(content)
    return path


# torch.load warns about the pickle protocol a random first byte names, then refuses the file
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@fuzz(800)
@given(content=st.one_of(
    st.binary(max_size=2048),
    # a plausible header length, then anything: what the safetensors parser reads first
    st.tuples(st.integers(0, 4096), st.binary(max_size=2048)).map(lambda t: struct.pack("<Q", t[0]) + t[1]),
    st.tuples(st.integers(2, 512), st.text(max_size=400)).map(
        lambda t: struct.pack("<Q", len(t[1].encode())) + t[1].encode() + bytes(t[0])),
), name=st.sampled_from(["fuzzed.safetensors", "fuzzed.pt", "fuzzed"]))
def test_random_bytes_are_refused(content, name, model):
    # resident memory: torch.load (for a file that is not safetensors) asks for a buffer as large
    # as a pickled string claims, up to 4 GiB for a 5-byte file, but never touches it
    with tempfile.TemporaryDirectory() as where, bounded(seconds=20, max_bytes=32 * MIB, measure="resident"):
        assert attempt(written(where, content, name), model) is None
    event("refused")


@fuzz(150)
@given(fraction=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_checkpoints_are_refused(checkpoint, fraction):
    _, content, _ = checkpoint
    with tempfile.TemporaryDirectory() as where, bounded(seconds=20, max_bytes=3 * len(content) + 8 * MIB,
                                                          measure="resident"):
        assert attempt(written(where, content[: int(fraction * len(content))])) is None


@fuzz(150)
@given(edits=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8))
def test_a_damaged_header_is_refused_or_still_describes_the_weights(checkpoint, edits):
    path, content, header_length = checkpoint
    damaged = bytearray(content)
    for fraction, value in edits:  # the 8-byte length and the JSON header: what the loader trusts
        damaged[int(fraction * (header_length + 8))] = value
    with tempfile.TemporaryDirectory() as where, bounded(seconds=60, max_bytes=4 * len(content) + 64 * MIB,
                                                          measure="resident"):
        loaded = attempt(written(where, bytes(damaged)))
    event("refused" if loaded is None else "loaded")
    if loaded is not None:  # a change the format tolerates (e.g. JSON white space): the same weights
        reference = load_model(path)
        for key, value in reference.state_dict().items():
            assert torch.equal(value, loaded.state_dict()[key]), key


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


@st.composite
def metadata(draw):
    """The metadata of a checkpoint with some of it wrong or missing: format, version, dtype, and
    a config with fields set to other JSON values (huge, negative, of another type) or removed."""
    config = CONFIG.to_dict()
    fields = sorted(config)
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(fields + ["no_such_field"]))
        change = draw(st.sampled_from(["value", "huge", "remove"]))
        if change == "remove":
            config.pop(name, None)
        elif change == "huge":
            config[name] = draw(st.sampled_from([10**6, 10**9, 2**63, -1, 0]))
        else:
            config[name] = draw(JSON_VALUES)
        event(f"config: {change}")
    text = json.dumps(config)
    if draw(st.integers(0, 9)) == 0:
        text = draw(st.sampled_from(["", "[", "[]", "null", "[" * 5000 + "]" * 5000, text[: len(text) // 2]]))
        event("config: not an object")
    values = {"format": "latent_maskrcnn", "format_version": "1", "config": text, "dtype": "float16"}
    for key in draw(st.lists(st.sampled_from(sorted(values)), max_size=2, unique=True)):
        if draw(st.booleans()):
            del values[key]
        else:
            values[key] = draw(st.text(max_size=12))
        event(f"{key}: changed")
    return values


@fuzz(80)
@given(values=metadata())
def test_wrong_or_missing_metadata_is_refused_before_a_model_is_built(values):
    """With a single stand-in tensor, no config can fit: every file must be refused, however large
    a model its config asks for (it is compared on the meta device, never built)."""
    with tempfile.TemporaryDirectory() as where:
        path = Path(where) / "metadata.safetensors"
        save_file({"weight": torch.zeros(2)}, str(path), metadata=values)
        with bounded(seconds=30, max_bytes=32 * MIB):
            assert attempt(path) is None


def test_regression_a_config_asking_for_a_huge_model_is_refused_without_building_it(checkpoint, tmp_path):
    """Found by fuzzing the metadata: load_model built the model a file's config describes before
    comparing it with the file's tensors, so a config of fpn_channels 10^6 (a few bytes of JSON)
    asked for terabytes; and num_classes 10^12 without class names made up 10^12 names."""
    path, _, _ = checkpoint
    with safe_open(str(path), "pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = handle.metadata()
    config = json.loads(metadata["config"])
    for name, value, reason in (
        ("fpn_channels", 10**6, "does not fit the model: .*shape mismatches"),
        ("num_classes", 10**12, f"num_classes {10**12} exceeds {CONFIG_CEILINGS['num_classes']}"),
        ("class_names", None, "class_names must be a list"),
    ):
        edited = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(edited), metadata={**metadata, "config": json.dumps({**config, name: value})})
        with bounded(seconds=30, max_bytes=64 * MIB):
            with pytest.raises(CheckpointError, match=reason):
                load_model(edited)


def test_regression_nan_weights_are_refused(checkpoint, tmp_path):
    """Found by fuzzing the weights' bytes: a flipped exponent (NaN or infinity) loaded silently and
    the model then scored every detection NaN."""
    path, _, _ = checkpoint
    with safe_open(str(path), "pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = handle.metadata()
    tensors["roi_heads.box_head.fc6.weight"][0, 0] = math.nan
    edited = tmp_path / "nan.safetensors"
    save_file(tensors, str(edited), metadata=metadata)
    with pytest.raises(CheckpointError, match="NaN or infinite values .* in roi_heads.box_head.fc6.weight"):
        load_model(edited)


def test_regression_deeply_nested_config_json_is_refused(tmp_path):
    """Found by fuzzing the metadata: a config of 5000 nested lists raised RecursionError out of
    json.loads instead of a CheckpointError."""
    path = tmp_path / "nested.safetensors"
    save_file({"weight": torch.zeros(2)}, str(path),
              metadata={"format": "latent_maskrcnn", "format_version": "1", "config": "[" * 5000 + "]" * 5000})
    with pytest.raises(CheckpointError, match="config that is not JSON"):
        read_config(path)
