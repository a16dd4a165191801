"""Getting a number out of a model, two ways (``game.answer_mode``).

``structured`` (ours): one call asking for JSON; an unusable answer gets one repair call.
``extract`` (the paper's): a free-text answer, then a second call that extracts the number
from it, up to ``EXTRACT_TRIES`` tries; a failed extraction is an invalid decision with its
reason. Both keep every text the model wrote in ``raw_text`` and sum tokens and latency.
"""

from __future__ import annotations

from megasim.agent import Decision
from megasim.env.guess_game import GuessObservation
from megasim.model.base import ChatMessage, ChatRequest, ChatResponse, ModelClient
from megasim.model.parsing import parse_guess
from megasim.scenarios.guess_prompts import GUESS_ONLY_SCHEMA, Prompt

REPAIR_SEPARATOR = "\n--- repair ---\n"
EXTRACT_SEPARATOR = "\n--- extract ---\n"
EXTRACT_TRIES = 3
EXTRACT_MAX_TOKENS = 16
EXTRACT_SYSTEM = (
    "You read a player's reply in a number-guessing game and report the number the player "
    "chose as their answer."
)


def repair_instruction(reason: str | None, obs: GuessObservation) -> str:
    return (
        f"That answer could not be used ({reason}). Reply with JSON only: "
        f'{{"guess": <a number between {obs.low:g} and {obs.high:g}>}}'
    )


def extract_instruction(reply: str, obs: GuessObservation) -> str:
    return (
        f"The player's reply:\n<<<\n{reply}\n>>>\nWhich number between {obs.low:g} and "
        f"{obs.high:g} did the player choose? Reply with that number only."
    )


def _failed_call(prompt: Prompt, response: ChatResponse) -> Decision:
    return Decision(
        value=None,
        valid=False,
        raw_text=None,
        prompt_id=prompt.prompt_id,
        tokens_in=response.tokens_in,
        tokens_out=response.tokens_out,
        latency_ms=response.latency_s * 1000,
        error=f"model: {response.error}",
        prompt=prompt.messages,
    )


async def answer_structured(
    model: ModelClient,
    request: ChatRequest,
    prompt: Prompt,
    obs: GuessObservation,
    repair: bool,
) -> Decision:
    """One JSON call; one repair call (``repair``) when the answer is unusable."""
    response = await model.complete(request)
    if response.error is not None:
        return _failed_call(prompt, response)
    parsed = parse_guess(response.text, obs.low, obs.high)
    if not parsed.valid and repair:
        return await _repair(model, request, response, parsed.reason, prompt, obs)
    return Decision(
        parsed.value,
        parsed.valid,
        response.text,
        prompt.prompt_id,
        response.tokens_in,
        response.tokens_out,
        response.latency_s * 1000,
        None if parsed.valid else f"parse: {parsed.reason}",
        prompt=prompt.messages,
    )


async def _repair(
    model: ModelClient,
    request: ChatRequest,
    first: ChatResponse,
    reason: str | None,
    prompt: Prompt,
    obs: GuessObservation,
) -> Decision:
    """One repair call for an unusable answer; both texts are kept in ``raw_text``."""
    messages = (
        *request.messages,
        ChatMessage("assistant", first.text),
        ChatMessage("user", repair_instruction(reason, obs)),
    )
    retry = ChatRequest(
        messages,
        24,
        request.temperature,
        (request.seed or 0) + 1,
        GUESS_ONLY_SCHEMA,
        request.agent_id,
        request.persona,
        request.meta,
    )
    second = await model.complete(retry)
    parsed = parse_guess(second.text, obs.low, obs.high)
    error = None if parsed.valid else f"parse: {parsed.reason} (after repair: {reason})"
    if second.error is not None:
        error = f"parse: {reason}; repair call failed: {second.error}"
    return Decision(
        parsed.value if second.error is None else None,
        parsed.valid and second.error is None,
        f"{first.text}{REPAIR_SEPARATOR}{second.text}",
        f"{prompt.prompt_id}+repair",
        first.tokens_in + second.tokens_in,
        first.tokens_out + second.tokens_out,
        (first.latency_s + second.latency_s) * 1000,
        error,
        prompt=prompt.messages,
    )


async def answer_extract(
    model: ModelClient, request: ChatRequest, prompt: Prompt, obs: GuessObservation
) -> Decision:
    """Free text, then up to EXTRACT_TRIES extraction calls. An extracted number outside
    the range ends the tries (the player's answer is invalid, not the extraction)."""
    first = await model.complete(request)
    if first.error is not None:
        return _failed_call(prompt, first)
    texts = [first.text]
    tokens_in, tokens_out, latency = first.tokens_in, first.tokens_out, first.latency_s
    messages = (
        ChatMessage("system", EXTRACT_SYSTEM),
        ChatMessage("user", extract_instruction(first.text, obs)),
    )
    reason = "no extraction call answered"
    for attempt in range(1, EXTRACT_TRIES + 1):
        call = ChatRequest(
            messages,
            EXTRACT_MAX_TOKENS,
            request.temperature,
            (request.seed or 0) + attempt,
            None,
            request.agent_id,
            request.persona,
            {**request.meta, "call": "extract", "attempt": attempt},
        )
        reply = await model.complete(call)
        tokens_in, tokens_out = tokens_in + reply.tokens_in, tokens_out + reply.tokens_out
        latency += reply.latency_s
        if reply.error is not None:
            reason = f"extraction call failed: {reply.error}"
            continue
        texts.append(reply.text)
        parsed = parse_guess(reply.text, obs.low, obs.high)
        if parsed.valid or (parsed.reason or "").startswith("out of range"):
            error = None if parsed.valid else f"parse: {parsed.reason}"
            raw = EXTRACT_SEPARATOR.join(texts)
            return Decision(
                parsed.value,
                parsed.valid,
                raw,
                prompt.prompt_id,
                tokens_in,
                tokens_out,
                latency * 1000,
                error,
                prompt=prompt.messages,
            )
        reason = parsed.reason or "unparseable"
    return Decision(
        None,
        False,
        EXTRACT_SEPARATOR.join(texts),
        prompt.prompt_id,
        tokens_in,
        tokens_out,
        latency * 1000,
        f"parse: extraction failed after {EXTRACT_TRIES} tries: {reason}",
        prompt=prompt.messages,
    )
