"""data.synthetic: determinism, Market-1501 layout and naming, protocol invariants, caching."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from data._synth_draw import PALETTE, draw_identity
from data.images import load_image
from data.layouts import load_dataset
from data.synthetic import (
    MANIFEST,
    PRESETS,
    SyntheticConfig,
    contact_sheet,
    count_images,
    ensure_synthetic,
    generate,
    main,
    read_manifest,
)

SMALL = PRESETS["small"]
# Market-1501: 4-digit id (or -1), camera 1..6 here, sequence s1..s6, 6-digit frame, 2-digit box.
NAME = re.compile(r"^(-1|\d{4})_c([1-9])s[1-6]_\d{6}_\d{2}\.jpg$")
SPLITS = ("bounding_box_train", "query", "bounding_box_test")


def _digest(root: Path, pattern: str = "*.jpg") -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob(pattern))
    }


def _parse(folder: Path) -> list[tuple[int, int]]:
    """(id, camera) of every file, parsed with the test's own regex."""
    out = []
    for p in sorted(folder.iterdir()):
        match = NAME.match(p.name)
        assert match, f"bad Market-1501 name {p.name} in {folder.name}"
        out.append((int(match.group(1)), int(match.group(2))))
    return out


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("syn") / "small", seed=0, config=SMALL)


def test_deterministic_and_seed_dependent(small_root: Path, tmp_path: Path):
    again = generate(tmp_path / "again", seed=0, config=SMALL)
    assert _digest(again) == _digest(small_root)
    other = generate(tmp_path / "other", seed=1, config=SMALL)
    assert set(_digest(other).values()).isdisjoint(_digest(small_root).values())


def test_images_do_not_depend_on_other_identities(small_root: Path, tmp_path: Path):
    # Every image has its own generator: fewer test ids and no junk leave training bytes alone.
    fewer = dataclasses.replace(SMALL, num_test_ids=3, num_junk=0)
    other = generate(tmp_path / "fewer", seed=0, config=fewer)
    train = "bounding_box_train/*.jpg"
    assert _digest(other, train) == _digest(small_root, train)


def test_market_layout_names_and_images(small_root: Path):
    assert sorted(p.name for p in small_root.iterdir()) == sorted([*SPLITS, MANIFEST])
    for split in SPLITS:
        assert _parse(small_root / split), split
    for path in small_root.rglob("*.jpg"):
        image = load_image(path)
        assert image.shape == (128, 64, 3) and image.dtype == np.uint8, path.name
    ds = load_dataset("market1501", small_root)
    assert ds.num_train_pids == SMALL.num_train_ids
    assert ds.num_train_cams == SMALL.num_cameras


def test_protocol_invariants(small_root: Path):
    train = _parse(small_root / "bounding_box_train")
    query = _parse(small_root / "query")
    gallery = _parse(small_root / "bounding_box_test")
    train_ids = {pid for pid, _ in train}
    test_ids = {pid for pid, _ in query}
    assert len(train_ids) == SMALL.num_train_ids and len(test_ids) == SMALL.num_test_ids
    assert train_ids.isdisjoint(test_ids)
    # Distractors (0000) and junk (-1) only in the gallery.
    assert not {0, -1} & (train_ids | test_ids)
    gallery_ids = [pid for pid, _ in gallery]
    assert gallery_ids.count(0) == SMALL.num_distractors
    assert gallery_ids.count(-1) == SMALL.num_junk
    assert {pid for pid in gallery_ids if pid > 0} == test_ids
    # One query per identity per camera; >= 2 cameras per test id; a cross-camera match each.
    assert len(query) == len(set(query))
    cams = defaultdict(set)
    for pid, cam in query:
        cams[pid].add(cam)
    assert all(len(c) >= 2 for c in cams.values())
    for pid, cam in query:
        assert any(g == pid and c != cam for g, c in gallery), (pid, cam)
    # Training ids also appear in >= 2 cameras (cross-camera pairs for XQDA).
    train_cams = defaultdict(set)
    for pid, cam in train:
        train_cams[pid].add(cam)
    assert all(len(c) >= 2 for c in train_cams.values())
    counts = read_manifest(small_root)["counts"]
    assert counts == count_images(SMALL, seed=0)
    assert (counts["train_images"], counts["query"], counts["gallery"]) == (
        len(train),
        len(query),
        len(gallery),
    )


def test_default_and_large_sizes():
    default = count_images(PRESETS["default"])
    assert default["train_ids"] == 150 and default["test_ids"] == 150
    assert 800 <= default["train_images"] <= 1400
    assert default["query"] >= 300
    assert 1000 <= default["gallery"] <= 1500
    assert (default["distractors"], default["junk"]) == (200, 100)
    assert count_images(PRESETS["large"])["train_ids"] == 751


def test_synthetic_layout_reuses_a_custom_dataset(small_root: Path):
    # load_dataset("synthetic", root) asks for no settings: a set generated on purpose with other
    # settings (here the small preset) is used as it is, not overwritten with the default one.
    stamp = (small_root / MANIFEST).stat().st_mtime_ns
    ds = load_dataset("synthetic", small_root)
    assert ds.num_train_pids == SMALL.num_train_ids
    assert (small_root / MANIFEST).stat().st_mtime_ns == stamp


def test_ensure_synthetic_reuses_and_repairs(small_root: Path, tmp_path: Path):
    root = tmp_path / "syn"
    ensure_synthetic(root, seed=0, config=SMALL)
    stamp = (root / MANIFEST).stat().st_mtime_ns
    ensure_synthetic(root, seed=0, config=SMALL)
    assert (root / MANIFEST).stat().st_mtime_ns == stamp  # complete: not regenerated

    victim = next((root / "query").iterdir())
    victim.unlink()  # an incomplete folder: an image is missing
    ensure_synthetic(root, seed=0, config=SMALL)
    assert victim.exists() and _digest(root) == _digest(small_root)

    (root / MANIFEST).write_text("{ truncated")  # an interrupted or damaged manifest
    ensure_synthetic(root, seed=0, config=SMALL)
    assert read_manifest(root)["seed"] == 0 and _digest(root) == _digest(small_root)

    ensure_synthetic(root, seed=3, config=SMALL)  # other settings asked for: regenerated
    assert read_manifest(root)["seed"] == 3
    assert _digest(root) != _digest(small_root)


def test_manifest_from_before_a_new_knob_still_matches(tmp_path: Path):
    root = generate(tmp_path / "syn", seed=0, config=SMALL)
    manifest = read_manifest(root)
    del manifest["config"]["palette_size"]  # written before the knob existed (at its default)
    (root / MANIFEST).write_text(json.dumps(manifest))
    stamp = (root / MANIFEST).stat().st_mtime_ns
    ensure_synthetic(root, seed=0, config=SMALL)
    assert (root / MANIFEST).stat().st_mtime_ns == stamp


def test_refuses_to_delete_a_foreign_folder(tmp_path: Path):
    foreign = tmp_path / "market"
    (foreign / "query").mkdir(parents=True)
    (foreign / "query" / "0001_c1s1_000151_01.jpg").write_bytes(b"real data")
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing to delete"):
        ensure_synthetic(foreign, config=SMALL)
    with pytest.raises(FileExistsError, match=str(foreign)):
        generate(foreign, config=SMALL)
    assert (foreign / "notes.txt").read_text() == "keep me"
    # An empty folder is fine.
    (tmp_path / "empty").mkdir()
    assert read_manifest(generate(tmp_path / "empty", config=SMALL)) is not None


def test_difficulty_knobs():
    easy, hard = SyntheticConfig(difficulty=0.0), SyntheticConfig(difficulty=1.0)
    for knob in ("illumination", "viewpoint_change", "occlusion", "bad_crop", "blur", "noise"):
        assert hard.knob(knob) > easy.knob(knob), knob
    assert hard.knob("clutter") > easy.knob("clutter")
    assert hard.knob("min_jpeg_quality") < easy.knob("min_jpeg_quality")
    assert SyntheticConfig(occlusion=0.0, difficulty=1.0).knob("occlusion") == 0.0


def test_palette_size_limits_garment_colours():
    colours = set()
    for pid in range(200):
        ident = draw_identity(np.random.default_rng([0, 1, pid]), palette_size=3)
        colours |= {tuple(ident.upper), tuple(ident.lower), tuple(ident.bag_colour)}
    assert colours == {tuple(c) for c in PALETTE[:3]}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_train_ids": -3}, "num_train_ids"),
        ({"num_test_ids": 0}, "num_test_ids"),
        ({"num_junk": -1}, "num_junk"),
        ({"num_train_ids": 2.5}, "num_train_ids must be an integer"),
        ({"min_cameras_per_id": 1}, "min_cameras_per_id"),
        ({"num_cameras": 12, "max_cameras_per_id": 4}, "num_cameras"),
        ({"difficulty": 2.0}, "difficulty"),
        ({"occlusion": 1.5}, "occlusion"),
        ({"palette_size": 1}, "palette_size"),
        ({"palette_size": len(PALETTE) + 1}, "palette_size"),
        ({"num_train_ids": 9000, "num_test_ids": 1000}, "9999"),
    ],
)
def test_bad_config(overrides, message, tmp_path: Path):
    config = SyntheticConfig(**overrides)
    with pytest.raises(ValueError, match=message):
        generate(tmp_path / "x", config=config)
    assert not (tmp_path / "x").exists()


def test_bad_seed(tmp_path: Path):
    with pytest.raises(ValueError, match="seed"):
        generate(tmp_path / "x", seed=-1, config=SMALL)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--preset", "huge"], "unknown preset"),
        (["--num-train-ids", "-3"], "num_train_ids"),
        (["--seed", "-2"], "seed"),
        (["--difficulty", "1.5"], "difficulty"),
    ],
)
def test_cli_rejects_bad_arguments(argv, message, tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_writes_and_counts(tmp_path: Path, capsys):
    assert main(["--preset", "small", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out) == count_images(SMALL)
    out = tmp_path / "cli"
    assert main(["--preset", "small", "--num-junk", "2", "--out", str(out)]) == 0
    assert read_manifest(out)["counts"]["junk"] == 2
    assert "ready at" in capsys.readouterr().out


def test_contact_sheet(tmp_path: Path):
    out = contact_sheet(tmp_path / "sheet.png", config=SMALL, num_ids=2)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sheet = load_image(out)
    assert sheet.shape == (2 * (128 + 14 + 4) + 4, 6 * (64 + 4) + 4, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]  # no temp file left
