"""Built-in scenarios, by name."""

from __future__ import annotations

from megasim.scenarios.base import Scenario


def get_scenario(name: str) -> Scenario:
    if name == "guess_two_thirds":
        from megasim.scenarios.guess_two_thirds import GuessTwoThirds

        return GuessTwoThirds()
    if name == "chat_opinion":
        from megasim.scenarios.chat_opinion import ChatOpinion

        return ChatOpinion()
    raise KeyError(f"unknown scenario {name!r}")
