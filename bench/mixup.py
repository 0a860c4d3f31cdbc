"""Section `mixup`: timm_synermix.Mixup (elem mode vectorised) against timm's Mixup on the same draws."""
from typing import Callable

import numpy as np
import torch

from timm_synermix import Mixup

from .harness import Report, fmt_s, interleave, median, per_repeat, timed


def bench_mixup(report: Report, cfg: dict, device: torch.device) -> None:
    """timm_synermix.Mixup (vectorised elem mode) vs timm's Mixup, same draws, batch 256."""
    from timm.data import Mixup as TimmMixup
    kwargs = dict(mixup_alpha=1.0, cutmix_alpha=1.0, mode='elem', label_smoothing=0.0, num_classes=100)
    ours, theirs = Mixup(**kwargs), TimmMixup(**kwargs)
    x = torch.randn(256, 3, 64, 64, device=device)
    y = torch.randint(0, 100, (256,), device=device)

    def run(mixup) -> Callable[[], float]:
        def once() -> float:
            np.random.seed(0)
            batch = x.clone()
            return timed(lambda: mixup(batch, y), device)
        return once
    times = interleave({'ours': run(ours), 'timm': run(theirs)}, cfg['repeats'] * 2, cfg['warmup'])
    report.bench('mixup.elem_vectorised_vs_timm', per_repeat(times, 'timm', 'ours'),
                 f'timm Mixup(mode=elem, MixUp+CutMix) / ours, same numpy draws, batch 256 x 3x64x64 '
                 f'(speed-up; >1 is faster); median ours {fmt_s(median(times["ours"]))}', goal='>1')
