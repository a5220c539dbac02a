"""parallel.py: how a large run is shared between forked workers, and how their ends are reported."""

from __future__ import annotations

import gc
import os
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evarchive.errors import CouldNotRunError, InputError
from evarchive.parallel import (
    MIN_URLS_PER_WORKER,
    ResultBatch,
    fewer_collections,
    run_in_workers,
    split_by_host,
    worker_count,
)
from evarchive.urls import host_of


def urls_on(hosts: int, per_host: int) -> list[str]:
    return [f"https://h{h}.example/{i}" for h in range(hosts) for i in range(per_host)]


# --------------------------------------------------------------------------- how many workers

def test_a_small_run_stays_in_one_process() -> None:
    assert worker_count(None, urls_on(10, MIN_URLS_PER_WORKER // 10 + 1)) == 1


def test_a_large_run_gets_the_workers_asked_for_but_never_more_than_hosts() -> None:
    many = urls_on(3, 1000)
    assert worker_count(2, many) == 2
    assert worker_count(8, many) == 3
    assert worker_count(8, urls_on(1, 5000)) == 1  # one host is never split


def test_workers_need_enough_urls_each() -> None:
    assert worker_count(8, urls_on(50, 5)) == 250 // MIN_URLS_PER_WORKER


# --------------------------------------------------------------------------- how URLs are shared

@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 50)), max_size=120), st.integers(1, 5))
def test_shares_hold_every_url_once_and_each_host_whole(pairs: list[tuple[int, int]], workers: int) -> None:
    urls = [f"http://host{h}.example/{n}" for h, n in pairs]
    shares = split_by_host(urls, workers)
    assert Counter(u for share in shares for u in share) == Counter(urls)
    assert len(shares) <= workers
    assert all(shares)
    owners = {}
    for index, share in enumerate(shares):
        for url in share:
            assert owners.setdefault(host_of(url), index) == index


def test_hosts_are_balanced_biggest_first() -> None:
    urls = urls_on(1, 60) + [u.replace("h0.", "h1.") for u in urls_on(1, 30)] + \
        [u.replace("h0.", "h2.") for u in urls_on(1, 30)]
    shares = split_by_host(urls, 2)
    assert sorted(len(s) for s in shares) == [60, 60]


def test_items_other_than_urls_are_shared_by_the_url_they_name() -> None:
    rows = [{"id": i, "url": f"https://h{i % 2}.example/{i}"} for i in range(6)]
    shares = split_by_host(rows, 2, url_of=lambda row: row["url"])
    assert sorted(sorted(r["id"] for r in s) for s in shares) == [[0, 2, 4], [1, 3, 5]]


# --------------------------------------------------------------------------- real forked workers

def _send_squares(share: list[int], batch: ResultBatch) -> None:
    for n in share:
        batch.add(n * n)


def test_workers_results_all_reach_the_parent() -> None:
    gathered: list[int] = []
    run_in_workers([[1, 2, 3], [4, 5]], _send_squares, gathered.extend, "test", "retry")
    assert sorted(gathered) == [1, 4, 9, 16, 25]


def _refuse(share: list[int], batch: ResultBatch) -> None:
    batch.send([share[0]])
    raise InputError(f"share {share[0]} refused")


def test_a_workers_own_error_is_raised_in_the_parent_after_its_results() -> None:
    gathered: list[int] = []
    with pytest.raises(InputError, match="share 7 refused"):
        run_in_workers([[7]], _refuse, gathered.extend, "test", "retry")
    assert gathered == [7]


def _crash(share: list[int], batch: ResultBatch) -> None:
    raise ZeroDivisionError("boom")


def test_an_unexpected_worker_failure_could_not_run_and_names_it() -> None:
    with pytest.raises(CouldNotRunError, match="a test worker failed: ZeroDivisionError: boom"):
        run_in_workers([[1]], _crash, lambda _: None, "test", "retry")


def _vanish(share: list[int], batch: ResultBatch) -> None:
    os._exit(9)  # as a kill -9 of the worker would: no word to the parent


def test_a_worker_that_vanishes_is_reported_with_the_advice() -> None:
    with pytest.raises(CouldNotRunError, match="died without a word; run it again"):
        run_in_workers([[1]], _vanish, lambda _: None, "test", "run it again")


# --------------------------------------------------------------------------- garbage collector

def test_collector_settings_are_restored_even_after_an_error() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_collections():
        assert gc.get_threshold() != before
        assert gc.get_freeze_count() > 0
        raise RuntimeError
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_batches_are_sent_when_their_interval_has_passed() -> None:
    sent: list[Any] = []

    class Sink:
        def put(self, item: Any) -> None:
            sent.append(item)

    batch = ResultBatch(Sink(), interval=3600)
    batch.add(1)
    batch.add(2)
    assert sent == []
    batch.flush()
    assert sent == [("results", [1, 2])]
    batch.flush()
    assert sent == [("results", [1, 2])]  # nothing waiting: nothing sent
