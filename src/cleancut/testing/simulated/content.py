"""Plausible text for the agent to write, cheaply.

The agent writes as fast as it can, so text is sliced from one corpus built
at start-up from the seed rather than generated word by word per write.
"""

from __future__ import annotations

import random

_WORDS = (
    "agent memory session user tool call result reply message channel cron job run "
    "backup note today tomorrow meeting plan idea follow up remind check email calendar "
    "draft send summary project deadline review budget travel flight hotel weather "
    "family friend birthday gift recipe grocery list workout sleep read book article "
    "code deploy fix bug test release server log alert token refresh config approve "
    "the a an of to in on for with and or but so then later soon now again please "
    "thanks okay sure maybe always never often sometimes quickly carefully"
).split()


class Corpus:
    """A seeded block of words to slice text from."""

    def __init__(self, rng: random.Random, size: int = 1 << 18) -> None:
        words: list[str] = []
        total = 0
        while total < size:
            sentence = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 18)))
            line = sentence.capitalize() + "."
            words.append(line)
            total += len(line) + 1
        self.text = "\n".join(words)

    def take(self, rng: random.Random, n: int) -> str:
        """About `n` characters of text, cut at line boundaries."""
        n = min(n, len(self.text) - 1)
        start = rng.randrange(0, len(self.text) - n)
        start = self.text.find("\n", start) + 1
        end = self.text.find("\n", start + n)
        return self.text[start : end if end > 0 else len(self.text)]

    def sentence(self, rng: random.Random) -> str:
        return self.take(rng, 40).split("\n", 1)[0]
