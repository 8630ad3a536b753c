"""FSRS the way Anki users expect, with the ``fsrs`` package (no hand-made intervals): a user's scheduler (their
desired retention and parameters), fitting the parameters on their own reviews with ``fsrs``'s
:class:`~fsrs.Optimizer`, and the log-loss that compares two parameter sets on one history.

The log-loss is the one the optimiser minimises (``fsrs.optimizer``): each card's reviews are replayed in time
order (its first 64, as the optimiser's ``max_seq_len``) through a :class:`fsrs.Scheduler` with the parameters,
and every review a day or more after the card's previous one scores the binary cross-entropy of the predicted
retrievability against "recalled" (any rating but again). Same-day reviews (learning steps) are replayed but
not scored, as in ``fsrs``.

:func:`simulate_reviews` makes a seeded history of a student whose memory follows known parameters, reviewing
when a scheduler with other parameters says (``bench/study.py`` and the tests).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fsrs import Card, Rating, ReviewLog, Scheduler
from fsrs.scheduler import DEFAULT_PARAMETERS as _FSRS_DEFAULTS

DEFAULT_PARAMETERS: tuple[float, ...] = tuple(float(w) for w in _FSRS_DEFAULTS)
# fsrs.optimizer: "up to the first 64 reviews of each card are used for optimization" (max_seq_len).
OPTIMIZER_MAX_REVIEWS_PER_CARD = 64
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Review:
    """One review as the optimiser sees it: which card, the rating (1 again .. 4 easy), when (UTC)."""

    card: int
    rating: int
    at: datetime


def make_scheduler(parameters: Sequence[float] | None, retention: float | None) -> Scheduler:
    """The ``fsrs`` scheduler for a user: their parameters (None: FSRS's defaults) and desired retention (None:
    ``fsrs``'s own, for a replay that reads only how likely a card is recalled, which the desired retention
    does not change: it moves when a card is due); no fuzzing, so the same review gives the same interval."""
    weights = tuple(parameters) if parameters else DEFAULT_PARAMETERS
    if retention is None:
        return Scheduler(parameters=weights, enable_fuzzing=False)
    return Scheduler(parameters=weights, desired_retention=retention, enable_fuzzing=False)


def _by_card(reviews: Iterable[Review]) -> dict[int, list[Review]]:
    cards: dict[int, list[Review]] = {}
    for r in reviews:
        cards.setdefault(r.card, []).append(r)
    return {c: sorted(rs, key=lambda r: r.at)[:OPTIMIZER_MAX_REVIEWS_PER_CARD] for c, rs in sorted(cards.items())}


def counted_reviews(reviews: Iterable[Review]) -> int:
    """How many reviews the optimiser learns from: of each card's first 64, those a day (24 h) or more after the
    card's previous review (``fsrs``'s ``Optimizer`` counts them the same way, and returns the default
    parameters unchanged below its mini-batch of 512)."""
    n = 0
    for history in _by_card(reviews).values():
        n += sum((b.at - a.at).days > 0 for a, b in zip(history, history[1:], strict=False))
    return n


def log_loss(reviews: Iterable[Review], parameters: Sequence[float] | None = None) -> float | None:
    """The mean binary cross-entropy of FSRS's predicted recall with ``parameters`` (None: the defaults) on the
    counted reviews (see the module's docstring); None when no review counts."""
    scheduler = make_scheduler(parameters, None)
    total, n = 0.0, 0
    for card_id, history in _by_card(reviews).items():
        card = Card(card_id=card_id, due=history[0].at)
        for r in history:
            if card.last_review is not None and (r.at - card.last_review).days > 0:
                p = min(max(float(scheduler.get_card_retrievability(card, r.at)), 1e-7), 1 - 1e-7)
                total -= math.log(p) if r.rating > 1 else math.log(1 - p)
                n += 1
            card, _ = scheduler.review_card(card, Rating(r.rating), review_datetime=r.at)
    return total / n if n else None


def fit(reviews: Iterable[Review]) -> list[float]:
    """FSRS parameters fitted on ``reviews`` by ``fsrs``'s :class:`~fsrs.Optimizer` (torch; seeded, so the same
    history gives the same parameters)."""
    from fsrs import Optimizer

    logs: list[ReviewLog] = [ReviewLog(card_id=r.card, rating=Rating(r.rating), review_datetime=r.at,
                                       review_duration=None) for r in reviews]
    return [float(w) for w in Optimizer(logs).compute_optimal_parameters()]


def workload_factor(retention: float, parameters: Sequence[float] | None, *, base: float) -> float:
    """How many times as often a card comes back at ``retention`` as at ``base``: FSRS's interval is
    proportional to ``retention ** (1 / decay) - 1`` (``Scheduler._next_interval``)."""
    decay = -float((parameters or DEFAULT_PARAMETERS)[20])
    return (base ** (1 / decay) - 1) / (retention ** (1 / decay) - 1)


def simulate_reviews(true_parameters: Sequence[float], *, cards: int, days: int, seed: int,
                     start: datetime = datetime(2026, 1, 1, 9, 0, tzinfo=UTC),
                     app_parameters: Sequence[float] | None = None, retention: float) -> list[Review]:
    """A seeded review history of ``cards`` cards over ``days`` days, simulated with ``fsrs`` itself.

    The student's memory follows ``true_parameters``: at each review the chance of recalling the card is its
    retrievability under a scheduler with those parameters, fed the same ratings. The student reviews when the
    app's scheduler (``app_parameters``, default FSRS's, at ``retention``) says, a third of the time a few days
    late. A card is first seen on a random day in the first half of the period and rated again / hard / good /
    easy with chances 0.2 / 0.1 / 0.6 / 0.1; later, not recalled is again, recalled is hard / good / easy with
    chances 0.15 / 0.75 / 0.10."""
    rng = random.Random(seed)
    truth = make_scheduler(true_parameters, None)  # the student's memory: only its recall chances are read
    app = make_scheduler(app_parameters, retention)
    end = start + timedelta(days=days)
    out: list[Review] = []
    for card_id in range(1, cards + 1):
        t = start + timedelta(days=rng.randrange(max(days // 2, 1)), minutes=rng.randrange(12 * 60))
        memory = Card(card_id=card_id, due=t)
        scheduled = Card(card_id=card_id, due=t)
        while t < end:
            if memory.last_review is None:
                rating = rng.choices([1, 2, 3, 4], weights=[0.2, 0.1, 0.6, 0.1])[0]
            elif rng.random() >= float(truth.get_card_retrievability(memory, t)):
                rating = 1
            else:
                rating = rng.choices([2, 3, 4], weights=[0.15, 0.75, 0.10])[0]
            memory, _ = truth.review_card(memory, Rating(rating), review_datetime=t)
            scheduled, _ = app.review_card(scheduled, Rating(rating), review_datetime=t)
            out.append(Review(card_id, rating, t))
            nxt = scheduled.due
            interval = (nxt - t).days
            if interval >= 1 and rng.random() < 1 / 3:
                nxt += timedelta(days=rng.randint(1, max(1, interval // 2)))
            t = nxt
    return out
