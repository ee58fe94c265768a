"""The timing harness on trivial pipelines."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from compare.timing import (
    TimingResult,
    batch_throughput,
    gallery_scaling,
    machine_info,
    thread_limit,
    time_gallery_matching,
    time_queries,
)


def test_harness_structure_and_positivity():
    images = [np.zeros((8, 4, 3), np.uint8) for _ in range(3)]
    model = torch.nn.Linear(96, 4)

    def extract(image):
        return model(torch.from_numpy(image).float().reshape(1, -1))[0].numpy()

    gallery = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)

    def match(feature):
        return np.argsort(((gallery - feature) ** 2).sum(1))[:5]

    result = time_queries(extract, match, images, num_queries=12, warmup=2, threads=1)
    assert isinstance(result, TimingResult)
    assert result.num_queries == 12 and result.threads == 1
    for name in ("ms_extract", "ms_match", "ms_query", "ms_query_p90"):
        assert getattr(result, name) > 0
    assert result.ms_query_p90 >= result.ms_query


def test_harness_separates_extraction_and_matching():
    def slow_extract(image):
        time.sleep(0.004)
        return np.zeros(2)

    result = time_queries(
        slow_extract,
        lambda f: np.arange(1),
        [np.zeros((2, 2, 3))],
        num_queries=5,
        warmup=0,
        threads=1,
    )
    assert result.ms_extract >= 4.0 > result.ms_match


def test_thread_limit_restores():
    before = torch.get_num_threads()
    with thread_limit(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="thread count"), thread_limit(0):
        pass


def test_bad_arguments_and_throughput():
    with pytest.raises(ValueError, match="empty"):
        time_queries(lambda i: i, lambda f: f, [], num_queries=1)
    rate = batch_throughput(
        lambda b: b.reshape(len(b), -1).sum(1),
        np.zeros((5, 4, 4, 3)),
        batch_size=8,
        repeats=1,
        threads=1,
    )
    assert rate > 0
    info = machine_info(1)
    assert info["threads"] == 1 and "cpu" in info and "torch" in info


def test_harness_cycles_queries_and_runs_in_inference_mode():
    seen = []

    def extract(image):
        seen.append((int(image[0, 0, 0]), torch.is_inference_mode_enabled()))
        return np.zeros(2)

    images = [np.full((2, 2, 3), i, np.uint8) for i in range(3)]
    result = time_queries(extract, lambda f: np.arange(1), images, num_queries=7, warmup=2)
    assert len(seen) == 9 and all(flag for _, flag in seen)
    assert [i for i, _ in seen[2:]] == [0, 1, 2, 0, 1, 2, 0]  # timed queries cycle in order
    assert result.num_queries == 7 and result.threads >= 1
    with pytest.raises(ValueError, match="num_queries"):
        time_queries(extract, lambda f: f, images, num_queries=0)


def test_thread_limit_sets_and_restores_numba_and_blas():
    import numba

    from compare import timing

    numba_before, blas_before = numba.get_num_threads(), timing.blas_threads()
    with thread_limit(1):
        assert numba.get_num_threads() == 1
        if blas_before is not None:  # numpy's OpenBLAS exposes its thread API
            assert timing.blas_threads() == 1
    assert numba.get_num_threads() == numba_before
    assert timing.blas_threads() == blas_before


def test_machine_info_fields():
    info = machine_info(1)
    for key in ("cpu", "physical_cores", "logical_cores", "numpy", "numba", "device"):
        assert key in info
    assert info["cpu"] and info["logical_cores"] >= 1


def test_gallery_matching_is_positive_and_blocked():
    point = time_gallery_matching(16, 3000, k=5, budget=16 * 4 * 1000, target_seconds=0.01)
    assert point.blocks == 3 and point.gallery_size == 3000 and point.dim == 16
    assert 0 < point.ms_match <= point.ms_match_p90 and point.num_queries >= 5
    with pytest.raises(ValueError, match="dim"):
        time_gallery_matching(0, 10)


def test_gallery_scaling_is_cached(tmp_path, monkeypatch):
    from compare import timing

    cache = tmp_path / "scaling.json"
    first = gallery_scaling([8, 4], [200, 100], k=3, cache_path=cache, log=None)
    assert [(p.dim, p.gallery_size) for p in first] == [(4, 100), (4, 200), (8, 100), (8, 200)]

    def no_measuring(*args, **kwargs):
        raise AssertionError("a cached point was measured again")

    monkeypatch.setattr(timing, "time_gallery_matching", no_measuring)
    again = gallery_scaling([4, 8], [100, 200], k=3, cache_path=cache, log=None)
    assert again == first
    with pytest.raises(AssertionError, match="measured again"):
        gallery_scaling([4], [100], k=3, cache_path=cache, refresh=True, log=None)
    monkeypatch.undo()
    # refreshing some points keeps the others
    gallery_scaling([4], [100], k=3, cache_path=cache, refresh=True, log=None)
    monkeypatch.setattr(timing, "time_gallery_matching", no_measuring)
    assert len(gallery_scaling([4, 8], [100, 200], k=3, cache_path=cache, log=None)) == 4
    monkeypatch.undo()
    cache.write_text("{broken")  # a broken cache is re-measured, not an error
    assert len(gallery_scaling([4], [100], k=3, cache_path=cache, log=None)) == 1


def test_engine_is_recorded_and_must_use_the_timing_thread_count():
    images = [np.zeros((2, 2, 3), np.uint8)]
    options = {"threads": 1, "intra_op_num_threads": 1}
    result = time_queries(
        lambda i: np.zeros(2),
        lambda f: np.arange(1),
        images,
        num_queries=2,
        threads=1,
        engine="onnxruntime",
        engine_options=options,
    )
    assert result.engine == "onnxruntime" and result.as_dict()["engine_options"] == options
    plain = time_queries(lambda i: np.zeros(2), lambda f: f, images, num_queries=1, threads=1)
    assert (plain.engine, plain.engine_options) == ("", {})
    with pytest.raises(ValueError, match=r"engine openvino is set to 2 thread\(s\)"):
        time_queries(
            lambda i: np.zeros(2),
            lambda f: f,
            images,
            num_queries=1,
            threads=1,
            engine="openvino",
            engine_options={"threads": 2},
        )
