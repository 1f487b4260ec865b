"""Partners for "I don't know": each seed the model does not know is declined, paired
1:1 with a seed it does know, answered. The partner has the same question form where one
exists (the same two leading words, "who wrote", else the same first word, "who"), each
known seed is a partner at most once, and the choice depends only on the input's order,
so it is the same on every run."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable

from generator.probe.answers import fold
from generator.values import Knowledge


def form(prompt: str, words: int = 2) -> str:
    """A question's form: its first words, folded."""
    return " ".join(fold(prompt).split()[:words])


def knows(knowledge: Knowledge | None, threshold: float) -> bool:
    """The model knows it: its greedy answer is right and enough samples are."""
    return knowledge is not None and knowledge.greedy_correct and knowledge.p_correct >= threshold


def unknown(knowledge: Knowledge | None) -> bool:
    return knowledge is not None and knowledge.category == "Unknown"


def partners(
    seeds: Iterable[tuple[str, str, Knowledge | None]], threshold: float
) -> dict[str, str]:
    """{unknown seed id: known seed id} from (seed id, prompt, knowledge) in input order."""
    by_two: dict[str, deque[str]] = defaultdict(deque)
    by_one: dict[str, deque[str]] = defaultdict(deque)
    known_all: deque[str] = deque()
    lost: list[tuple[str, str]] = []
    for seed_id, prompt, knowledge in seeds:
        if knows(knowledge, threshold):
            by_two[form(prompt)].append(seed_id)
            by_one[form(prompt, 1)].append(seed_id)
            known_all.append(seed_id)
        elif unknown(knowledge):
            lost.append((seed_id, prompt))
    used: set[str] = set()
    out: dict[str, str] = {}

    def take(queue: deque[str]) -> str | None:
        while queue:
            candidate = queue.popleft()
            if candidate not in used:
                used.add(candidate)
                return candidate
        return None

    # the same two leading words for every seed first, then the same first word, then the
    # first known seed left, each pass in input order
    for queue_of in (lambda p: by_two[form(p)], lambda p: by_one[form(p, 1)], lambda p: known_all):
        for seed_id, prompt in lost:
            if seed_id not in out and (partner := take(queue_of(prompt))) is not None:
                out[seed_id] = partner
    return out
