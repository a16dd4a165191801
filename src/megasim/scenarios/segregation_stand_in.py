"""The surrogate's answer in the segregation scenario: a seeded Schelling rule, not an LLM.

Registered for ``meta["task"] == "segregation"`` by scenarios/segregation.py (see
model/stand_in.py).

Why a rule: scale tests and 100k-agent runs need answers that react to what the agent
sees, cost nothing and repeat exactly. The request's ``meta`` carries the numbers the
prompt states (``here``: same-group and occupied neighbours; ``offers``: the same for
each offered empty cell, as it would be after the move; ``threshold``: the share of
same-group neighbours the agent wants). Content agents stay; discontent ones move to
the offer with the highest same-group share (an empty neighbourhood counts as 1: no
one to mind), ties broken by the request's seed. The reply is labelled ``[surrogate]``.
"""

from __future__ import annotations

from megasim.model.base import ChatRequest
from megasim.seeding import mix64

LETTERS = "ABCDEFGH"


def _share(same: int, occupied: int) -> float:
    return same / occupied if occupied else 1.0


def segregation_choice(request: ChatRequest) -> str:
    """``{"choice": "stay"}`` or ``{"choice": "<letter>"}``; a pure function of the request."""
    meta = request.meta
    same, occupied = meta["here"]
    if _share(same, occupied) >= float(meta["threshold"]):
        return '{"choice": "stay"}'
    scores = [_share(s, o) for s, o in meta["offers"]]
    if not scores:
        return '{"choice": "stay"}'
    best = max(scores)
    ties = [i for i, score in enumerate(scores) if score == best]
    pick = ties[mix64(request.seed or 0) % len(ties)]
    return f'{{"choice": "{LETTERS[pick]}"}}'
