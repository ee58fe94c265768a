"""Filesystem faults and leftovers: one clear line naming the path, nothing left behind.

Item 8: a read-only output folder or a full disk makes every command-line tool exit with code 2
and ``error: cannot write <path>: ...`` (never a traceback), and a results table that is a
folder, garbage or cut off mid-row stops every entry point that appends rows before its work.
Item 11: what a ``kill -9`` leaves behind (atomic writers' temporary files in run folders, LOMO
cache ``.tmp-*`` folders) is cleaned up by the next run, and a run that fails before producing
anything leaves no empty run folder.

The tests may run as root, whom ``chmod`` does not stop: :func:`deny` simulates a read-only
folder (EACCES) or a full disk (ENOSPC) by failing every write under a folder at the OS calls.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from classical.pipeline import main as classical_main
from compare import distillation, lomo_xqda, measure, scaling, tradeoff
from compare import study as runner
from compare.pipelines import classical as classical_adapter
from compare.pipelines import cnn
from compare.results import upsert_rows
from data import synthetic
from data.images import load_image
from data.io import OutputError, atomic_write_bytes, remove_orphan_temporaries
from data.runs import RunsLayout
from deep import export, pretrain
from deep import train as deep_train
from tests.builders import (
    make_run,
    result_row,
    study_table,
    tiny_train_config,
    write_results_table,
    write_tiny_market,
)

FAULTS = {"read-only": errno.EACCES, "full": errno.ENOSPC}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


@pytest.fixture
def deny(monkeypatch):
    """``deny(folder, code)``: every write under ``folder`` fails with OSError ``code`` (EACCES:
    a read-only folder, ENOSPC: a full disk); reads still work."""

    def install(folder: Path, code: int = errno.EACCES) -> Path:
        top = os.path.abspath(folder)

        def inside(path) -> bool:
            if isinstance(path, int):
                return False
            name = os.path.abspath(os.fsdecode(path))
            return name == top or name.startswith(top + os.sep)

        def fail(path):
            raise OSError(code, os.strerror(code), os.fsdecode(path))

        real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
        real_replace, real_rename, real_access = os.replace, os.rename, os.access

        def fake_open(file, mode="r", *args, **kwargs):
            if set(str(mode)) & set("wax+") and inside(file):
                fail(file)
            return real_open(file, mode, *args, **kwargs)

        def fake_os_open(path, flags, *args, **kwargs):
            if flags & _WRITE_FLAGS and inside(path):
                fail(path)
            return real_os_open(path, flags, *args, **kwargs)

        def fake_mkdir(path, *args, **kwargs):
            if inside(path) and not os.path.lexists(path):
                fail(path)
            return real_mkdir(path, *args, **kwargs)

        def fake_move(real):
            def move(src, dst, *args, **kwargs):
                if inside(dst) or inside(src):
                    fail(dst)
                return real(src, dst, *args, **kwargs)

            return move

        def fake_access(path, mode, *args, **kwargs):
            if code == errno.EACCES and mode & os.W_OK and inside(path):
                return False
            return real_access(path, mode, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(io, "open", fake_open)
        monkeypatch.setattr(os, "open", fake_os_open)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)
        monkeypatch.setattr(os, "replace", fake_move(real_replace))
        monkeypatch.setattr(os, "rename", fake_move(real_rename))
        monkeypatch.setattr(os, "access", fake_access)
        return folder

    return install


def _clear_error(capsys, code: int, *paths: Path) -> str:
    """Exit code 2 and one ``error: cannot write ...`` line naming ``paths``."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert "error: cannot write" in err, err
    for path in paths:
        assert str(path) in err, (path, err)
    return err


def _runs(root: Path) -> list[str]:
    """The ``--runs-dir`` flag every command takes: outputs under ``root``, nothing patched."""
    return ["--runs-dir", str(root)]


def _never(name: str):
    def called(*args, **kwargs):
        raise AssertionError(f"{name} ran despite the fault")

    return called


@pytest.fixture(scope="module")
def tiny_market(tmp_path_factory) -> Path:
    """Market-1501 names, 6 training images of 3 ids, 4 queries, 12 gallery images."""
    return write_tiny_market(tmp_path_factory.mktemp("faults") / "market")


def _train_args(data_root: Path, out: Path, epochs: int = 1) -> list[str]:
    return [
        "--model", "mobilenet_v1_0.25", "--dataset", "market1501", "--data-root", str(data_root),
        "--input-size", "32x16", "--epochs", str(epochs), "--batch-size", "8",
        "--warmup-epochs", "0", "--lr", "0.05", "--threads", "1", "--no-bn-neck",
        "--erasing", "0", "--checkpoint-every", "0", "--init", "scratch", "--out", str(out),
    ]  # fmt: skip


def _classical_args(data_root: Path, runs: Path) -> list[str]:
    return [
        "--dataset", "market1501", "--data-root", str(data_root), "--runs-dir", str(runs),
        "--no-progress",
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Item 8: a read-only output folder, a full disk
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", FAULTS)
def test_classical_pipeline_on_a_faulty_runs_dir(fault, market_root, tmp_path, deny, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    deny(runs, FAULTS[fault])
    _clear_error(capsys, classical_main(_classical_args(market_root, runs)), runs)
    assert list(runs.iterdir()) == []


@pytest.mark.parametrize("fault", FAULTS)
def test_lomo_xqda_on_a_faulty_runs_dir(fault, market_root, tmp_path, deny, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    deny(runs, FAULTS[fault])
    _clear_error(capsys, lomo_xqda.main(_classical_args(market_root, runs)), runs)
    assert list(runs.iterdir()) == []


@pytest.mark.parametrize("fault", FAULTS)
def test_measure_on_a_faulty_run_folder(fault, tiny_market, tmp_path, deny, capsys):
    run = make_run(tmp_path / "run", tiny_market)
    deny(run, FAULTS[fault])
    code = measure.main([str(run), "--engines", "torch", "--num-timed-queries", "2"])
    _clear_error(capsys, code, run / "summary.json")
    assert sorted(p.name for p in run.iterdir()) == ["model.pt"]


def test_distillation_on_a_read_only_runs_folder(tiny_market, tmp_path, deny, monkeypatch, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    monkeypatch.setattr(distillation, "run_study", _never("training"))
    deny(runs)
    args = ["--dataset", "market1501", "--data-root", str(tiny_market), "--runs-dir", str(runs)]
    code = distillation.main(args)
    _clear_error(capsys, code, runs / "market1501" / "results.csv")


@pytest.fixture
def report_runs(tmp_path: Path, monkeypatch) -> Path:
    """compare.tradeoff's outputs under tmp_path (its --runs-dir), tiny scaling galleries, no
    subprocesses."""
    monkeypatch.setattr(scaling, "GALLERY_SIZES", (100, 1000))
    monkeypatch.setattr(cnn, "CNN_DIMS", (32,))
    monkeypatch.setattr(classical_adapter, "LOMO_DIM", 64)
    monkeypatch.setattr(runner, "run_module", _never("a pipeline"))
    return tmp_path


@pytest.mark.parametrize("fault", FAULTS)
def test_tradeoff_report_into_a_faulty_folder(fault, report_runs, deny, capsys):
    out = write_results_table(report_runs, study_table().assign(extra='{"feature_dim": 64}'))
    deny(out, FAULTS[fault])
    code = tradeoff.main(["--dataset", "d", "--skip-runs", "--no-throughput", *_runs(report_runs)])
    _clear_error(capsys, code, out / "tradeoff.png")
    assert sorted(p.name for p in out.iterdir()) == ["results.csv"]


def test_tradeoff_with_a_read_only_table_folder_runs_nothing(report_runs, deny, capsys):
    out = report_runs / "d"
    out.mkdir()
    deny(out)
    code = tradeoff.main(["--dataset", "d", "--no-throughput", *_runs(report_runs)])
    _clear_error(capsys, code, out / "results.csv")


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "existing-folder"])
def test_train_into_a_faulty_folder(fault, existing, small_synthetic_root, tmp_path, deny, capsys):
    top = tmp_path / "out"
    top.mkdir()
    out = top if existing else top / "run"
    deny(top, FAULTS[fault])
    _clear_error(capsys, deep_train.main(_train_args(small_synthetic_root, out)), out)
    assert list(top.iterdir()) == []


@pytest.mark.parametrize("fault", FAULTS)
def test_distill_train_into_a_faulty_runs_folder(
    fault, tiny_market, tmp_path, deny, monkeypatch, capsys
):
    from deep import distill

    runs = tmp_path / "runs"
    runs.mkdir()
    deny(runs, FAULTS[fault])
    args = ["--dataset", "market1501", "--data-root", str(tiny_market), *_runs(runs)]
    teacher_run = make_run(tmp_path / "teacher", tiny_market)
    student = ["--teacher", str(teacher_run), "--student", "mobilenet_v1_0.25"]
    _clear_error(capsys, distill.main(["train", *args, *student]), runs / "market1501")
    assert list(runs.iterdir()) == []


@pytest.mark.parametrize("fault", FAULTS)
def test_export_into_a_faulty_folder(fault, tiny_market, tmp_path, deny, capsys):
    run = make_run(tmp_path / "run", tiny_market)
    top = tmp_path / "onnx"
    top.mkdir()
    deny(top, FAULTS[fault])
    code = export.main([str(run), "--out", str(top / "sub" / "model.onnx")])
    _clear_error(capsys, code, top / "sub")
    assert list(top.iterdir()) == []


def test_pretrain_into_a_read_only_folder_trains_nothing(tmp_path, deny, monkeypatch, capsys):
    out = tmp_path / "weights"
    out.mkdir()
    monkeypatch.setattr(pretrain, "pretrain_one", _never("pretraining"))
    deny(out)
    args = ["--models", "mobilenet_v1_0.25", "--dataset", "market1501", "--jobs", "1"]
    args += _runs(tmp_path / "runs")
    code = pretrain.main([*args, "--data-root", str(tmp_path), "--out", str(out / "w")])
    _clear_error(capsys, code, out / "w")


def test_pretrain_on_a_full_disk(tmp_path, deny, monkeypatch, capsys):
    out = tmp_path / "weights"

    def trained_then_written(config, out_dir, check=False):  # the backbone write at the end
        atomic_write_bytes(Path(out_dir) / f"{config.model}.pt", b"weights")

    monkeypatch.setattr(pretrain, "pretrain_one", trained_then_written)
    monkeypatch.setattr(pretrain, "load_dataset", lambda *a: None)
    deny(tmp_path, errno.ENOSPC)
    args = ["--models", "mobilenet_v1_0.25", "--dataset", "market1501", "--jobs", "1"]
    code = pretrain.main([*args, "--data-root", str(tmp_path), "--out", str(out)])
    _clear_error(capsys, code, out)


@pytest.mark.parametrize("fault", FAULTS)
def test_synthetic_generation_into_a_faulty_folder(fault, tmp_path, deny, capsys):
    top = tmp_path / "datasets"
    top.mkdir()
    deny(top, FAULTS[fault])
    code = synthetic.main(["--preset", "small", "--out", str(top / "synthetic")])
    _clear_error(capsys, code, top / "synthetic")
    assert list(top.iterdir()) == []
    code = synthetic.main(["--preset", "small", "--contact-sheet", str(top / "s" / "sheet.png")])
    _clear_error(capsys, code, top / "s")


@pytest.mark.parametrize("fault", FAULTS)
def test_upsert_into_a_faulty_folder_names_the_table(fault, tmp_path, deny):
    (tmp_path / "runs" / "d").mkdir(parents=True)
    deny(tmp_path / "runs", FAULTS[fault])
    # its folder cannot be created; the folder is there but the lock file cannot be written
    for table in (tmp_path / "runs" / "e" / "results.csv", tmp_path / "runs" / "d" / "results.csv"):
        with pytest.raises(OutputError, match=re.escape(f"cannot write the results table {table}")):
            upsert_rows(table, [result_row()])


# ---------------------------------------------------------------------------------------------
# Item 8: a broken results table stops every entry point that appends rows, before its work
# ---------------------------------------------------------------------------------------------
def _break_table(path: Path, kind: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "folder":
        path.mkdir()
    elif kind == "garbage":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00garbage\x00" * 16)
    else:  # a copy cut off in the middle of its last row
        upsert_rows(path, [result_row(seed=0), result_row(seed=1)])
        text = path.read_text()
        last = text.rstrip("\n").rsplit("\n", 1)[1]
        path.write_text(text[: text.index(last)] + ",".join(last.split(",")[:5]))
    return path


BAD_TABLES = ("folder", "garbage", "cut-off")


def _bad_table_error(capsys, code: int, table: Path) -> None:
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and f"results table {table}" in err, err


@pytest.mark.parametrize("kind", BAD_TABLES)
def test_lomo_xqda_checks_the_table_first(kind, market_root, tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    table = _break_table(RunsLayout(runs).results_table("market1501"), kind)
    monkeypatch.setattr(lomo_xqda, "run", _never("the pipeline"))
    _bad_table_error(capsys, lomo_xqda.main(_classical_args(market_root, runs)), table)
    assert not RunsLayout(runs).classical_dir("market1501").exists()


@pytest.mark.parametrize("kind", BAD_TABLES)
def test_measure_checks_the_table_first(kind, tiny_market, tmp_path, monkeypatch, capsys):
    layout = RunsLayout(tmp_path / "runs")
    run = make_run(layout.cnn_run("market1501", "m", "baseline", 0), tiny_market)
    table = _break_table(layout.results_table("market1501"), kind)
    monkeypatch.setattr(measure, "measure_run", _never("measuring"))
    code = measure.main([str(run), "--engines", "torch", *_runs(layout.root)])
    _bad_table_error(capsys, code, table)
    assert not (run / "summary.json").exists()


def test_measure_outside_the_study_tree_ignores_the_table(tiny_market, tmp_path, monkeypatch):
    """A run trained elsewhere adds no rows, so the shared table is not its business."""
    run = make_run(tmp_path / "elsewhere", tiny_market)
    _break_table(RunsLayout(tmp_path / "runs").results_table("market1501"), "garbage")
    args = [str(run), "--engines", "torch", "--num-timed-queries", "2"]
    code = measure.main([*args, *_runs(tmp_path / "runs")])
    assert code == 0 and (run / "summary.json").is_file()


@pytest.mark.parametrize("kind", BAD_TABLES)
def test_distillation_checks_the_table_before_training(kind, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(distillation, "run_study", _never("training"))
    table = _break_table(tmp_path / "synthetic" / "results.csv", kind)
    before = sorted(tmp_path.rglob("*"))
    code = distillation.main(["--dataset", "synthetic", *_runs(tmp_path)])
    _bad_table_error(capsys, code, table)
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("kind", BAD_TABLES)
def test_tradeoff_checks_the_table_before_running_anything(kind, report_runs, capsys):
    table = _break_table(report_runs / "d" / "results.csv", kind)
    before = sorted(report_runs.rglob("*"))
    code = tradeoff.main(["--dataset", "d", "--no-throughput", *_runs(report_runs)])
    _bad_table_error(capsys, code, table)
    assert sorted(report_runs.rglob("*")) == before


# ---------------------------------------------------------------------------------------------
# Item 11: leftovers after kill -9, and after failed starts
# ---------------------------------------------------------------------------------------------
RUN_OUTPUTS = ("checkpoint.pt", "model.pt", "config.json", "summary.json", "model.onnx")


def _plant_orphans(folder: Path) -> tuple[list[str], list[str]]:
    """Temporary files as a killed atomic writer leaves them, and files that must stay."""
    folder.mkdir(parents=True, exist_ok=True)
    _, real = tempfile.mkstemp(prefix=".checkpoint.pt.", dir=folder)  # exactly atomic_path's
    orphans = [
        Path(real).name,
        ".model.pt.k3j_x9a2",
        ".config.json.0a1b2c3d",
        ".summary.json.abcdefgh",
        ".model.onnx.zz9yy8xx.onnx",
    ]
    kept = [
        "notes.txt",
        ".checkpoint.pt",
        ".checkpoint.pt.short",
        ".checkpoint.pt.toolong99",
        ".checkpoint.pt.ABCDEFGH",
        ".other.pt.abcdefgh",
        "x.model.pt.abcdefgh",
    ]
    for name in orphans[1:] + kept:
        (folder / name).write_bytes(b"half-written")
    (folder / ".model.pt.folder12").mkdir(exist_ok=True)  # a folder, not a temporary file
    return orphans, [*kept, ".model.pt.folder12"]


def test_remove_orphan_temporaries_removes_only_atomic_temporaries(tmp_path):
    folder = tmp_path / "run"
    orphans, kept = _plant_orphans(folder)
    removed = remove_orphan_temporaries(folder, RUN_OUTPUTS)
    assert sorted(p.name for p in removed) == sorted(orphans)
    assert sorted(p.name for p in folder.iterdir()) == sorted(kept)
    assert remove_orphan_temporaries(tmp_path / "missing", RUN_OUTPUTS) == []


def test_training_start_and_resume_remove_orphan_temporaries(small_synthetic_root, tmp_path):
    run = tmp_path / "run"
    config = tiny_train_config(small_synthetic_root, epochs=1, out=str(run))
    orphans, kept = _plant_orphans(run)  # a run folder that a killed start left
    (run / ".reid-run.json").write_text('{"kind": "deep"}')  # its first file (data.ownership)
    deep_train.train(config)
    names = {p.name for p in run.iterdir()}
    assert not names & set(orphans) and set(kept) <= names and "model.pt" in names
    (run / "model.pt").unlink()  # killed while saving the model: resume from the checkpoint
    orphans, kept = _plant_orphans(run)
    deep_train.train(config)
    names = {p.name for p in run.iterdir()}
    assert not names & set(orphans) and set(kept) <= names and "model.pt" in names


def test_classical_run_removes_orphan_temporaries(market_root, tmp_path, capsys):
    runs = tmp_path / "runs"
    run = RunsLayout(runs).classical_run(
        "market1501", "lomo_xqda_market_128x48_retinex-off_reg0.001_svd"
    )
    run.mkdir(parents=True)
    orphans = [".xqda.npz.abcd1234", ".summary.json.x_y_z_12", ".trials.json.00000000"]
    for name in [*orphans, "notes.txt", ".xqda.npz.keep"]:
        (run / name).write_bytes(b"half-written")
    (run / ".reid-run.json").write_text('{"kind": "classical"}')  # written before any output
    assert classical_main(_classical_args(market_root, runs)) == 0
    names = sorted(p.name for p in run.iterdir())
    assert names == [".reid-run.json", ".xqda.npz.keep", "notes.txt", "summary.json", "xqda.npz"]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_abandoned_lomo_temporary_folders_go_at_the_next_run(market_root, tmp_path):
    from classical import features
    from data.layouts import load_dataset

    cache = tmp_path / "cache"
    host = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())  # as the folder names write it
    key = "0123456789abcdef01234567"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead": f".tmp-{key}-{host}-pid{_dead_pid()}-abcd1234",
            "this process": f".tmp-{key}-{host}-pid{os.getpid()}-abcd1234",
            "another live process": f".tmp-{key}-{host}-pid{sleeper.pid}-abcd1234",
            "another host": f".tmp-{key}-elsewhere.example-pid{_dead_pid()}-abcd1234",
            "no owner, recent": f".tmp-{key}-abcd1234",
            "no owner, old": f".tmp-{key}-efgh5678",
        }
        for name in names.values():
            (cache / name).mkdir(parents=True)
            (cache / name / features.FEATURES_FILE).write_bytes(b"\0" * 64)
        old = time.time() - features.STALE_SECONDS - 60
        os.utime(cache / names["no owner, old"], (old, old))
        seen = []

        def loader(path, size):  # what the extraction's own temporary folder is called
            seen.extend(p.name for p in cache.glob(f".tmp-*-pid{os.getpid()}-*"))
            return load_image(path, size)

        records = load_dataset("market1501", market_root).gallery[:2]
        features.extract_split(records, cache, loader=loader, progress=False)
        left = {p.name for p in cache.iterdir() if p.name.startswith(".tmp-")}
        assert left == {
            names[k]
            for k in ("this process", "another live process", "another host", "no owner, recent")
        }
        ours = {n for n in seen if n != names["this process"]}
        now = features.cache_key(records, (128, 48), features.lomo_params())
        assert len(ours) == 1 and ours.pop().startswith(f".tmp-{now}-{host}-pid{os.getpid()}-")
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("entry", ["classical.pipeline", "compare.lomo_xqda"])
def test_a_failed_classical_start_leaves_no_run_folder(entry, market_root, tmp_path, capsys):
    main = {"classical.pipeline": classical_main, "compare.lomo_xqda": lomo_xqda.main}[entry]
    runs = tmp_path / "runs"
    assert main(_classical_args(tmp_path / "missing", runs)) == 2  # no dataset there
    bad = sorted((market_root / "bounding_box_test").glob("*.jpg"))[0]
    bad.write_bytes(b"not a JPEG")  # a corrupt image: LOMO extraction fails
    assert main(_classical_args(market_root, runs)) == 2
    assert str(bad) in capsys.readouterr().err
    assert not RunsLayout(runs).classical_dir("market1501").exists()
    assert not list(RunsLayout(runs).lomo_cache("market1501").glob(".tmp-*"))


def test_a_failed_training_start_leaves_no_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert deep_train.main(_train_args(tmp_path / "missing", out)) == 2  # no dataset there
    data_root = write_tiny_market(tmp_path / "market")
    bad = sorted((data_root / "bounding_box_train").glob("*.jpg"))[0]
    bad.write_bytes(b"not a JPEG")
    assert deep_train.main(_train_args(data_root, out)) == 2
    assert str(bad) in capsys.readouterr().err
    assert not out.exists()
