"""Which jobs a trial run sends: the rules of ``--only`` and ``--limit`` (pure)."""

from __future__ import annotations

import pytest

from orchestrator.errors import ConfigError
from orchestrator.selection import Selection

IDS = ["a", "hero_16x9_t1", "hero_16x9_t2", "hero_9x16_t1", "hero", "hero_x", "b"]


def test_an_exact_id_wins_over_the_entry_it_could_prefix() -> None:
    """`hero` is a job's own id here, so it takes that job alone, not `hero_x` or the takes."""
    assert Selection(only=("hero",)).chosen(IDS) == {"hero"}


def test_an_entry_id_takes_every_job_expanded_from_it_at_any_depth() -> None:
    assert Selection(only=("hero_16x9",)).chosen(IDS) == {"hero_16x9_t1", "hero_16x9_t2"}


def test_limit_counts_in_manifest_order_and_applies_after_only() -> None:
    assert Selection(limit=3).chosen(IDS) == {"a", "hero_16x9_t1", "hero_16x9_t2"}
    assert Selection(only=("b", "hero_16x9"), limit=2).chosen(IDS) == {
        "hero_16x9_t1",
        "hero_16x9_t2",
    }


def test_no_flags_is_every_job_and_says_so() -> None:
    assert Selection().everything
    assert Selection(only=("a",), limit=2).describe() == "--only a --limit 2"


def test_names_found_in_any_batch_pass_and_the_missing_ones_are_all_named() -> None:
    batches = {"one": ["a", "hero_t1"], "two": ["b"]}
    Selection(only=("a", "hero", "b")).check(batches)
    with pytest.raises(ConfigError) as refused:
        Selection(only=("a", "c", "zz")).check(batches)
    assert refused.value.message.startswith("--only: no job 'c' in batches 'one', 'two'")
    assert "(nor 'zz')" in refused.value.message
