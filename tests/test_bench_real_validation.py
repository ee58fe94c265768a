"""bench/bench_real_validation.py on a tiny generated set: options scored on held-out training
ids, the split recorded, rows accumulating across invocations."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from data.layouts import load_dataset, validation_split
from data.synthetic import PRESETS, generate

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "bench_real_validation.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_real_validation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("real") / "data", config=PRESETS["small"])


def test_lomo_and_cnn_options_accumulate_in_one_report(root, tmp_path):
    bench = _bench()
    common = ["--data-root", str(root), "--runs-dir", str(tmp_path / "runs"), "--out",
              str(tmp_path / "report"), "--val-fraction", "0.25"]  # fmt: skip
    bench.main(["lomo", *common, "--sizes", "32x16", "--regs", "0.001", "0.1"])
    bench.main(["cnn", *common, "--models", "mobilenet_v1_0.25", "--inits", "scratch",
                "--sizes", "32x16", "--epochs", "1", "--batch-size", "8"])  # fmt: skip
    table = pd.read_csv(tmp_path / "report" / "real_validation.csv")
    assert sorted(table.option) == [
        "lomo_xqda_32x16_reg0.001",
        "lomo_xqda_32x16_reg0.1",
        "mobilenet_v1_0.25_scratch_32x16_ep1_lr0.01_bs8_er0_flip_pad4_nobnneck_tri0_lsdef_seed0",
    ]
    assert ((table.val_rank1 >= 0) & (table.val_rank1 <= 100)).all()
    assert (table.val_mAP > 0).all()
    lomo_row = table[table.pipeline == "lomo_xqda"].iloc[0]
    assert lomo_row.command.startswith("python bench/bench_real_validation.py lomo --data-root")
    # the split: whole identities held out, seeded, written beside the report
    split = json.loads((tmp_path / "report" / "split_seed0.json").read_text())
    val = validation_split(load_dataset("market1501", str(root)), val_fraction=0.25, seed=0)
    assert split["held_out_ids"] == sorted({r.pid for r in val.query})
    assert split["num_train_ids"] == val.num_train_pids
    # a repeated option replaces its row; the finished CNN run is reused, not retrained
    runs = tmp_path / "runs" / "market1501" / "real_validation" / "mobilenet_v1_0.25"
    run = next(runs.iterdir())
    stamp = (run / "model.pt").stat().st_mtime_ns
    bench.main(["cnn", *common, "--models", "mobilenet_v1_0.25", "--inits", "scratch",
                "--sizes", "32x16", "--epochs", "1", "--batch-size", "8"])  # fmt: skip
    again = pd.read_csv(tmp_path / "report" / "real_validation.csv", keep_default_na=False)
    assert len(again) == 3 and (run / "model.pt").stat().st_mtime_ns == stamp
    assert list(again[again.pipeline == "lomo_xqda"].init) == ["n/a", "n/a"]  # kept, not NaN
    assert "| lomo_xqda |" in (tmp_path / "report" / "real_validation.md").read_text()
    # a student distilled from that run (a teacher trained on the same split)
    bench.main(["cnn", *common, "--models", "mobilenet_v1_0.5", "--inits", "scratch",
                "--sizes", "32x16", "--epochs", "1", "--batch-size", "8",
                "--teacher", str(run)])  # fmt: skip
    table = pd.read_csv(tmp_path / "report" / "real_validation.csv", keep_default_na=False)
    distilled = table[table.model == "mobilenet_v1_0.5"].option.iloc[0]
    assert distilled.endswith(f"_kd-{run.name}-T2-a0.9")
    with pytest.raises(SystemExit):
        bench.main(["cnn", *common, "--teacher", str(tmp_path / "no-run")])


def test_a_missing_data_root_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _bench().main(["lomo", "--data-root", str(tmp_path / "absent")])
    assert exit_info.value.code == 2
    assert "--data-root" in capsys.readouterr().err
