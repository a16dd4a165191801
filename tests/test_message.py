"""Tests for megasim.message.Message: frozen plain data with sensible defaults."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from megasim.message import Message


def test_defaults() -> None:
    message = Message(sender=3, content="hello")
    assert message.sender == 3
    assert message.content == "hello"
    assert message.receiver is None  # broadcast
    assert message.step == 0
    assert message.metadata == {}


def test_metadata_default_is_not_shared() -> None:
    a, b = Message(1, "a"), Message(2, "b")
    assert a.metadata is not b.metadata
    a.metadata["k"] = 1
    assert b.metadata == {}


def test_explicit_fields() -> None:
    message = Message(sender=1, content="hi", receiver=2, step=5, metadata={"lang": "en"})
    assert (message.receiver, message.step, message.metadata) == (2, 5, {"lang": "en"})


@pytest.mark.parametrize("field", ["sender", "content", "receiver", "step", "metadata"])
def test_frozen(field: str) -> None:
    message = Message(sender=1, content="hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(message, field, None)


def test_slotted() -> None:
    message = Message(sender=1, content="hi")
    assert not hasattr(message, "__dict__")


def test_equality_and_replace() -> None:
    message = Message(sender=1, content="hi", step=2)
    assert message == Message(sender=1, content="hi", step=2)
    assert message != Message(sender=1, content="hi", step=3)
    moved = dataclasses.replace(message, receiver=9)
    assert moved.receiver == 9
    assert message.receiver is None


def test_pickle_round_trip() -> None:
    """Shards ship messages between processes."""
    message = Message(sender=1, content="hi", receiver=4, step=2, metadata={"x": [1, 2]})
    assert pickle.loads(pickle.dumps(message)) == message
