"""Stand-in answers per task: how the surrogate model answers a scenario's requests.

The surrogate imitates an LLM only where a rule for the request's ``meta["task"]`` says
how; scenarios register their own rule, as a user's scenario would, so the model layer
never needs to know a scenario. A rule is a pure function of the request (its seed and
meta), so stand-in runs are reproducible in every runtime; the surrogate labels its
text ``[surrogate]``: never LLM behaviour.
"""

from __future__ import annotations

from collections.abc import Callable

from megasim.model.base import ChatRequest

StandInRule = Callable[[ChatRequest], str]
_RULES: dict[str, StandInRule] = {}


def register_stand_in(task: str, rule: StandInRule) -> None:
    """The surrogate answers requests whose ``meta["task"]`` is ``task`` with ``rule``.
    Register at import time of the module that builds the agents (every process that
    builds them, Ray actors included, imports it)."""
    _RULES[task] = rule


def stand_in_rule(task: object) -> StandInRule | None:
    return _RULES.get(task) if isinstance(task, str) else None
