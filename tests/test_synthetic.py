"""data.synthetic: determinism, Market-1501 layout and naming, protocol invariants."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from data.images import load_image
from data.layouts import load_dataset
from data.synthetic import (
    MANIFEST,
    PRESETS,
    SyntheticConfig,
    contact_sheet,
    ensure_synthetic,
    generate,
    main,
)

SMALL = PRESETS["small"]
NAME = re.compile(r"^(-1|\d{4})_c([1-9])s[1-6]_\d{6}_\d{2}\.jpg$")


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.jpg"))
    }


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("syn") / "small", seed=0, config=SMALL)


def test_deterministic_and_seed_dependent(small_root: Path, tmp_path: Path):
    again = generate(tmp_path / "again", seed=0, config=SMALL)
    assert _digest(again) == _digest(small_root)
    other = generate(tmp_path / "other", seed=1, config=SMALL)
    assert _digest(other) != _digest(small_root)


def test_market_layout_and_names(small_root: Path):
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        names = [p.name for p in (small_root / split).iterdir()]
        assert names and all(NAME.match(n) for n in names), split
    ds = load_dataset("market1501", small_root)
    assert ds.num_train_pids == SMALL.num_train_ids
    image = load_image(ds.query[0].path)
    assert image.shape == (128, 64, 3) and image.dtype == np.uint8


def test_protocol_invariants(small_root: Path):
    ds = load_dataset("market1501", small_root)
    train_orig = set(ds.train_pid_map)
    test_ids = {r.pid for r in ds.query}
    assert not train_orig & test_ids
    assert len(test_ids) == SMALL.num_test_ids
    # One query per identity per camera, and a cross-camera gallery match for each.
    pairs = [(r.pid, r.camid) for r in ds.query]
    assert len(pairs) == len(set(pairs))
    for pid in test_ids:
        assert len({c for p, c in pairs if p == pid}) >= 2
    gallery_ids = [r.pid for r in ds.gallery]
    assert gallery_ids.count(0) == SMALL.num_distractors
    assert gallery_ids.count(-1) == SMALL.num_junk
    assert all(r.pid > 0 for r in ds.query) and all(r.pid >= 0 for r in ds.train)


def test_ensure_synthetic_reuses_and_repairs(small_root: Path, tmp_path: Path, monkeypatch):
    root = tmp_path / "syn"
    ensure_synthetic(root, config=SMALL)
    stamp = (root / MANIFEST).stat().st_mtime_ns
    ensure_synthetic(root, config=SMALL)
    assert (root / MANIFEST).stat().st_mtime_ns == stamp  # complete: not regenerated
    (root / MANIFEST).unlink()  # an interrupted / foreign folder
    ensure_synthetic(root, config=SMALL)
    assert (root / MANIFEST).exists()
    assert _digest(root) == _digest(small_root)


def test_difficulty_knobs():
    easy, hard = SyntheticConfig(difficulty=0.0), SyntheticConfig(difficulty=1.0)
    for knob in ("illumination", "occlusion", "blur", "noise", "clutter"):
        assert hard.knob(knob) > easy.knob(knob)
    assert SyntheticConfig(occlusion=0.0, difficulty=1.0).knob("occlusion") == 0.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_train_ids": -3}, "num_train_ids"),
        ({"num_junk": -1}, "num_junk"),
        ({"min_cameras_per_id": 1}, "min_cameras_per_id"),
        ({"difficulty": 2.0}, "difficulty"),
    ],
)
def test_bad_config(overrides, message, tmp_path: Path):
    config = SyntheticConfig(**overrides)
    with pytest.raises(ValueError, match=message):
        generate(tmp_path / "x", config=config)


def test_cli_rejects_unknown_preset(capsys):
    with pytest.raises(SystemExit):
        main(["--preset", "huge"])
    assert "unknown preset" in capsys.readouterr().err


def test_contact_sheet(tmp_path: Path):
    out = contact_sheet(tmp_path / "sheet.png", config=SMALL, num_ids=2)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
