"""Recurring themes in feedback texts, with plain term statistics (no model).

Texts are tokenised into lower-case words, stop words dropped, and each text counts once
per term (unigrams, and bigrams of neighbouring kept words): a theme is what many users
say, not what one user repeats. A term is a theme of the low ratings when its share among
the low-rated texts is well above its share among the others: the log-odds ratio with an
informative Dirichlet prior (Monroe, Colaresi and Quinn 2008, "Fightin' Words"), whose
z-score shrinks the rare terms that plain ratios would put on top.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

APOSTROPHES = "'\u2019"  # typed and typographic
WORD = re.compile(rf"[^\W\d_]+(?:[{APOSTROPHES}][^\W\d_]+)*")
LOW_RATING = 2  # ratings at or under this are "low"
MIN_TEXTS = 2  # a theme recurs: at least this many texts say it
MIN_Z = 1.645  # over-represented at the one-sided 5 % level
PRIOR_SCALE = 0.5  # the prior's weight, as a share of the corpus's own counts
PRIOR_FLOOR = 0.01  # every term gets a little prior mass

STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are aren't as at be because been
    before being below between both but by can can't cannot could couldn't did didn't do
    does doesn't doing don't down during each few for from further had hadn't has hasn't
    have haven't having he he'd he'll he's her here here's hers herself him himself his how
    how's i i'd i'll i'm i've if in into is isn't it it's its itself let's me more most
    mustn't my myself no nor not of off on once only or other ought our ours ourselves out
    over own same shan't she she'd she'll she's should shouldn't so some such than that
    that's the their theirs them themselves then there there's these they they'd they'll
    they're they've this those through to too under until up very was wasn't we we'd we'll
    we're we've were weren't what what's when when's where where's which while who who's
    whom why why's with won't would wouldn't you you'd you'll you're you've your yours
    yourself yourselves just also get got really still even much many one would like
    im dont cant wont ive thats its
    """.split()  # noqa: SIM905 (a list literal of 200 words is harder to read)
)


def tokens(text: str) -> list[str]:
    words = (match.group().lower().replace("\u2019", "'") for match in WORD.finditer(text))
    return [word for word in words if word not in STOP_WORDS and len(word) > 1]


def terms(text: str) -> set[str]:
    """The text's unigrams and bigrams, each once."""
    words = tokens(text)
    return set(words) | {f"{a} {b}" for a, b in itertools.pairwise(words)}


@dataclass(frozen=True)
class Theme:
    term: str
    z: float  # the log-odds ratio's z-score, low-rated texts against the others
    low_texts: int  # low-rated texts that contain the term
    texts: int  # all texts that contain it
    low_share: float  # of the low-rated texts, the share that contain it
    other_share: float  # of the other texts, the share that contain it


@dataclass(frozen=True)
class Themes:
    low_texts: int
    other_texts: int
    low: list[Theme]  # over-represented in the low ratings, strongest first
    frequent: list[tuple[str, int]]  # the most frequent terms overall, with their texts


def document_counts(texts: Iterable[str]) -> tuple[Counter[str], int]:
    counts: Counter[str] = Counter()
    total = 0
    for text in texts:
        counts.update(terms(text))
        total += 1
    return counts, total


def themes(rated: Sequence[tuple[int, str]], *, top: int = 10) -> Themes:
    """Themes of `(rating, text)` pairs: terms over-represented in low ratings, and the
    most frequent terms overall."""
    low_counts, low_n = document_counts(text for rating, text in rated if rating <= LOW_RATING)
    other_counts, other_n = document_counts(text for rating, text in rated if rating > LOW_RATING)
    every = low_counts + other_counts
    found = [
        theme
        for term, count in low_counts.items()
        if count >= MIN_TEXTS
        and (theme := _theme(term, low_counts, low_n, other_counts, other_n, every)).z >= MIN_Z
    ]
    found.sort(key=lambda theme: (-theme.z, theme.term))
    frequent = sorted(
        ((term, count) for term, count in every.items() if count >= MIN_TEXTS),
        key=lambda item: (-item[1], item[0]),
    )
    return Themes(low_n, other_n, _without_parts(found)[:top], frequent[:top])


def _theme(  # noqa: PLR0917 (two counts and two sizes, then the pooled counts)
    term: str,
    low: Counter[str],
    low_n: int,
    other: Counter[str],
    other_n: int,
    every: Counter[str],
) -> Theme:
    # Each text is a trial for each term (document frequencies): the prior is the pooled
    # share, weighted as PRIOR_SCALE of the corpus.
    pooled = every[term] / max(1, low_n + other_n)
    prior_n = PRIOR_SCALE * (low_n + other_n)
    alpha = PRIOR_FLOOR + prior_n * pooled
    beta = PRIOR_FLOOR + prior_n * (1 - pooled)
    y_low, y_other = low[term], other[term]
    log_odds_low = math.log((y_low + alpha) / (low_n - y_low + beta))
    log_odds_other = math.log((y_other + alpha) / (other_n - y_other + beta))
    variance = (
        1 / (y_low + alpha)
        + 1 / (low_n - y_low + beta)
        + 1 / (y_other + alpha)
        + 1 / (other_n - y_other + beta)
    )
    return Theme(
        term=term,
        z=(log_odds_low - log_odds_other) / math.sqrt(variance),
        low_texts=y_low,
        texts=every[term],
        low_share=y_low / max(1, low_n),
        other_share=y_other / max(1, other_n),
    )


def _without_parts(found: list[Theme]) -> list[Theme]:
    """A word whose texts are all those of a bigram containing it says nothing more."""
    bigrams = [theme for theme in found if " " in theme.term]
    return [
        theme
        for theme in found
        if " " in theme.term
        or not any(
            theme.term in bigram.term.split()
            and bigram.low_texts == theme.low_texts
            and bigram.texts == theme.texts
            for bigram in bigrams
        )
    ]
