"""How the experiments score runs and compare scores: one rule per comparison, stated, and differences with their
interval.

A comparison scores every run alike: the mean eval top-1 of its last k epochs (train.py `--report-last-k k`, set by
the plan), on one validation set whose size bounds what can be told apart (one image = 100 / N points). Two methods
are compared per seed (the seeds pair their data order and initialisation), and a difference is reported with the
95% t-interval of its per-seed values; when that interval holds zero, or the difference is within one validation
image, or the better side is at the ceiling, the verdict is that the comparison cannot separate them.
"""
import math
from dataclasses import dataclass
from typing import Dict, Iterable, Optional

import numpy as np

__all__ = ['Score', 'Difference', 'mean_std', 'fmt', 'paired_difference', 't95']

# Two-sided 95% quantiles of Student's t by degrees of freedom (the usual table); past 30 the normal's 1.96 is
# within 2% of t.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t95(dof: int) -> float:
    return _T95[dof - 1] if dof <= len(_T95) else 1.96


def mean_std(values: Iterable) -> tuple:
    """(mean, sample std) of the finite values; NaN where there are too few."""
    values = np.asarray([float(v) for v in values if v is not None and not math.isnan(float(v))], dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else math.nan


def fmt(values: Iterable, digits: int = 2, unit: str = '') -> str:
    """'mean ± std' of the values ('mean' for one, '–' for none)."""
    mean, std = mean_std(values)
    if math.isnan(mean):
        return '–'
    if math.isnan(std):
        return f'{mean:.{digits}f}{unit}'
    return f'{mean:.{digits}f} ± {std:.{digits}f}{unit}'


@dataclass(frozen=True)
class Score:
    """The rule every run of one comparison is scored by.

    Args:
        last_k: Epochs at the end of a run whose eval top-1 is averaged.
        val_images: Images of the validation set (None where not known).
        split: Name of the validation split, for the text.
    """
    last_k: int
    val_images: Optional[int] = None
    split: str = 'the validation split'

    @property
    def resolution(self) -> float:
        """Points of top-1 that one validation image is worth (NaN when the size is unknown)."""
        return 100.0 / self.val_images if self.val_images else math.nan

    def describe(self) -> str:
        size = '' if not self.val_images else \
            f' ({self.val_images} images: one image = {self.resolution:.2f} points)'
        return f'mean top-1 of the last {self.last_k} epochs on {self.split}{size}'


@dataclass(frozen=True)
class Difference:
    """a − b paired by seed: mean, sample std and the half-width of the 95% t-interval over the n seeds."""
    mean: float
    std: float
    n: int

    @property
    def half_width(self) -> float:
        return t95(self.n - 1) * self.std / math.sqrt(self.n) if self.n > 1 else math.nan

    def text(self, digits: int = 2) -> str:
        """'+1.23 ± 0.45 [−0.10, +2.56]': mean ± std over seeds, then the 95% interval."""
        if self.n == 0:
            return '–'
        if self.n == 1:
            return f'{self.mean:+.{digits}f} (one seed)'
        low, high = self.mean - self.half_width, self.mean + self.half_width
        return f'{self.mean:+.{digits}f} ± {self.std:.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]'

    def verdict(self, score: Score, ceiling: Optional[float] = None) -> str:
        """'above', 'below' or why the comparison cannot separate the two (`ceiling`: the b side's top-1, which
        cannot be beaten by more than 100 − ceiling points)."""
        if self.n < 2:
            return 'cannot separate: one seed, no interval'
        if ceiling is not None and ceiling >= 100.0 - (score.resolution if score.val_images else 0.0):
            return 'cannot separate: the frontier is at 100%'
        if self.mean - self.half_width <= 0 <= self.mean + self.half_width:
            return 'cannot separate: the 95% interval holds 0'
        if abs(self.mean) < score.resolution:
            return f'cannot separate: within one validation image ({score.resolution:.2f} points)'
        return 'above' if self.mean > 0 else 'below'


def paired_difference(a: Dict, b: Dict) -> Difference:
    """a − b over the seeds both have ({seed: value} each)."""
    seeds = sorted(set(a) & set(b))
    diff = np.array([a[s] - b[s] for s in seeds], dtype=np.float64)
    if not seeds:
        return Difference(math.nan, math.nan, 0)
    return Difference(float(diff.mean()), float(diff.std(ddof=1)) if len(seeds) > 1 else math.nan, len(seeds))
