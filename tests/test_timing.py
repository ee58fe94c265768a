"""The timing harness on trivial pipelines."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from compare.timing import TimingResult, batch_throughput, machine_info, thread_limit, time_queries


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
