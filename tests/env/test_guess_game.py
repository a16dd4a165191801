"""Tests for megasim.env.guess_game.GuessGame: shard reductions, driver combine, rounds."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from megasim.agent import Agent, PersonaTable
from megasim.env.base import DecisionBatch
from megasim.env.guess_game import GuessGame, GuessObservation
from megasim.exact import as_fraction

NAN = float("nan")


class _StubModel:
    name = "stub"
    immediate = True


_PERSONAS = PersonaTable(pa.table({"x": [0]}))


def _agent(group: int) -> Agent:
    return Agent(agent_id=group, row=0, personas=_PERSONAS, model=_StubModel(), group=group)


def _batch(groups: list[int], values: list[float], start_id: int = 0) -> DecisionBatch:
    vals = np.asarray(values, dtype=np.float64)
    return DecisionBatch(
        agent_ids=np.arange(start_id, start_id + len(groups), dtype=np.int64),
        groups=np.asarray(groups, dtype=np.int32),
        values=vals,
        valid=~np.isnan(vals),
    )


def _expected(
    groups: np.ndarray, values: np.ndarray, n_groups: int, ratio: float, offset: float
) -> dict[str, Any]:
    """The outcome computed directly with numpy on all decisions at once."""
    valid = ~np.isnan(values)
    per_group = []
    for g in range(n_groups):
        in_group = groups == g
        guesses = values[in_group & valid]
        mean = float(np.mean(guesses)) if guesses.size else None
        per_group.append(
            {
                "group": g,
                "n": int(in_group.sum()),
                "valid": int(guesses.size),
                "mean": mean,
                "std": float(np.std(guesses)) if guesses.size else None,
                "winner": ratio * mean + offset if mean is not None else None,
            }
        )
    pooled = values[valid]
    mean_all = float(np.mean(pooled)) if pooled.size else None
    return {
        "n": int(values.size),
        "valid": int(pooled.size),
        "invalid": int(values.size - pooled.size),
        "mean": mean_all,
        "winner": ratio * mean_all + offset if mean_all is not None else None,
        "groups": per_group,
    }


def _assert_outcome(actual: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    def close(a: float | None, b: float | None, tol: float = 1e-9) -> bool:
        if a is None or b is None:
            return a is None and b is None
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol)

    assert (actual["n"], actual["valid"], actual["invalid"]) == (
        expected["n"],
        expected["valid"],
        expected["invalid"],
    )
    assert close(actual["mean"], expected["mean"]), (actual["mean"], expected["mean"])
    assert close(actual["winner"], expected["winner"]), (actual["winner"], expected["winner"])
    assert len(actual["groups"]) == len(expected["groups"])
    for got, want in zip(actual["groups"], expected["groups"], strict=True):
        assert (got["group"], got["n"], got["valid"]) == (want["group"], want["n"], want["valid"])
        assert close(got["mean"], want["mean"]), (got, want)
        # std comes from sum and sum of squares; allow for cancellation on values up to 100
        assert close(got["std"], want["std"], tol=1e-5), (got, want)
        assert close(got["winner"], want["winner"]), (got, want)


# --- reduce ----------------------------------------------------------------------------


def test_reduce_per_group_counts_and_sums() -> None:
    game = GuessGame([3, 2, 2], rounds=3)
    batch = _batch([0, 0, 0, 1, 1, 2, 2], [10.0, NAN, 20.0, 30.0, 50.0, NAN, NAN])
    partial = game.reduce(batch)
    assert partial["n"] == [3, 2, 2]
    assert partial["valid"] == [2, 2, 0]
    # sums are exact integers in units of 2**-SCALE_BITS (order-independent across shards)
    assert [as_fraction(x) for x in partial["sum"]] == [30, 80, 0]
    assert [as_fraction(x) for x in partial["sumsq"]] == [500, 3400, 0]
    for value in partial.values():  # plain lists so that partials pickle small
        assert isinstance(value, list)


def test_reduce_empty_batch_has_one_entry_per_group() -> None:
    game = GuessGame([1, 1, 1], rounds=1)
    partial = game.reduce(_batch([], []))
    assert partial == {"n": [0, 0, 0], "valid": [0, 0, 0], "sum": [0.0] * 3, "sumsq": [0.0] * 3}


def test_reduce_ignores_nan_of_invalid_guesses() -> None:
    game = GuessGame([4], rounds=1)
    partial = game.reduce(_batch([0, 0, 0, 0], [NAN, 40.0, NAN, NAN]))
    assert [as_fraction(x) for x in partial["sum"]] == [40]
    assert [as_fraction(x) for x in partial["sumsq"]] == [1600]


# --- combine ---------------------------------------------------------------------------


def test_combine_two_partials_matches_numpy() -> None:
    game = GuessGame([4, 3, 3], rounds=3)
    groups_a, values_a = [0, 1, 2, 0, 1], [10.0, 90.0, NAN, 30.0, 60.0]
    groups_b, values_b = [0, 2, 2, 1, 0], [NAN, 5.0, 15.0, 0.0, 100.0]
    partials = [game.reduce(_batch(groups_a, values_a)), game.reduce(_batch(groups_b, values_b))]
    outcome = game.combine(partials)
    expected = _expected(
        np.array(groups_a + groups_b), np.array(values_a + values_b), 3, 2 / 3, 0.0
    )
    _assert_outcome(outcome, expected)
    # spot check against hand-computed numbers: group 0 guesses 10, 30, 100
    assert outcome["groups"][0]["mean"] == pytest.approx(140 / 3)
    assert outcome["groups"][0]["winner"] == pytest.approx(2 / 3 * 140 / 3)
    assert outcome["invalid"] == 2


def test_combine_is_order_and_split_independent() -> None:
    game = GuessGame([2, 2], rounds=1)
    groups, values = [0, 1, 0, 1], [1.0, 2.0, 3.0, NAN]
    expected = _expected(np.array(groups), np.array(values), 2, 2 / 3, 0.0)
    parts = [
        game.reduce(_batch([0, 1], [1.0, 2.0])),
        game.reduce(_batch([0, 1], [3.0, NAN])),
        game.reduce(_batch([], [])),
    ]
    _assert_outcome(game.combine([game.reduce(_batch(groups, values))]), expected)
    _assert_outcome(game.combine(parts), expected)
    _assert_outcome(game.combine(parts[::-1]), expected)


def test_offset_variant() -> None:
    """The "5 + 1/2 of the average" game."""
    game = GuessGame([2, 2], rounds=2, ratio=0.5, offset=5.0)
    partial = game.reduce(_batch([0, 0, 1, 1], [20.0, 40.0, 0.0, 100.0]))
    outcome = game.combine([partial])
    assert outcome["groups"][0]["winner"] == pytest.approx(0.5 * 30 + 5)  # 20
    assert outcome["groups"][1]["winner"] == pytest.approx(0.5 * 50 + 5)  # 30
    assert outcome["winner"] == pytest.approx(0.5 * 40 + 5)  # pooled
    assert outcome["groups"][1]["std"] == pytest.approx(50.0)
    _assert_outcome(
        outcome, _expected(np.array([0, 0, 1, 1]), np.array([20.0, 40, 0, 100]), 2, 0.5, 5.0)
    )


def test_group_without_valid_guesses_has_no_winner() -> None:
    game = GuessGame([2, 2, 1], rounds=3)
    outcome = game.combine([game.reduce(_batch([0, 0, 1, 1, 2], [10.0, 20.0, NAN, NAN, 7.0]))])
    empty = outcome["groups"][1]
    assert empty == {"group": 1, "n": 2, "valid": 0, "mean": None, "std": None, "winner": None}
    assert outcome["valid"] == 3
    assert outcome["invalid"] == 2


def test_no_valid_guesses_at_all() -> None:
    game = GuessGame([2], rounds=1)
    outcome = game.combine([game.reduce(_batch([0, 0], [NAN, NAN]))])
    assert outcome["mean"] is None
    assert outcome["winner"] is None
    assert outcome["invalid"] == 2


# --- apply / observe -------------------------------------------------------------------


async def test_apply_keeps_previous_winner_of_a_group_without_valid_guesses() -> None:
    game = GuessGame([2, 2, 2], rounds=3)
    round1 = game.combine([game.reduce(_batch([0, 0, 1, 1, 2, 2], [30, 60, 0, 90, 45, 45]))])
    await game.apply(1, round1)
    assert game.state["winners"] == pytest.approx([30.0, 30.0, 30.0])
    assert game.state["step"] == 1

    round2 = game.combine([game.reduce(_batch([0, 0, 1, 1, 2, 2], [NAN, NAN, 15, 15, NAN, 3]))])
    await game.apply(2, round2)
    winners = game.state["winners"]
    assert winners[0] == pytest.approx(30.0)  # no valid guess: last round's number stays
    assert winners[1] == pytest.approx(10.0)
    assert winners[2] == pytest.approx(2.0)
    assert game.state["step"] == 2


async def test_apply_emits_step_end_with_outcome() -> None:
    game = GuessGame([1], rounds=1)
    seen: list[Mapping[str, Any]] = []

    async def listener(event: str, payload: Mapping[str, Any]) -> None:
        seen.append(payload)

    game.on("step_end", listener)
    outcome = game.combine([game.reduce(_batch([0], [60.0]))])
    await game.apply(1, outcome)
    await game.drain()
    assert len(seen) == 1
    assert seen[0]["step"] == 1
    assert seen[0]["env"] == "guess_game"
    assert seen[0]["winner"] == pytest.approx(40.0)


def test_first_round_observation() -> None:
    game = GuessGame([3, 2], rounds=4, low=1.0, high=99.0)
    observation = game.observe(_agent(1))  # prepares on first use
    assert observation == GuessObservation(
        round=1,
        rounds=4,
        group=1,
        players=2,
        previous_winner=None,
        ratio=2 / 3,
        offset=0.0,
        low=1.0,
        high=99.0,
    )
    assert game.observe(_agent(0)).players == 3


async def test_observe_after_apply_and_prepare() -> None:
    game = GuessGame([2, 2], rounds=3, ratio=0.5, offset=5.0)
    game.prepare()
    assert game.observe(_agent(0)).previous_winner is None
    outcome = game.combine([game.reduce(_batch([0, 0, 1, 1], [10.0, 30.0, NAN, NAN]))])
    await game.apply(1, outcome)
    game.prepare()
    first, second = game.observe(_agent(0)), game.observe(_agent(1))
    assert first.round == 2
    assert first.group == 0
    assert first.previous_winner == pytest.approx(15.0)
    assert second.group == 1
    assert second.previous_winner is None  # that group never had a valid guess
    assert (first.ratio, first.offset) == (0.5, 5.0)


def test_observations_are_shared_per_group() -> None:
    """One observation object per group, not per agent (a million agents, few groups)."""
    game = GuessGame([5, 5], rounds=1)
    game.prepare()
    assert game.observe(_agent(1)) is game.observe(_agent(1))


async def test_snapshot_restore_driver_to_shard_replica() -> None:
    driver = GuessGame([3, 2, 4], rounds=5, ratio=0.5, offset=5.0, low=0.0, high=50.0)
    outcome = driver.combine([driver.reduce(_batch([0, 1, 2, 2], [10.0, 20.0, NAN, 40.0]))])
    await driver.apply(1, outcome)
    driver.prepare()

    replica = GuessGame([1], rounds=1)  # shards build a default game, then restore
    replica.restore(driver.snapshot())
    replica.prepare()
    for group in range(3):
        assert replica.observe(_agent(group)) == driver.observe(_agent(group))
    assert replica.groups == 3
    assert replica.observe(_agent(2)).round == 2
    assert replica.observe(_agent(2)).previous_winner == pytest.approx(25.0)
    # the replica reduces and combines exactly like the driver
    batch = _batch([0, 1, 2], [1.0, 2.0, 3.0])
    assert replica.reduce(batch) == driver.reduce(batch)


async def test_snapshot_survives_later_rounds_of_the_driver() -> None:
    """Shards may still hold round N's snapshot while the driver applies round N."""
    driver = GuessGame([1, 1], rounds=2)
    snapshot = driver.snapshot()
    await driver.apply(1, driver.combine([driver.reduce(_batch([0, 1], [30.0, 60.0]))]))
    assert driver.state["winners"] == pytest.approx([20.0, 40.0])
    assert snapshot["state"]["winners"] == [None, None]
    assert snapshot["state"]["step"] == 0
    replica = GuessGame([1], rounds=1)
    replica.restore(snapshot)
    replica.prepare()
    assert replica.observe(_agent(0)).previous_winner is None


# --- property test ---------------------------------------------------------------------


@st.composite
def _decisions(draw: st.DrawFn) -> tuple[int, np.ndarray, np.ndarray, int]:
    n_groups = draw(st.integers(min_value=1, max_value=5))
    size = draw(st.integers(min_value=0, max_value=60))
    groups = draw(st.lists(st.integers(0, n_groups - 1), min_size=size, max_size=size))
    values = draw(
        st.lists(
            st.one_of(st.just(NAN), st.floats(min_value=0.0, max_value=100.0)),
            min_size=size,
            max_size=size,
        )
    )
    split = draw(st.integers(min_value=0, max_value=size))
    return n_groups, np.array(groups, dtype=np.int32), np.array(values, dtype=np.float64), split


@settings(max_examples=150, deadline=None)
@given(
    data=_decisions(),
    ratio=st.floats(min_value=0.1, max_value=1.5),
    offset=st.floats(min_value=-10, max_value=10),
)
def test_property_combine_of_split_matches_numpy(
    data: tuple[int, np.ndarray, np.ndarray, int], ratio: float, offset: float
) -> None:
    n_groups, groups, values, split = data
    game = GuessGame([1] * n_groups, rounds=1, ratio=ratio, offset=offset)
    partials = [
        game.reduce(_batch(groups[:split].tolist(), values[:split].tolist())),
        game.reduce(_batch(groups[split:].tolist(), values[split:].tolist(), start_id=split)),
    ]
    _assert_outcome(game.combine(partials), _expected(groups, values, n_groups, ratio, offset))
