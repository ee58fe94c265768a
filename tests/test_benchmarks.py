"""Liao's benchmarks in their original formats: VIPeR, CUHK01, CUHK03 (.mat v7.3 and new protocol).

Every fixture is written here in the release's own format: tiny ``cam_a``/``cam_b`` and
``campus`` folders, and a ``cuhk-03.mat`` in MATLAB's v7.3 layout (HDF5 cell arrays of object
references, images stored transposed, empty cells as tiny ``MATLAB_empty`` arrays).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from data import benchmarks
from data.benchmarks import (
    CAMERA_A,
    CAMERA_B,
    cuhk03_pid,
    load_benchmark,
    parse_cuhk01_name,
    parse_cuhk03_name,
    published_figure,
    random_trials,
)
from data.images import load_image
from data.layouts import load_dataset
from tests.builders import (
    EMPTY,
    PERSONS,
    TESTSETS,
    make_cuhk01,
    make_viper,
    write_cuhk03_mat,
    write_image,
    write_new_protocol,
)


@pytest.fixture
def datasets_dir(tmp_path: Path, monkeypatch) -> Path:
    out = tmp_path / "datasets"
    monkeypatch.setenv("REID_DATASETS_DIR", str(out))  # read when the images are extracted
    return out


@pytest.fixture
def cuhk03_root(tmp_path: Path, datasets_dir: Path) -> Path:
    root = tmp_path / "cuhk03"
    (root / "cuhk03_release").mkdir(parents=True)
    write_cuhk03_mat(root / "cuhk03_release" / "cuhk-03.mat", PERSONS, TESTSETS, empty=EMPTY)
    return root


# ---------------------------------------------------------------------------------------------
# trials
# ---------------------------------------------------------------------------------------------
def test_random_trials_are_seeded_disjoint_and_complete():
    trials = random_trials(range(1, 11), 5, 3, seed=7)
    assert [t.seed for t in trials] == [7, 8, 9] and [t.index for t in trials] == [0, 1, 2]
    for t in trials:
        assert len(t.train_pids) == 5 and len(t.test_pids) == 5
        assert sorted(t.train_pids + t.test_pids) == list(range(1, 11))
    assert random_trials(range(1, 11), 5, 3, seed=7) == trials
    assert random_trials(range(1, 11), 5, 1, seed=8)[0].test_pids == trials[1].test_pids
    assert len({t.test_pids for t in trials}) == 3
    with pytest.raises(ValueError, match="at least 2 training and 2 test"):
        random_trials(range(3), 2, 1, seed=0)


def test_published_figures():
    assert published_figure("viper", "single-shot").rank1 == 40.00
    assert published_figure("CUHK01", "multi-shot").rank1 == 63.21
    assert published_figure("cuhk01", "single-shot") is None
    assert published_figure("cuhk03", "single-shot").rank1 == 52.20
    assert published_figure("cuhk03_detected", "single-shot").rank1 == 46.25


# ---------------------------------------------------------------------------------------------
# VIPeR
# ---------------------------------------------------------------------------------------------
def test_viper_pairs_by_position_and_splits_in_halves(tmp_path):
    root = make_viper(tmp_path / "VIPeR")
    bench = load_benchmark("viper", root)
    assert len(bench.persons) == 12 and bench.num_images == 24 and len(bench.trials) == 10
    person = bench.persons[4]
    assert person.pid == 5
    assert person.gallery[0].name == "012_45.bmp" and person.probe[0].name == "012_90.bmp"
    assert all(len(t.train_pids) == 6 and len(t.test_pids) == 6 for t in bench.trials)
    assert bench.split == "10 random 6/6 splits, seeds 0..9"
    probes, gallery = bench.test_images(0, "single-shot")
    assert [r.pid for r in probes] == [r.pid for r in gallery] == list(bench.trials[0].test_pids)
    assert {r.camid for r in probes} == {CAMERA_B} and {r.camid for r in gallery} == {CAMERA_A}
    seeded = load_benchmark("viper", root, num_trials=2, seed=5)
    assert [t.seed for t in seeded.trials] == [5, 6]


def test_viper_is_a_layout_for_the_deep_pipeline(tmp_path):
    root = make_viper(tmp_path / "VIPeR")
    dataset = load_dataset("VIPeR", root)
    bench = load_benchmark("viper", root, num_trials=1)
    assert dataset.num_train_pids == 6 and sorted({r.pid for r in dataset.train}) == list(range(6))
    assert dataset.num_train_cams == 2
    assert sorted(r.pid for r in dataset.query) == list(bench.trials[0].test_pids)
    assert {r.camid for r in dataset.query} == {1} and {r.camid for r in dataset.gallery} == {0}


def test_viper_errors(tmp_path):
    with pytest.raises(ValueError, match=r"cam_a.*12 images.*cam_b.*has 13"):
        load_benchmark("viper", make_viper(tmp_path / "a", extra_b=1))
    (tmp_path / "b" / "cam_a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="cam_b"):
        load_benchmark("viper", tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_benchmark("viper", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="needs a root folder"):
        load_benchmark("viper", None)
    with pytest.raises(ValueError, match="num_trials"):
        load_benchmark("viper", make_viper(tmp_path / "c"), num_trials=0)


# ---------------------------------------------------------------------------------------------
# CUHK01
# ---------------------------------------------------------------------------------------------
def test_cuhk01_names():
    assert parse_cuhk01_name("0001001.png") == (1, CAMERA_A)
    assert parse_cuhk01_name("0971002.png") == (971, CAMERA_A)
    assert parse_cuhk01_name("0012003.png") == (12, CAMERA_B)
    assert parse_cuhk01_name("0012004.png") == (12, CAMERA_B)
    for bad in ("0012005.png", "0000001.png", "12003.png", "0012_003.png", "Thumbs.png"):
        assert parse_cuhk01_name(bad) is None, bad


def test_cuhk01_single_and_multi_shot(tmp_path):
    root = make_cuhk01(tmp_path / "CUHK01")
    bench = load_benchmark("cuhk01", root)
    assert len(bench.persons) == 10 and bench.num_images == 40
    assert all(len(p.gallery) == 2 and len(p.probe) == 2 for p in bench.persons)
    assert [p.gallery[1].name for p in bench.persons[:2]] == ["0001002.png", "0002002.png"]
    trial = bench.trials[0]
    assert len(trial.train_pids) == 5 and len(trial.test_pids) == 5
    probes, gallery = bench.test_images(trial, "multi-shot")
    assert len(probes) == len(gallery) == 10
    probes, gallery = bench.test_images(trial, "single-shot")
    assert len(probes) == len(gallery) == 5
    assert all(r.path.name[-7:-4] in ("003", "004") for r in probes)
    assert all(r.path.name[-7:-4] in ("001", "002") for r in gallery)
    # the single-shot picks are a function of the trial's seed
    assert bench.test_images(trial, "single-shot") == (probes, gallery)
    assert len(bench.train_images(trial)) == 20
    # the folder itself works as the root too
    assert len(load_benchmark("cuhk01", root / "campus").persons) == 10


def test_cuhk01_errors(tmp_path):
    root = make_cuhk01(tmp_path / "bad")
    write_image(root / "campus" / "person12_a.png", np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"not CUHK01's PPPPNNN\.png.*person12_a\.png"):
        load_benchmark("cuhk01", root)
    root = make_cuhk01(tmp_path / "oneview", skip=("0003003.png", "0003004.png"))
    with pytest.raises(ValueError, match=r"lack images in camera A .* or camera B.*\[3\]"):
        load_benchmark("cuhk01", root)
    (tmp_path / "empty" / "campus").mkdir(parents=True)
    with pytest.raises(ValueError, match="contains no images"):
        load_benchmark("cuhk01", tmp_path / "empty")


# ---------------------------------------------------------------------------------------------
# CUHK03
# ---------------------------------------------------------------------------------------------
def test_cuhk03_names():
    assert parse_cuhk03_name("1_001_1_01.png") == (1, 1, 0)
    assert parse_cuhk03_name("5_049_2_10.png") == (5, 49, 1)
    assert parse_cuhk03_name("1_001_3_01.png") is None
    assert parse_cuhk03_name("0_001_1_01.png") is None
    assert cuhk03_pid(2, 17) == 2017


def test_cuhk03_mat_is_read_in_matlab_layout(cuhk03_root, datasets_dir, tmp_path):
    images = write_cuhk03_mat(tmp_path / "again.mat", PERSONS, TESTSETS, empty=EMPTY)
    bench = load_benchmark("cuhk03", cuhk03_root)
    extracted = list(datasets_dir.glob("cuhk03-extracted/*/images_labeled"))
    assert len(extracted) == 1
    assert len(list(extracted[0].iterdir())) == 10 * 10 - 2 - 5
    assert len(bench.persons) == 10
    first = bench.persons[0]
    assert first.pid == 1001 and len(first.gallery) == 4 and len(first.probe) == 5
    assert [p.name for p in first.gallery] == [f"1_001_1_0{c}.png" for c in range(1, 5)]
    assert first.probe[0].name == "1_001_2_06.png"
    # transposed back to H x W x 3, RGB, bit-exact (PNG)
    for column, path in ((2, first.gallery[1]), (7, first.probe[1])):
        expected = images[("labeled", 1, 1, column)]
        np.testing.assert_array_equal(load_image(path), expected)
    # the published splits: persons (pair, person) -> 1000 * pair + person; the others train
    t0, t1 = bench.trials
    assert t0.test_pids == (1002, 1005, 2001) and t0.seed == 0 and t1.seed == 1
    assert len(t0.train_pids) == 7 and not set(t0.train_pids) & set(t0.test_pids)
    # pair 2 person 3 has no camera-B image: left out of trial 1's test, and not trained on
    assert t1.test_pids == (1001, 1006) and t1.dropped_pids == (2003,)
    assert 2003 not in t1.train_pids and 2003 in t0.train_pids
    assert "2 published test splits" in bench.split
    # a second load reuses the extracted images
    before = {p: p.stat().st_mtime_ns for p in extracted[0].iterdir()}
    load_benchmark("cuhk03", cuhk03_root, num_trials=1)
    assert {p: p.stat().st_mtime_ns for p in extracted[0].iterdir()} == before


def test_cuhk03_detected_and_extracted_folder(cuhk03_root, datasets_dir):
    detected = load_benchmark("cuhk03-detected", cuhk03_root)
    assert detected.name == "cuhk03-detected" and len(detected.persons) == 10
    assert (datasets_dir / "cuhk03-extracted").is_dir()
    # a user-extracted images_labeled/ folder is used as is (nothing extracted for it)
    folder = cuhk03_root / "images_labeled"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for pair, persons in enumerate(PERSONS, start=1):
        for person in range(1, persons + 1):
            for column in (1, 6):
                write_image(folder / f"{pair}_{person:03d}_{1 + column // 6}_{column:02d}.png", rng)
    bench = load_benchmark("cuhk03", cuhk03_root)
    assert bench.persons[0].gallery[0].parent == folder
    assert bench.trials[1].dropped_pids == ()  # this folder has camera B for everyone
    assert not list(datasets_dir.glob("cuhk03-extracted/*/images_labeled"))
    dataset = load_dataset("cuhk03", cuhk03_root)  # trial 0 for the deep pipeline
    assert dataset.num_train_pids == 7 and len(dataset.query) == 3


def test_cuhk03_errors(tmp_path, datasets_dir):
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no cuhk-03\.mat"):
        load_benchmark("cuhk03", root)
    with h5py.File(root / "cuhk-03.mat", "w") as f:
        f.create_dataset("labelled", data=np.zeros(3))
    with pytest.raises(ValueError, match=r"lacks \['testsets'\] \(it has \['labelled'\]\)"):
        load_benchmark("cuhk03", root)
    scipy.io.savemat(root / "cuhk-03.mat", {"testsets": np.zeros((2, 2))})  # a v5 file
    with pytest.raises(ValueError, match=r"not a MATLAB v7\.3"):
        load_benchmark("cuhk03", root)
    with h5py.File(root / "cuhk-03.mat", "w") as f:
        f.create_dataset("testsets", data=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="'testsets' is not a MATLAB cell array"):
        load_benchmark("cuhk03", root)
    write_cuhk03_mat(root / "cuhk-03.mat", PERSONS, [[(1, 2), (3, 9)]])
    with pytest.raises(ValueError, match=r"names persons without images.*\(3, 9\)"):
        load_benchmark("cuhk03", root)
    write_cuhk03_mat(root / "cuhk-03.mat", PERSONS, [[(1, 2), (1, 3)]])
    with pytest.raises(ValueError, match="only 1 splits are published"):
        load_benchmark("cuhk03", root, num_trials=2)
    bad = root / "images_labeled"
    bad.mkdir()
    write_image(bad / "person_1.png", np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"not CUHK03's P_NNN_C_II\.png.*person_1\.png"):
        load_benchmark("cuhk03", root)


def test_extract_cli(cuhk03_root, tmp_path, capsys):
    mat = cuhk03_root / "cuhk03_release" / "cuhk-03.mat"
    out = tmp_path / "out" / "images_detected"
    assert benchmarks.main(["extract-cuhk03", str(mat), str(out), "--kind", "detected"]) == 0
    assert "wrote 93 detected images" in capsys.readouterr().out
    assert benchmarks.main(["extract-cuhk03", str(mat), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert not list(out.parent.glob(".images_*"))  # no temporary folder left behind


# ---------------------------------------------------------------------------------------------
# CUHK03, new protocol
# ---------------------------------------------------------------------------------------------
def test_cuhk03_new_protocol(cuhk03_root):
    write_new_protocol(cuhk03_root)
    dataset = load_dataset("cuhk03-new", cuhk03_root)
    assert dataset.name == "cuhk03-new"
    assert len(dataset.train) == 20 and dataset.num_train_pids == 5 and dataset.num_train_cams == 2
    assert len(dataset.query) == 5 and len(dataset.gallery) == 13
    assert {r.camid for r in dataset.query} == {0}
    assert sorted({r.pid for r in dataset.query}) == [16, 21, 22, 23, 24]
    first = dataset.gallery[0]
    assert first.path.name == "1_006_1_03.png" and first.camid == 0 and first.pid == 16
    write_new_protocol(cuhk03_root, "detected")
    assert len(load_dataset("cuhk03-detected-new", cuhk03_root).train) == 20


def test_cuhk03_new_protocol_errors(cuhk03_root):
    with pytest.raises(FileNotFoundError, match=r"cuhk03_new_protocol_config_labeled\.mat"):
        load_dataset("cuhk03-new", cuhk03_root)
    write_new_protocol(cuhk03_root, drop="camId")
    with pytest.raises(ValueError, match=r"lacks \['camId'\]"):
        load_dataset("cuhk03-new", cuhk03_root)
    # a user-extracted folder that lacks most of the filelist's images
    write_new_protocol(cuhk03_root)
    folder = cuhk03_root / "images_labeled"
    folder.mkdir()
    write_image(folder / "1_001_1_02.png", np.random.default_rng(0))
    with pytest.raises(FileNotFoundError, match=r"not in .*images_labeled, e\.g\."):
        load_dataset("cuhk03-new", cuhk03_root)
