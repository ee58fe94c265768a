"""Builders shared by the tests: tiny datasets in the real layouts, run folders, results tables.

Test modules import these (and the fixtures in ``conftest.py`` use them) instead of importing
helpers from one another.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import torch

from classical.pipeline import study_run_name
from compare.results import RESULT_COLUMNS, ResultRow
from data.synthetic import PRESETS, generate
from deep.checkpoint import save_checkpoint
from deep.config import TrainConfig
from deep.models import build_model

REPO = Path(__file__).resolve().parents[1]
#: The benchmark scripts (bench/bench_*.py), by file name.
BENCH_SCRIPTS = sorted(p.name for p in (REPO / "bench").glob("bench_*.py"))

#: The model and input size of the hand-made run folders (:func:`make_run`).
TINY_MODEL = "mobilenet_v1_0.25"
TINY_SIZE = (64, 32)


# ---------------------------------------------------------------------------------------------
# images and benchmark layouts
# ---------------------------------------------------------------------------------------------
def write_image(path: Path, rng: np.random.Generator, size: tuple[int, int] = (32, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(buf.tobytes())


def make_viper(root: Path, persons: int = 12, extra_b: int = 0) -> Path:
    rng = np.random.default_rng(0)
    for i in range(persons):
        write_image(root / "cam_a" / f"{3 * i:03d}_45.bmp", rng)
    for i in range(persons + extra_b):
        write_image(root / "cam_b" / f"{3 * i:03d}_90.bmp", rng)
    return root


def make_cuhk01(root: Path, persons: int = 10, skip: tuple[str, ...] = ()) -> Path:
    rng = np.random.default_rng(1)
    for pid in range(1, persons + 1):
        for number in range(1, 5):
            name = f"{pid:04d}{number:03d}.png"
            if name not in skip:
                write_image(root / "campus" / name, rng)
    return root


def write_cuhk03_mat(
    path: Path,
    persons_per_pair: tuple[int, ...],
    testsets: list[list[tuple[int, int]]],
    *,
    empty: set[tuple[int, int, int]] = frozenset(),
    seed: int = 2,
) -> dict[tuple[str, int, int, int], np.ndarray]:
    """A tiny cuhk-03.mat as MATLAB -v7.3 writes it; returns the images, (H, W, 3) RGB.

    ``labeled`` / ``detected``: 5x1 cells (HDF5 shape (1, pairs)) of (persons x 10) cells
    (HDF5 (10, persons)) of images, each (H, W, 3) in MATLAB, so (3, W, H) in HDF5. ``testsets``:
    a (trials x 1) cell of (n x 2) double arrays [camera pair, person], 1-based. ``empty`` holds
    (pair, person, column) cells left empty.
    """
    rng = np.random.default_rng(seed)
    images = {}
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        count = iter(range(10**6))

        def put(data: np.ndarray, is_empty: bool = False):
            ds = refs.create_dataset(f"r{next(count)}", data=data)
            if is_empty:
                ds.attrs["MATLAB_empty"] = np.uint8(1)
            return ds.ref

        for kind in ("labeled", "detected"):
            pair_refs = []
            for pair, persons in enumerate(persons_per_pair, start=1):
                cell = np.empty((10, persons), dtype=h5py.ref_dtype)
                for person in range(1, persons + 1):
                    for column in range(1, 11):
                        if (pair, person, column) in empty:
                            cell[column - 1, person - 1] = put(np.zeros(2, np.uint64), True)
                            continue
                        height, width = 20 + column, 11 + person  # never square
                        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                        images[(kind, pair, person, column)] = image
                        cell[column - 1, person - 1] = put(image.transpose(2, 1, 0))
                pair_refs.append(put(cell))
            f.create_dataset(kind, data=np.array([pair_refs], dtype=h5py.ref_dtype))
        tests = [put(np.asarray(t, dtype=np.float64).T) for t in testsets]
        f.create_dataset("testsets", data=np.array([tests], dtype=h5py.ref_dtype))
    return images


#: 2 camera pairs (6 + 4 persons), 2 published trials of 3 test persons each.
PERSONS = (6, 4)
TESTSETS = [[(1, 2), (2, 1), (1, 5)], [(2, 3), (1, 1), (1, 6)]]
#: Empty (pair, person, column) cells: person 3 of pair 2 has no camera-B image (columns 6-10).
EMPTY = {(1, 1, 5), (1, 4, 10)} | {(2, 3, c) for c in range(6, 11)}


def write_new_protocol(root: Path, kind: str = "labeled", drop: str | None = None) -> None:
    """A config .mat (MATLAB v5, 1-based) over the fixture's images: 5 train, 5 test persons.

    Person ``(pair, n)`` is labelled ``10 * pair + n``; each test person's first image (camera 1)
    is its query, the others are the gallery.
    """
    names, labels, cams = [], [], []
    for pair, persons in enumerate(PERSONS, start=1):
        for person in range(1, persons + 1):
            for column in (2, 3, 7, 8):
                if (pair, person, column) in EMPTY:
                    continue
                names.append(f"{pair}_{person:03d}_{1 + column // 6}_{column:02d}.png")
                labels.append(10 * pair + person)
                cams.append(1 + column // 6)
    labels = np.array(labels)
    train = np.flatnonzero(np.isin(labels, [11, 12, 13, 14, 15])) + 1
    test = np.flatnonzero(~np.isin(labels, [11, 12, 13, 14, 15])) + 1
    _, first = np.unique(labels[test - 1], return_index=True)
    query = test[first]
    gallery = np.setdiff1d(test, query)
    config = {
        "filelist": np.array(names, dtype=object).reshape(-1, 1),
        "labels": labels.reshape(-1, 1).astype(float),
        "camId": np.array(cams).reshape(-1, 1).astype(float),
        "train_idx": train.reshape(-1, 1).astype(float),
        "query_idx": query.reshape(-1, 1).astype(float),
        "gallery_idx": gallery.reshape(-1, 1).astype(float),
    }
    if drop:
        del config[drop]
    scipy.io.savemat(root / f"cuhk03_new_protocol_config_{kind}.mat", config)


# ---------------------------------------------------------------------------------------------
# run folders
# ---------------------------------------------------------------------------------------------
def calibrated_model(seed: int = 0):
    """An untrained model whose BN statistics come from data, so activations are not ~0."""
    torch.manual_seed(seed)
    model = build_model(TINY_MODEL, num_classes=3)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, *TINY_SIZE))
    return model.eval()


def write_tiny_market(root: Path) -> Path:
    """A Market-1501-named set with 4 queries and a 12-image gallery (ranks 1-10 defined)."""
    rng = np.random.default_rng(0)
    for folder, n in (("bounding_box_train", 6), ("query", 4), ("bounding_box_test", 12)):
        for i in range(n):
            name = f"{i % 3 + 1:04d}_c{i % 2 + 1 + (folder == 'query')}s1_{i:06d}_01.jpg"
            write_image(root / folder / name, rng, (128, 64))
    return root


def make_run(run: Path, data_root: Path, *, seed: int = 0, **config) -> Path:
    """A finished run folder with a hand-made ``model.pt`` (no training needed)."""
    cfg = TrainConfig(
        model=TINY_MODEL, dataset="market1501", data_root=str(data_root), input_size=TINY_SIZE
    ).as_dict()
    cfg.pop("init", None)  # as written before initialisations were recorded
    cfg.update(config)
    model = calibrated_model(seed)
    state = {"model": model.state_dict(), "model_name": TINY_MODEL, "num_classes": 3, "config": cfg}
    save_checkpoint(run / "model.pt", state)
    return run


# ---------------------------------------------------------------------------------------------
# results tables
# ---------------------------------------------------------------------------------------------
def result_row(**overrides) -> ResultRow:
    values = dict(
        dataset="synthetic",
        pipeline="deep",
        model="resnet18",
        variant="baseline",
        seed=0,
        input_size="64x32",
        params=11_000_000,
        gflops=0.25,
        embedding_dim=512,
        rank1=80.0,
        rank5=90.0,
        rank10=95.0,
        mAP=60.0,
        mAP_torchreid=61.0,
        ms_extract=5.0,
        ms_match=0.2,
        ms_query=5.2,
        ms_query_p90=6.0,
        threads=1,
    )
    values.update(overrides)
    return ResultRow(**values)


def results_table() -> pd.DataFrame:
    """A hand-made results table: one classical row, CNN baselines and distilled students."""
    rows = []
    specs = [
        ("classical", "lomo_xqda", "classical", 0, 45.0, 30.0, 20.0, 205),
        ("deep", "resnet50", "baseline", 0, 85.0, 70.0, 40.0, 2048),
        ("deep", "mobilenet_v1_0.25", "baseline", 0, 60.0, 40.0, 3.0, 256),
        ("deep", "mobilenet_v1_0.25", "baseline", 1, 62.0, 42.0, 3.2, 256),
        ("deep", "mobilenet_v1_0.25", "distilled", 0, 68.0, 47.0, 3.1, 256),
        ("deep", "mobilenet_v1_0.25", "distilled", 1, 70.0, 49.0, 3.0, 256),
        ("deep", "mobilenet_v2_1.0", "baseline", 0, 72.0, 52.0, 8.0, 1280),
    ]
    for pipeline, model, variant, seed, r1, mAP, ms, dim in specs:
        row = {c: 0 for c in RESULT_COLUMNS}
        row.update(
            dataset="d",
            pipeline=pipeline,
            model=model,
            variant=variant,
            seed=seed,
            input_size="64x32",
            params=1e6,
            gflops=0.1,
            embedding_dim=dim,
            rank1=r1,
            rank5=r1 + 5,
            rank10=r1 + 8,
            mAP=mAP,
            mAP_torchreid=mAP + 1,
            ms_extract=ms - 0.1,
            ms_match=0.1,
            ms_query=ms,
            ms_query_p90=ms * 1.2,
            threads=1,
            device="cpu",
            engine="numba" if pipeline == "classical" else "torch",
            init="n/a" if pipeline == "classical" else "scratch",
            extra="{}",
        )
        rows.append(row)
    return pd.DataFrame(rows)


def study_table() -> pd.DataFrame:
    """``results_table()`` with its classical row named as the study's LOMO+XQDA run."""
    df = results_table()
    return df.assign(model=df.model.replace("lomo_xqda", study_run_name()))


def write_results_table(runs: Path, df: pd.DataFrame, name: str = "d") -> Path:
    """``df`` as ``runs/<name>/results.csv``; returns the folder."""
    out = runs / name
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "results.csv", index=False)
    return out


# ---------------------------------------------------------------------------------------------
# tiny training
# ---------------------------------------------------------------------------------------------
def small_synthetic(root: Path) -> Path:
    """The "small" synthetic preset written to ``root`` (Market-1501 layout)."""
    return generate(root, config=PRESETS["small"])


def tiny_train_config(data_root: Path | str, **overrides) -> TrainConfig:
    """A two-epoch, from-scratch MobileNet training on a small dataset: seconds, not minutes."""
    config = TrainConfig(
        model=TINY_MODEL, dataset="market1501", data_root=str(data_root), input_size=(32, 16),
        epochs=2, batch_size=8, warmup_epochs=0, lr=0.05, threads=1,
        bn_neck=False, erasing=0.0, checkpoint_every=0, init="scratch",
    )  # fmt: skip
    return dataclasses.replace(config, **overrides)


# ---------------------------------------------------------------------------------------------
# command lines
# ---------------------------------------------------------------------------------------------
class _Captured(Exception):
    """Raised by the recording ``parse_args``: the parser is built, nothing has run."""


def captured_parser(main, monkeypatch) -> argparse.ArgumentParser:
    """The parser ``main`` builds, captured at ``parse_args`` before anything runs."""
    seen = []

    def record(self, args=None, namespace=None):
        seen.append(self)
        raise _Captured

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", record)
    with pytest.raises(_Captured):
        main([])
    return seen[0]


def flags_without_help(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    """Every action of ``parser`` and of its subparsers (-h/--help aside) without a help text."""
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = "/".join(action.option_strings) or action.dest
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                missing += flags_without_help(sub, f"{prefix}{command} ")
            helped = {a.dest for a in action._choices_actions if a.help}
            missing += [f"{prefix}{c} (subcommand)" for c in action.choices if c not in helped]
            continue
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
            missing.append(prefix + name)
    return missing


def bench_module(name: str):
    """A ``bench/`` script imported as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name[:-3]}", REPO / "bench" / name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a script's dataclasses look their module up when built
    spec.loader.exec_module(module)
    return module
