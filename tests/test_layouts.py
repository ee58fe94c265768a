"""data.layouts: parsing, relabelling, registry and clear errors on bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from data.layouts import (
    ReidDataset,
    list_layouts,
    load_dataset,
    parse_duke_name,
    parse_generic_name,
    parse_market_name,
    read_three_folders,
    register_layout,
)
from tests.builders import write_image


def test_name_parsers():
    assert parse_market_name("0002_c1s1_000451_03.jpg") == (2, 0)
    assert parse_market_name("-1_c6s2_000001_01.jpg") == (-1, 5)
    assert parse_market_name("0002_c1_f0046985.jpg") is None
    assert parse_duke_name("0005_c2_f0046985.jpg") == (5, 1)
    assert parse_duke_name("0005_c2s1_000451_03.jpg") is None
    assert parse_generic_name("17_c3_whatever.png") == (17, 2)
    assert parse_generic_name("17_c3.png") == (17, 2)
    assert parse_generic_name("17_x3.png") is None
    assert parse_generic_name("17_c0_x.png") is None  # cameras are 1-based in names


def test_market_layout(market_root: Path):
    ds = load_dataset("market1501", market_root)
    assert ds.name == "market1501"
    assert [r.pid for r in ds.train] == [0, 0, 1, 1, 2, 2]  # 2, 7, 10 relabelled
    assert ds.train_pid_map == {2: 0, 7: 1, 10: 2}
    assert ds.num_train_pids == 3 and ds.num_train_cams == 4
    assert sorted(r.pid for r in ds.query) == [3, 5]
    gallery_ids = sorted(r.pid for r in ds.gallery)
    assert gallery_ids == [-1, 0, 3, 3, 5]  # junk and distractor kept
    assert {r.camid for r in ds.query} == {0, 1}
    assert "train" in ds.summary()


def test_aliases_and_unknown_layout(market_root: Path):
    assert load_dataset("Market-1501", market_root).num_train_pids == 3
    with pytest.raises(ValueError, match="known layouts"):
        load_dataset("msmt17", market_root)
    assert {"market1501", "dukemtmcreid", "generic", "synthetic"} <= set(list_layouts())
    assert {"viper", "cuhk01", "cuhk03", "cuhk03detected", "cuhk03new"} <= set(list_layouts())


def test_missing_root_and_split(tmp_path: Path, market_root: Path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_dataset("market1501", tmp_path / "nope")
    (market_root / "query").rename(market_root / "queries")
    with pytest.raises(FileNotFoundError, match="query"):
        load_dataset("market1501", market_root)


def test_root_required_for_real_datasets():
    with pytest.raises(ValueError, match="needs a root"):
        load_dataset("market1501")


def test_empty_split(market_root: Path):
    for p in (market_root / "query").iterdir():
        p.unlink()
    (market_root / "query" / "Thumbs.db").write_bytes(b"x")
    with pytest.raises(ValueError, match="contains no images"):
        load_dataset("market1501", market_root)


def test_unparsable_names_are_listed(market_root: Path):
    write_image(market_root / "query" / "person_a.jpg", __import__("numpy").random.default_rng(0))
    with pytest.raises(ValueError, match=r"person_a\.jpg"):
        load_dataset("market1501", market_root)


def test_duke_layout(tmp_path: Path):
    import numpy as np

    rng = np.random.default_rng(0)
    for folder, name in [
        ("bounding_box_train", "0005_c2_f0046985.jpg"),
        ("bounding_box_train", "0005_c3_f0046999.jpg"),
        ("query", "0011_c1_f0000001.jpg"),
        ("bounding_box_test", "0011_c8_f0000002.jpg"),
    ]:
        write_image(tmp_path / folder / name, rng)
    ds = load_dataset("dukemtmcreid", tmp_path)
    assert [(r.pid, r.camid) for r in ds.train] == [(0, 1), (0, 2)]
    assert ds.gallery[0].camid == 7


def test_generic_without_cameras_uses_documented_fallback(tmp_path: Path, caplog):
    import numpy as np

    rng = np.random.default_rng(0)
    for folder, name in [
        ("bounding_box_train", "12_a.jpg"),
        ("bounding_box_train", "12_b.jpg"),
        ("bounding_box_train", "12_c.jpg"),
        ("query", "40_q.png"),
        ("bounding_box_test", "40_g.png"),
    ]:
        write_image(tmp_path / folder / name, rng)
    with caplog.at_level(logging.WARNING):
        ds = load_dataset("generic", tmp_path)
    assert "no camera" in caplog.text
    assert [r.camid for r in ds.train] == [0, 1, 0]
    assert ds.query[0].camid == 0 and ds.gallery[0].camid == 1


def test_unmatched_query_is_a_warning(market_root: Path, caplog):
    import numpy as np

    write_image(market_root / "query" / "0099_c1s1_000001_00.jpg", np.random.default_rng(0))
    with caplog.at_level(logging.WARNING):
        ds = load_dataset("market1501", market_root)
    assert len(ds.query) == 3
    assert "no cross-camera gallery match" in caplog.text and "0099_c1s1" in caplog.text


def test_register_new_layout_is_one_function(market_root: Path):
    @register_layout("tiny-test-layout")
    def _load(root: Path) -> ReidDataset:
        return read_three_folders("tiny-test-layout", root, parse_market_name)

    assert load_dataset("tiny-test-layout", market_root).num_train_pids == 3
    with pytest.raises(ValueError, match="already registered"):
        register_layout("tiny-test-layout")(_load)


def test_validation_split_holds_out_whole_identities(tmp_path: Path):
    import numpy as np

    from data.layouts import validation_split

    rng = np.random.default_rng(0)
    for pid in range(1, 11):
        for cam in (1, 2):
            for k in range(2):
                write_image(
                    tmp_path / "bounding_box_train" / f"{pid:04d}_c{cam}s1_00000{k}_01.jpg", rng
                )
    write_image(tmp_path / "query" / "0100_c1s1_000001_01.jpg", rng)
    write_image(tmp_path / "bounding_box_test" / "0100_c2s1_000001_01.jpg", rng)
    ds = load_dataset("market1501", tmp_path)
    val = validation_split(ds, val_fraction=0.2, seed=0)
    assert val.num_train_pids == 8 and sorted({r.pid for r in val.train}) == list(range(8))
    held = {r.path.name[:4] for r in val.query}
    assert len(held) == 2 and not held & {r.path.name[:4] for r in val.train}
    assert len(val.query) == 4 and len(val.gallery) == 4  # one query per (id, camera)
    assert validation_split(ds, seed=0).query == val.query  # deterministic
    with pytest.raises(ValueError, match="val_fraction"):
        validation_split(ds, val_fraction=1.0)
