"""Inter-class mixing for SynerMix (spec §3, paper Eq. 3): timm's Mixup, taking odd batches."""
from typing import Tuple

import torch
from timm.data.mixup import Mixup as TimmMixup, mixup_target

__all__ = ['Mixup']


class Mixup(TimmMixup):
    """timm's MixUp / CutMix for the augmented view of a supplemented batch (Eq. 3).

    Same arguments, random draws and output as `timm.data.Mixup` on even batches. Differences:
    odd batch sizes are accepted (supplementation often makes them odd: the middle sample of an
    odd batch is its own partner and stays unmixed), and the λ of the last call is kept in
    `self.lam` so Manifold MixUp and logging can reuse it. It is only ever called on the
    augmented images; the originals for the intra term never pass through it.

    Args:
        mixup_alpha: MixUp Beta(α, α) parameter, active if > 0.
        cutmix_alpha: CutMix Beta(α, α) parameter, active if > 0.
        cutmix_minmax: CutMix min/max box ratio (overrides cutmix_alpha).
        prob: Probability of mixing a batch or element.
        switch_prob: Probability of CutMix instead of MixUp when both are active.
        mode: 'batch', 'pair' or 'elem' (per-sample λ, the paper's setting).
        correct_lam: Correct λ for CutMix boxes clipped by the image border.
        label_smoothing: Smoothing applied inside the mixed targets (the paper uses 0).
        num_classes: Number of classes of the targets.

    Example:
        ```python
        mixup = Mixup(mixup_alpha=1.0, mode='elem', label_smoothing=0.0, num_classes=100)
        mixed, soft_target = mixup(augmented, target)   # len(augmented) may be odd
        ```
    """

    @staticmethod
    def pair_index(batch_size: int, device=None) -> torch.Tensor:
        """Partner of each sample: timm mixes sample i with sample N-1-i."""
        return torch.arange(batch_size - 1, -1, -1, device=device)

    def _mix_pair(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) % 2 == 0:
            return super()._mix_pair(x)
        # The middle sample of an odd batch has no partner: mix the even batch around it, whose
        # pairing (i <-> N-1-i) is the same as the full batch's for every other sample.
        middle = len(x) // 2
        around = torch.cat([x[:middle], x[middle + 1:]])
        lam = super()._mix_pair(around)
        x[:middle] = around[:middle]
        x[middle + 1:] = around[middle:]
        return torch.cat([lam[:middle], lam.new_ones(1, 1), lam[middle:]])

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.mode == 'elem':
            lam = self._mix_elem(x)
        elif self.mode == 'pair':
            lam = self._mix_pair(x)
        else:
            lam = self._mix_batch(x)
        self.lam = lam
        target = mixup_target(target, self.num_classes, lam, self.label_smoothing, self.multi_label)
        return x, target
