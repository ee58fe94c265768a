"""Bad input data: no silent wrong result, no raw traceback (data.layouts, protocols, synthetic)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from data.layouts import (
    DatasetError,
    Record,
    ReidDataset,
    TrainingSetError,
    check_training_set,
    load_dataset,
    parse_generic_name,
    record_arrays,
)
from data.protocols import evaluate
from tests.builders import write_image


def _write(root: Path, files: dict[str, list[str]]) -> Path:
    rng = np.random.default_rng(0)
    for folder, names in files.items():
        for name in names:
            write_image(root / folder / name, rng)
    return root


# --------------------------------------------------------------------------------------------
# 1. Generic layout: cameras are parsed per file
# --------------------------------------------------------------------------------------------
MARKET_STYLE = {
    "bounding_box_train": [
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000551_01.jpg",
        "0007_c1s1_000001_01.jpg",
        "0007_c3s1_000101_01.jpg",
    ],
    "query": ["0003_c1s1_000001_00.jpg"],
    # The nearest gallery image is in the query's own camera: it must be ignored, not a hit.
    "bounding_box_test": [
        "0003_c1s1_000011_01.jpg",
        "0003_c2s1_000021_01.jpg",
        "0004_c2s1_000031_01.jpg",
    ],
}


def test_generic_understands_market_style_names(tmp_path: Path, caplog):
    assert parse_generic_name("0002_c1s1_000451_03.jpg") == (2, 0)
    assert parse_generic_name("-1_c6s2_000001_01.jpg") == (-1, 5)
    root = _write(tmp_path, MARKET_STYLE)
    with caplog.at_level(logging.WARNING):
        ds = load_dataset("generic", root)
    assert "no camera" not in caplog.text
    assert [r.camid for r in ds.train] == [0, 1, 0, 2]
    assert [r.camid for r in ds.query] == [0]
    assert [r.camid for r in ds.gallery] == [0, 1, 1]
    # Same-camera matches are removed: the nearest (same-camera) image is not a rank-1 hit, the
    # other person (0.15) ranks first and the cross-camera match (0.2) second.
    q_ids, q_cams = record_arrays(ds.query)
    g_ids, g_cams = record_arrays(ds.gallery)
    res = evaluate(np.array([[0.1, 0.2, 0.15]]), q_ids, g_ids, q_cams, g_cams)
    assert res.rank1 == 0.0 and res.rank(2) == 1.0 and res.num_valid_queries == 1


def test_generic_one_query_without_camera_is_an_error(tmp_path: Path):
    files = {k: list(v) for k, v in MARKET_STYLE.items()}
    files["query"].append("0003_front.jpg")
    root = _write(tmp_path, files)
    with pytest.raises(DatasetError) as info:
        load_dataset("generic", root)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "0003_front.jpg" in message  # the offending file
    assert "0003_c1s1_000001_00.jpg" in message  # an example of the other kind
    assert str(root / "query") in message  # the folder


def test_generic_mix_across_folders_is_an_error(tmp_path: Path):
    root = _write(
        tmp_path,
        {
            "bounding_box_train": ["12_a.jpg", "12_b.jpg", "13_a.jpg"],
            "query": ["40_c1_q.png"],
            "bounding_box_test": ["40_c2_g.png", "40_c1_g.png"],
        },
    )
    with pytest.raises(DatasetError) as info:
        load_dataset("generic", root)
    message = str(info.value)
    assert "12_a.jpg" in message and "40_c1_q.png" in message
    assert str(root / "bounding_box_train") in message


def test_generic_camera_zero_is_an_error(tmp_path: Path):
    root = _write(
        tmp_path,
        {
            "bounding_box_train": ["12_c1_a.jpg", "12_c0_b.jpg", "13_c2_a.jpg"],
            "query": ["40_c1_q.png"],
            "bounding_box_test": ["40_c2_g.png"],
        },
    )
    with pytest.raises(DatasetError, match=r"12_c0_b\.jpg.*1-based|1-based.*12_c0_b\.jpg"):
        load_dataset("generic", root)


def test_generic_without_any_camera_warning_tells_the_truth(tmp_path: Path, caplog):
    root = _write(
        tmp_path,
        {
            "bounding_box_train": ["12_a.jpg", "12_b.jpg", "13_a.jpg"],
            "query": ["40_q.png"],
            "bounding_box_test": ["40_g.png"],
        },
    )
    with caplog.at_level(logging.WARNING):
        ds = load_dataset("generic", root)
    assert "none of the 5 image names" in caplog.text and str(root) in caplog.text
    assert [r.camid for r in ds.train] == [0, 1, 0]


# --------------------------------------------------------------------------------------------
# 2. Ids of 2^31 or more, negative ids
# --------------------------------------------------------------------------------------------
def test_evaluate_does_not_wrap_large_ids():
    # Query id 1; the nearest gallery image has id 2**32 + 1, which wraps to 1 in int32.
    q_ids, q_cams = np.array([1]), np.array([0])
    g_ids, g_cams = np.array([2**32 + 1, 1]), np.array([1, 1])
    res = evaluate(np.array([[0.1, 0.2]]), q_ids, g_ids, q_cams, g_cams, max_rank=2)
    np.testing.assert_allclose(res.cmc, [0.0, 1.0])
    # A query whose id only matches after wrapping has no valid match.
    res = evaluate(np.array([[0.1]]), np.array([2**32 + 1]), np.array([1]), q_cams, np.array([1]))
    assert res.num_valid_queries == 0
    # Cameras too.
    res = evaluate(
        np.array([[0.1, 0.2]]), q_ids, np.array([1, 1]), q_cams, np.array([2**32, 1]), max_rank=2
    )
    np.testing.assert_allclose(res.cmc, [1.0, 1.0])


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (np.array([2**63 + 5], dtype=np.uint64), "query_ids"),
        (np.array([2**70], dtype=object), "query_ids"),
        (np.array([-2]), "query_ids"),
    ],
)
def test_evaluate_refuses_ids_out_of_range(ids, message):
    with pytest.raises(ValueError, match=message):
        evaluate(np.array([[0.1]]), ids, np.array([1]), np.array([0]), np.array([1]))


def test_loader_keeps_large_ids_exact(market_root: Path, caplog):
    big = 2**32 + 3
    write_image(market_root / "query" / f"{big}_c1s1_000001_00.jpg", np.random.default_rng(1))
    write_image(
        market_root / "bounding_box_test" / "0003_c3s1_000001_01.jpg", np.random.default_rng(2)
    )
    with caplog.at_level(logging.WARNING):
        ds = load_dataset("market1501", market_root)
    assert big in {r.pid for r in ds.query}
    assert "1 of 3 queries have no cross-camera gallery match" in caplog.text
    ids, cams = record_arrays(ds.query)
    assert ids.dtype == np.int64 and cams.dtype == np.int64 and big in ids


@pytest.mark.parametrize(
    "name", ["-5_c2s1_000051_01.jpg", "99999999999999999999_c2s1_000051_01.jpg"]
)
def test_loader_refuses_ids_out_of_range(market_root: Path, name: str):
    write_image(market_root / "bounding_box_test" / name, np.random.default_rng(0))
    with pytest.raises(DatasetError) as info:
        load_dataset("market1501", market_root)
    assert name in str(info.value) and str(market_root / "bounding_box_test") in str(info.value)


def test_generic_without_cameras_refuses_negative_ids(tmp_path: Path):
    root = _write(
        tmp_path,
        {
            "bounding_box_train": ["12_a.jpg", "-3_b.jpg", "13_a.jpg"],
            "query": ["40_q.png"],
            "bounding_box_test": ["40_g.png"],
        },
    )
    with pytest.raises(DatasetError, match=r"-3_b\.jpg"):
        load_dataset("generic", root)


# --------------------------------------------------------------------------------------------
# 3. Training sets too small to learn from
# --------------------------------------------------------------------------------------------
def _records(spec: list[tuple[int, int]], folder: str = "/data/x/bounding_box_train"):
    return [
        Record(Path(folder) / f"{pid:04d}_c{cam + 1}_{i}.jpg", pid, cam)
        for i, (pid, cam) in enumerate(spec)
    ]


@pytest.mark.parametrize("pairs", [True, False])
def test_single_identity_training_set_is_an_error(pairs: bool):
    records = _records([(0, 0), (0, 1), (0, 2)])
    with pytest.raises(TrainingSetError, match="my-set") as info:
        check_training_set(records, needs_cross_camera_pairs=pairs, what="my-set")
    assert isinstance(info.value, ValueError) and "1 identity" in str(info.value)
    with pytest.raises(TrainingSetError, match="no images"):
        check_training_set([], needs_cross_camera_pairs=pairs, what="my-set")


def test_training_set_error_names_the_dataset_folder(market_root: Path):
    ds = load_dataset("market1501", market_root)
    one = ReidDataset(ds.name, ds.root, [r for r in ds.train if r.pid == 0], ds.query, ds.gallery)
    with pytest.raises(TrainingSetError, match=str(market_root / "bounding_box_train")):
        check_training_set(one, needs_cross_camera_pairs=False)
    # Without a name, the records' folder is named.
    with pytest.raises(TrainingSetError, match="/data/x/bounding_box_train"):
        check_training_set(_records([(0, 0), (0, 1)]), needs_cross_camera_pairs=False)


def test_training_set_warnings(caplog):
    good = _records([(0, 0), (0, 1), (1, 0), (1, 2)])
    assert check_training_set(good, needs_cross_camera_pairs=True, what="x") == []
    assert check_training_set(good, needs_cross_camera_pairs=False, what="x") == []

    # id 2 has a single image; id 1 two images in one camera.
    records = _records([(0, 0), (0, 1), (1, 0), (1, 0), (2, 3)])
    with caplog.at_level(logging.WARNING):
        warnings = check_training_set(records, needs_cross_camera_pairs=False, what="x")
    assert len(warnings) == 1 and "1 of 3 training identities" in warnings[0]
    assert "single image" in warnings[0] and "0002_c4_4.jpg" in warnings[0]
    assert warnings[0] in caplog.text

    warnings = check_training_set(records, needs_cross_camera_pairs=True, what="x")
    assert len(warnings) == 1 and "2 of 3 training identities" in warnings[0]
    assert "single camera" in warnings[0]


def test_cross_camera_method_without_any_cross_camera_identity_is_an_error():
    records = _records([(0, 0), (0, 0), (1, 1), (1, 1)])
    assert check_training_set(records, needs_cross_camera_pairs=False, what="x") == []
    with pytest.raises(TrainingSetError, match="cross-camera"):
        check_training_set(records, needs_cross_camera_pairs=True, what="x")


# --------------------------------------------------------------------------------------------
# 4. --dataset synthetic pointed at a folder that is not a synthetic set
# --------------------------------------------------------------------------------------------
def test_synthetic_layout_on_a_market_folder_is_a_clear_error(market_root: Path):
    from data.synthetic import NotSyntheticDatasetError

    before = sorted(p.relative_to(market_root) for p in market_root.rglob("*"))
    with pytest.raises(NotSyntheticDatasetError) as info:
        load_dataset("synthetic", market_root)
    assert isinstance(info.value, ValueError) and isinstance(info.value, DatasetError)
    message = str(info.value)
    assert str(market_root) in message
    assert "not a synthetic dataset" in message
    assert "--data-root" in message and "market1501" in message
    assert sorted(p.relative_to(market_root) for p in market_root.rglob("*")) == before
    assert not list(market_root.parent.glob(".market.*"))  # no lock or temp file next to it


def test_synthetic_layout_on_a_file_is_a_clear_error(tmp_path: Path):
    from data.synthetic import NotSyntheticDatasetError, ensure_synthetic

    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    with pytest.raises(NotSyntheticDatasetError, match="not a folder"):
        ensure_synthetic(target)
    assert target.read_text() == "keep me"
