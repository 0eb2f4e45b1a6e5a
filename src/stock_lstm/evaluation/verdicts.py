"""One rule for the words "better", "worse" and "no difference": a test decides, never a ratio.

Why: a report once showed "0.994 better" in green (a fixed 0.5% threshold) beside a
Diebold-Mariano p of 0.255, and two notebooks said "beats" and "does NOT beat" of the same
numbers. Every report, the index, the CLI and ``evaluate`` now call :func:`verdict`: the
direction comes from the ratio, but only a p-value below :data:`SIGNIFICANCE_LEVEL` turns it
into "better" or "worse"; anything else (a p-value above it, or no test at all) is "no
difference beyond chance", and the p-value is always shown beside the word.

The tests themselves are the field's: Diebold-Mariano (``significance.diebold_mariano``)
for point errors on the same origins, Wilcoxon's signed-rank test (scipy) for paired
interval scores across tickers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

#: The p-value below which a difference is called a difference.
SIGNIFICANCE_LEVEL = 0.05

Word = Literal["better", "worse", "no difference"]


@dataclass(frozen=True)
class Verdict:
    """The comparison of a score (lower is better) with a reference, as a test reads it."""

    word: Word
    ratio: float | None
    p_value: float | None
    test: str

    @property
    def css(self) -> str:
        """The class reports colour it with: ``better``, ``worse`` or ``same``."""
        return "same" if self.word == "no difference" else self.word

    @property
    def tested(self) -> bool:
        return self.p_value is not None

    def p_text(self) -> str:
        """``p = 0.012`` (or ``not tested``)."""
        if self.p_value is None:
            return "not tested"
        if self.p_value < 0.001:
            return f"p = {self.p_value:.2g}"
        # Enough decimals that the shown value sits on the same side of the level as the
        # value itself: p = 0.0496 is not shown as "0.050" beside the word "better".
        for digits in range(3, 7):
            text = f"{self.p_value:.{digits}f}"
            if (float(text) < SIGNIFICANCE_LEVEL) == (self.p_value < SIGNIFICANCE_LEVEL):
                break
        return f"p = {text}"

    def short(self) -> str:
        """``better (p = 0.012)``, ``no difference (p = 0.255)``: for table cells."""
        return f"{self.word} ({self.p_text()})"

    def phrase(self, reference: str) -> str:
        """A sentence part: ``better than persistence (Diebold-Mariano p = 0.012)``."""
        test = f"{self.test} {self.p_text()}" if self.p_value is not None else "not tested"
        if self.word == "no difference":
            return f"no different from {reference} beyond chance ({test})"
        return f"{self.word} than {reference} ({test})"


def verdict(ratio: float | None, p_value: float | None, *, test: str) -> Verdict:
    """``ratio`` = score / reference score (below 1: lower, which is better), ``p_value`` of
    the test of that difference; see the module doc."""
    ratio = ratio if ratio is not None and math.isfinite(ratio) else None
    p_value = p_value if p_value is not None and math.isfinite(p_value) else None
    if ratio is None or p_value is None or p_value >= SIGNIFICANCE_LEVEL or ratio == 1:
        return Verdict("no difference", ratio, p_value, test)
    return Verdict("better" if ratio < 1 else "worse", ratio, p_value, test)


def point_verdict(rmae: float | None, dm_p_value: float | None) -> Verdict:
    """The model's point errors against persistence's on the same origins."""
    return verdict(rmae, dm_p_value, test="Diebold-Mariano")


def paired_verdict(first: list[float], second: list[float]) -> Verdict:
    """Mean of ``first`` against mean of ``second``, paired (one pair per ticker), by
    Wilcoxon's signed-rank test."""
    from scipy.stats import wilcoxon

    pairs = [(a, b) for a, b in zip(first, second, strict=True) if math.isfinite(a + b)]
    if len(pairs) < 2 or all(a == b for a, b in pairs):
        return Verdict("no difference", None, None, "Wilcoxon signed-rank")
    mean_first = sum(a for a, _ in pairs) / len(pairs)
    mean_second = sum(b for _, b in pairs) / len(pairs)
    p_value = float(wilcoxon([a for a, _ in pairs], [b for _, b in pairs]).pvalue)
    ratio = mean_first / mean_second if mean_second else None
    return verdict(ratio, p_value, test="Wilcoxon signed-rank")


__all__ = [
    "SIGNIFICANCE_LEVEL",
    "Verdict",
    "paired_verdict",
    "point_verdict",
    "verdict",
]
