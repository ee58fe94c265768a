"""The templates of docs/extending.md work: each is loaded as a user would copy it into the
package, a tiny dataset in the template layout is read, the template model trains on it, and the
template pipeline is measured, written to the results table, plotted and reported. The code
shown on the page is the code in the files."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from compare import tradeoff
from compare.pipelines import pipeline, unregister
from compare.results import read_results
from data.layouts import DatasetError, load_dataset
from data.runs import RunsLayout
from deep import train
from deep.models import build_model, model_spec

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "docs" / "templates"
PAGE = ROOT / "docs" / "extending.md"


def _load(name: str):
    """Import ``docs/templates/<name>.py`` once per session (registries refuse a second time)."""
    module_name = f"reid_template_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, TEMPLATES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


def _write_person_folders(root: Path, *, people: int = 6, seed: int = 0) -> None:
    """root/{train,query,gallery}/<pid>/c<cam>_<n>.jpg, two cameras, a junk gallery folder."""
    rng = np.random.default_rng(seed)
    splits = {"train": range(1, people + 1), "query": range(101, 105), "gallery": range(101, 105)}
    for split, pids in splits.items():
        for pid in pids:
            base = rng.integers(0, 256, 3)
            for cam in (1, 2):
                if split == "query" and cam == 2:
                    continue
                for n in range(2 if split != "query" else 1):
                    image = np.clip(base + rng.integers(-30, 30, (64, 32, 3)), 0, 255)
                    path = root / split / str(pid) / f"c{cam}_{n:04d}.jpg"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(path), image.astype(np.uint8))
    junk = root / "gallery" / "-1" / "c1_0000.jpg"
    junk.parent.mkdir(parents=True)
    cv2.imwrite(str(junk), np.zeros((64, 32, 3), np.uint8))


@pytest.fixture(scope="module")
def person_folders(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("person_folders")
    _write_person_folders(root)
    _load("dataset_layout")
    return root


def test_the_page_shows_the_template_files():
    text = PAGE.read_text()
    blocks = re.findall(r"<!-- template: (\S+) -->\n```python\n(.*?)```", text, flags=re.S)
    assert sorted(Path(path).name for path, _ in blocks) == sorted(
        p.name for p in TEMPLATES.glob("*.py")
    )
    for path, code in blocks:
        assert code == (ROOT / path).read_text(), f"docs/extending.md is out of date with {path}"


def test_dataset_layout_template(person_folders: Path, tmp_path: Path):
    data = load_dataset("person-folders", person_folders)
    assert (data.num_train_pids, len(data.train)) == (6, 24)
    assert sorted({r.pid for r in data.train}) == list(range(6))  # relabelled
    assert len(data.query) == 4 and {r.camid for r in data.query} == {0}
    assert len(data.gallery) == 17 and -1 in {r.pid for r in data.gallery}  # junk kept
    bad = tmp_path / "bad"
    _write_person_folders(bad, people=2)
    (bad / "train" / "alice").mkdir()
    with pytest.raises(DatasetError, match="alice is not a person id folder"):
        load_dataset("person-folders", bad)


@pytest.mark.slow
def test_model_template_trains_on_the_template_layout(person_folders: Path, tmp_path: Path):
    _load("model")
    spec = model_spec("tiny_vgg")
    assert (spec.family, spec.short_name) == ("Tiny VGG", "TinyVGG")
    net = build_model("tiny_vgg", num_classes=6).eval()
    with torch.inference_mode():
        assert net.extract(torch.zeros(2, 3, 64, 32)).shape[0] == 2
    out = tmp_path / "run"
    argv = ["--dataset", "person-folders", "--data-root", str(person_folders), "--model",
            "tiny_vgg", "--init", "scratch", "--epochs", "2", "--warmup-epochs", "0",
            "--batch-size", "8", "--input-size", "64x32", "--threads", "1", "--out", str(out),
            "--runs-dir", str(tmp_path / "runs")]  # fmt: skip
    assert train.main(argv) == 0
    assert (out / "model.pt").is_file()


@pytest.mark.slow
def test_pipeline_template_is_measured_plotted_and_reported(person_folders: Path, tmp_path):
    module = _load("pipeline")
    try:
        adapter = pipeline("colour_histograms")
        layout = RunsLayout(tmp_path / "runs")
        assert adapter.missing(None, "person-folders", "quick")
        assert adapter.run_args("person-folders", None, "quick", None, layout)[:2] == [
            "-m",
            module.__name__,
        ]
        argv = ["--dataset", "person-folders", "--data-root", str(person_folders)]
        assert module.main([*argv, "--runs-dir", str(layout.root)]) == 0
        table = read_results(layout.results_table("person-folders"))
        row = table[table.pipeline == "colour_histograms"].iloc[0]
        assert row.embedding_dim == 144 and 0 <= row.rank1 <= 100 and row.ms_query > 0
        assert not adapter.missing(table, "person-folders", "quick")
        report_argv = ["--dataset", "person-folders", "--skip-runs", "--no-throughput"]
        assert tradeoff.main([*report_argv, "--runs-dir", str(layout.root)]) == 0
        report = layout.report("person-folders", "tradeoff.md").read_text()
        assert "Colour hist." in report
        assert layout.report("person-folders", "tradeoff.png").stat().st_size > 0
    finally:
        unregister("colour_histograms")
        sys.modules.pop(f"reid_template_{'pipeline'}", None)
