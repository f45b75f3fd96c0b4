"""Where the submissions partitions are trimmed to (issue 22): up to what the group committed,
never beyond the partition's end, and only forwards."""

from __future__ import annotations

from aiokafka import TopicPartition

from shared.kafka.trimming import trim_points

A, B, C, D = (TopicPartition("agency.a.submissions.v1", p) for p in range(4))


def test_each_partition_is_trimmed_to_what_the_group_committed() -> None:
    committed = {A: 40, B: 7}
    assert trim_points(committed, {A: 10, B: 0}, {A: 50, B: 7}) == {A: 40, B: 7}


def test_never_beyond_the_partition_s_end() -> None:
    # a commit past the end: set by hand, or the topic made again; the end is the most
    assert trim_points({A: 90}, {A: 10}, {A: 50}) == {A: 50}


def test_nothing_where_the_commit_is_not_past_the_log_start() -> None:
    committed = {A: 10, B: 3}
    assert trim_points(committed, {A: 10, B: 5}, {A: 20, B: 9}) == {}


def test_nothing_without_a_commit_or_a_measured_start_and_end() -> None:
    committed = {A: -1, B: 5, C: 5}  # A: never committed (aiokafka's -1)
    starts, ends = {A: 0, B: 0, D: 0}, {A: 9, C: 9, D: 9}
    assert trim_points(committed, starts, ends) == {}  # B has no end, C no start, D no commit
