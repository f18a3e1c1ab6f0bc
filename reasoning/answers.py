"""Reading a model's reply to a multiple-choice question: which option it chose."""

from __future__ import annotations

import re
from difflib import SequenceMatcher

FUZZY_THRESHOLD = 0.6
"""Least difflib ratio between a reply and an option's text for the fuzzy fallback of :func:`parse_answer`."""

_WORD_CHAR = r"A-Za-z0-9"
_MARKER = r"(?:answer|option|choice)(?:\s*(?:is|:|=|-))*\s*(?:option\s*)?[(\[]?\s*"


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def _letter(text: str, keys: list[str]) -> str | None:
    """The option letter of ``text``: the last one after an answer marker, else one that opens the
    reply ("B. A scratch ..."), else the last standalone one. The article "A" ("A normal bottle",
    a capital A followed by a lower-case word) is not read as option A."""
    alternatives = "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))
    # Not next to a letter or digit, nor joined to one by a hyphen or apostrophe ("A-shaped", "B's").
    standalone = rf"(?<![{_WORD_CHAR}])(?<![{_WORD_CHAR}][-'’])({alternatives})(?![{_WORD_CHAR}]|[-'’][{_WORD_CHAR}])"
    marked = re.findall(rf"(?i:{_MARKER}){standalone}", text)
    if marked:
        return str(marked[-1])
    opening = re.match(rf"\s*[(\[]?\s*{standalone}(?!\s+[a-z])", text)
    if opening:
        return str(opening.group(1))
    found = [m.group(1) for m in re.finditer(standalone, text) if not _article(text, m)]
    return str(found[-1]) if found else None


def _article(text: str, match: re.Match[str]) -> bool:
    """An "A" followed by a space and a lower-case letter is the English article."""
    following = re.match(r"\s+([a-z]+)", text[match.end() :])
    return match.group(1) == "A" and following is not None and following.group(1) not in _AFTER_LETTER


_AFTER_LETTER = {"is", "was", "seems", "looks", "would", "should", "and", "or", "best", "correct", "fits"}


def _fuzzy(text: str, options: dict[str, str]) -> str | None:
    """The option whose text the reply contains (the longest such), else the most similar above the threshold."""
    reply = _normalise(text)
    if not reply:
        return None
    padded = f" {reply} "
    texts = {key: _normalise(value) for key, value in options.items()}
    contained = [key for key, value in texts.items() if value and f" {value} " in padded]
    if contained:
        longest = max(len(texts[k]) for k in contained)
        best = [k for k in contained if len(texts[k]) == longest]
        if len(best) == 1:
            return best[0]
    ratios = {key: SequenceMatcher(None, reply, value).ratio() for key, value in texts.items() if value}
    if not ratios:
        return None
    top = max(ratios.values())
    winners = [k for k, r in ratios.items() if r == top]
    return winners[0] if top >= FUZZY_THRESHOLD and len(winners) == 1 else None


def parse_answer(text: str, options: dict[str, str]) -> str | None:
    """The option key a reply chooses, or None when it cannot be told (scored as wrong).

    1. A letter: an option key standing alone (not inside a word or number, case-sensitive), e.g. "B",
       "Answer: B.", "(C)", "the answer is D"; not "Because", "B2", "A-shaped". One right after an answer marker
       ("answer", "option", "choice") wins, then one that opens the reply, else the last standalone one in the
       text; the article "A" ("A normal bottle") is not a letter.
    2. Otherwise the option text: the option whose (normalised) text appears as whole words in the reply
       (the longest one if several do), else the option with the highest difflib ratio to the whole reply if it
       reaches :data:`FUZZY_THRESHOLD` (0.6) and is unique.
    """
    if not text or not options:
        return None
    return _letter(text, list(options)) or _fuzzy(text, options)
