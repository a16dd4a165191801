"""Near-duplicate detection: word 3-gram Jaccard >= 0.8 through MinHash LSH."""

from __future__ import annotations

import random
import time

from megasim.population.backgrounds_dedup import (
    NearDuplicateIndex,
    jaccard,
    normalise,
    shingles,
)

WORDS = [
    a + b
    for a in ("ka", "lo", "mi", "su", "te", "ra")
    for b in ("ne", "po", "ri", "va", "zu", "do")
]
"""36 made-up words: stories drawn from them have no pronouns, ages or real occupations."""


def story(rng: random.Random, words: int = 40) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def test_normalise_drops_case_and_punctuation() -> None:
    assert normalise("Mia, 49, LOVES art!  (Really.)") == ["mia", "49", "loves", "art", "really"]
    assert shingles("Mia loves art.").size == 1
    assert shingles("Mia loves art a lot").size == 3
    assert shingles("...").size == 0


def test_jaccard_is_exact() -> None:
    a = shingles("one two three four five six")  # 4 shingles
    b = shingles("one two three four five seven")  # shares 3 of them
    assert jaccard(a, b) == 3 / 5
    assert jaccard(a, a) == 1.0
    assert jaccard(a, shingles("")) == 0.0


def test_identical_and_lightly_edited_stories_are_duplicates() -> None:
    rng = random.Random(1)
    base = story(rng, 60)
    index = NearDuplicateIndex()
    assert index.add_unless_duplicate(base, 7) is None
    assert index.find(base.upper().replace(" ", " , ")) == (7, 1.0)  # case, punctuation
    edited = base.split()
    edited[-1] = "zebra."  # one word changed at the end: 57 of 58 shingles kept
    hit = index.find(" ".join(edited))
    assert hit is not None
    assert hit[0] == 7
    assert hit[1] >= 0.8
    assert index.add_unless_duplicate(" ".join(edited), 8) == hit
    assert len(index) == 1  # the duplicate was not added


def test_different_stories_are_not_duplicates() -> None:
    rng = random.Random(2)
    index = NearDuplicateIndex()
    for key in range(200):
        assert index.add_unless_duplicate(story(rng), key) is None
    assert len(index) == 200


def test_below_threshold_is_not_a_duplicate() -> None:
    rng = random.Random(3)
    base = story(rng, 40).split()
    other = base[:20] + story(rng, 20).split()  # about half the shingles shared
    index = NearDuplicateIndex()
    index.add(" ".join(base), 1)
    assert jaccard(shingles(" ".join(base)), shingles(" ".join(other))) < 0.8
    assert index.find(" ".join(other)) is None


def test_recall_at_high_similarity() -> None:
    """Every story with one changed word (J ~ 0.9) is found among many accepted ones."""
    rng = random.Random(4)
    index = NearDuplicateIndex()
    stories = [story(rng, 50) for _ in range(300)]
    for key, text in enumerate(stories):
        index.add(text, key)
    for key, text in enumerate(stories):
        words = text.split()
        words[25] = "xylophone"
        hit = index.find(" ".join(words))
        assert hit is not None
        assert hit[0] == key


def test_scales_without_pairwise_comparisons() -> None:
    rng = random.Random(5)
    index = NearDuplicateIndex()
    texts = [story(rng) for _ in range(5000)]
    started = time.perf_counter()
    for key, text in enumerate(texts):
        assert index.add_unless_duplicate(text, key) is None
    elapsed = time.perf_counter() - started
    assert elapsed < 10  # ~1 ms per story on 2 cores; O(n²) would take minutes at 100k
