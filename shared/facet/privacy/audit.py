"""Privacy auditing with one training run (Steinke, Nasr and Jagielski, NeurIPS 2023): the statistics.

``m`` canaries are each included in training with probability 1/2, independently and in secret. After
training, an auditor who sees only the model guesses "in" for the ``k_in`` highest-scoring canaries and
"out" for the ``k_out`` lowest and abstains on the rest. If training is (epsilon, delta)-DP, the number of
correct guesses among ``r = k_in + k_out`` is at most Binomial(r, e^eps / (1 + e^eps)) plus a delta term
(their Theorem 3.1/5.2), so a count too high for that tail is evidence against epsilon: the largest
epsilon rejected at confidence ``1 - p`` is an empirical lower bound. It must never exceed the
accountant's figure; when it does, the accounting is wrong (or the bound's 5 % chance came up).

Guess counts are fixed before the scores are seen; several are tried with a Bonferroni correction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


def p_value(canaries: int, guesses: int, correct: int, epsilon: float, delta: float) -> float:
    """P[at least ``correct`` right of ``guesses``] under an (epsilon, delta)-DP algorithm."""
    if not 0 <= correct <= guesses <= canaries:
        raise ValueError("need 0 <= correct <= guesses <= canaries")
    q = 1 / (1 + math.exp(-epsilon))  # the accuracy of epsilon-DP randomized response
    tail = float(stats.binom.sf(correct - 1, guesses, q))
    # The delta term: alpha = max_i P[correct - i <= Binomial(r, q) < correct] / i, times 2 m delta.
    alpha = running = 0.0
    for shortfall in range(1, correct + 1):
        running += float(stats.binom.pmf(correct - shortfall, guesses, q))
        alpha = max(alpha, running / shortfall)
    return min(1.0, tail + alpha * delta * 2 * canaries)


def epsilon_lower_bound(canaries: int, guesses: int, correct: int, delta: float, p: float = 0.05) -> float:
    """The largest epsilon that ``correct`` of ``guesses`` rejects at significance ``p`` (0: none)."""
    if guesses == 0 or p_value(canaries, guesses, correct, 0.0, delta) >= p:
        return 0.0
    low, high = 0.0, 1.0
    while p_value(canaries, guesses, correct, high, delta) < p:
        low, high = high, 2 * high
        if high > 200:
            return low
    for _ in range(40):
        middle = (low + high) / 2
        if p_value(canaries, guesses, correct, middle, delta) < p:
            low = middle
        else:
            high = middle
    return low


@dataclass(frozen=True)
class AuditResult:
    epsilon_lower_bound: float
    canaries: int
    included: int
    guesses: int
    correct: int
    #: The share of guesses that were right at the chosen guess count.
    accuracy: float


def audit(scores: np.ndarray, included: np.ndarray, delta: float, *, guess_shares: Sequence[float] = (0.02, 0.05,
          0.1, 0.2), p: float = 0.05) -> AuditResult:
    """Guess the top and bottom ``share`` of canaries by ``scores`` (higher: more likely in), for each share
    (Bonferroni: each tested at p / len(shares)), and keep the highest bound."""
    if scores.shape != included.shape:
        raise ValueError("one score per canary")
    order = np.argsort(-scores, kind="stable")
    canaries = len(scores)
    best = AuditResult(0.0, canaries, int(included.sum()), 0, 0, 0.0)
    for share in guess_shares:
        each_side = max(1, int(share * canaries / 2))
        guessed_in, guessed_out = order[:each_side], order[-each_side:]
        correct = int(included[guessed_in].sum() + (~included[guessed_out]).sum())
        guesses = 2 * each_side
        bound = epsilon_lower_bound(canaries, guesses, correct, delta, p / len(guess_shares))
        if bound > best.epsilon_lower_bound or best.guesses == 0:
            best = AuditResult(bound, canaries, int(included.sum()), guesses, correct, correct / guesses)
    return best
