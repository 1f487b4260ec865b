"""The words of the seed corpus, in fixed memory, to prove a fabricated name is new.

A Bloom filter over lower-cased word forms: it can say "maybe seen" for a word that
was not (then the generator simply draws another name) but never "unseen" for a word
that was, so a fabricated entity never collides with the corpus. Memory is fixed
(2 MiB), whatever the number of seeds. Hashes are CRC-32 based, so the same corpus gives
the same filter, and the same names, on every run.

The same filter also remembers which words the corpus writes in lower case in running
text (`common`): "Board Games" or "Deep Learning" are common words in title case, while
"Kant" or "Feng Shui" never appear in lower case. A false "maybe" here only makes the
refusal generator pass over a name, never fabricate over a common word.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
# A word in lower case in prose: not inside a URL, an address, a hashtag or an identifier
# ("www.paris.fr", "@kant", "my_var" say nothing about how a name is written).
_LOWER = re.compile(r"(?<![\w@#/.\-])[a-z]+(?:['’][a-z]+)*(?![\w@/\-]|\.\w)")
_COMMON = "\x00"  # key prefix of the lower-case words, apart from the plain ones
_BITS = 1 << 24
_HASHES = 4


def words(text: str) -> set[str]:
    """The distinct lower-cased words of a text."""
    return {w.lower() for w in _WORD.findall(text)}


class CorpusWords:
    """Approximate membership of words in the corpus (no false 'unseen')."""

    def __init__(self) -> None:
        self._bits = bytearray(_BITS // 8)

    def _positions(self, word: str) -> Iterable[int]:
        data = word.encode("utf-8")
        h1 = zlib.crc32(data)
        h2 = zlib.crc32(data, 0x9E3779B9) | 1
        return ((h1 + i * h2) % _BITS for i in range(_HASHES))

    def add_text(self, text: str) -> None:
        bits = self._bits
        keys = words(text) | {_COMMON + w for w in _LOWER.findall(text)}
        for key in keys:
            for pos in self._positions(key):
                bits[pos >> 3] |= 1 << (pos & 7)

    def _has(self, key: str) -> bool:
        bits = self._bits
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self._positions(key))

    def __contains__(self, word: str) -> bool:
        return self._has(word.lower())

    def common(self, word: str) -> bool:
        """True when the corpus (maybe) writes `word` in lower case in running text."""
        return self._has(_COMMON + word.lower())
