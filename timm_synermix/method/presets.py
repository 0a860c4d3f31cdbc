"""The paper's compared methods (docs/method.md §1, paper §4.1.2): what each one is, and the task it trains.

Everything the project knows about a method lives in its `Preset`: the paper's name and equation,
whether it adds the intra term (and so needs supplemented batches and, for SynerMix proper, the
unaugmented originals), its inter-class component, the default β and the β grid of the paper's
protocol. `create_synermix_task` builds the `SynerMixTask` of a preset.

Two presets are controls of this project, not methods of the paper (`Preset.paper` is False):
`clean-view` and `clean-view-mixup` train `β·CE(originals) + (1-β)·L_inter` on the same supplemented batches
and at the same cost as SynerMix-Intra and SynerMix. With a linear head, L_intra is the cross-entropy of a
convex combination of one class's clean logits (docs/method.md §6), so these tell what the intra term buys
beyond training on the clean images at all.
"""
import difflib
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

import torch.nn as nn

from .inter import ManifoldMixup, Mixup
from .task import SynerMixTask

__all__ = ['Preset', 'PRESETS', 'METHODS', 'get_preset', 'find_preset', 'create_synermix_task']

# The paper's β grids (§4.1): w-RA (the intra term alone) and w-RA&ER (intra + an inter-class mixup).
INTRA_BETAS = (0.2, 0.4, 0.5, 0.7)
SYNERMIX_BETAS = (0.05, 0.1, 0.2, 0.4)
# The paper's mixup alpha for MixUp and Manifold MixUp.
PAPER_MIXUP_ALPHA = 1.0


@dataclass(frozen=True)
class Preset:
    """One of the paper's methods.

    Args:
        name: Preset name, e.g. 'synermix'.
        paper_name: The paper's label, e.g. 'w-RA&ER(M)'.
        equation: The paper's loss, e.g. 'Eq. 5'.
        intra: Adds β·L_intra (supplemented batches: every class in a batch has two images).
        source: Features the intra term mixes: 'original' (SynerMix) or 'augmented' (w-RA(aug)).
        inter: Inter-class component: None, 'mixup' (MixUp/CutMix) or 'manifold' (Manifold MixUp).
        default_beta: β when none is given (0 without the intra term).
        beta_grid: β values of the paper's holdout protocol (empty without the intra term).
        at_beta_zero: The preset this one equals at β = 0.
        intra_mode: What the intra term trains on: 'synthesize' (Eq. 1-2) or 'clean' (each clean feature
            alone: the clean-view control, not in the paper).
    """
    name: str
    paper_name: str
    equation: str
    intra: bool
    source: str
    inter: Optional[str]
    default_beta: float
    beta_grid: Tuple[float, ...]
    at_beta_zero: str
    intra_mode: str = 'synthesize'

    @property
    def supplemented(self) -> bool:
        return self.intra

    @property
    def passes(self) -> int:
        """Forward+backward passes per batch image: the intra term on the unaugmented view (SynerMix, the clean-view
        controls) takes the originals through the model a second time (docs/method.md §5)."""
        return 2 if self.intra and self.source == 'original' else 1

    @property
    def paper(self) -> bool:
        """Whether the paper compares this method (the clean-view controls are this project's)."""
        return self.intra_mode == 'synthesize'


PRESETS: Dict[str, Preset] = {p.name: p for p in (
    Preset('baseline', 'wo-RA&ER', 'Eq. 6', False, 'original', None, 0.0, (), 'baseline'),
    Preset('mixup', 'w-ER(M)', 'Eq. 3', False, 'original', 'mixup', 0.0, (), 'mixup'),
    Preset('manifold-mixup', 'w-ER(MM)', 'Eq. 4', False, 'original', 'manifold', 0.0, (), 'manifold-mixup'),
    Preset('synermix-intra', 'w-RA', 'Eq. 8', True, 'original', None, 0.5, INTRA_BETAS, 'baseline'),
    Preset('synermix-intra-aug', 'w-RA(aug)', 'Eq. 7', True, 'augmented', None, 0.5, INTRA_BETAS, 'baseline'),
    Preset('synermix', 'w-RA&ER(M)', 'Eq. 5', True, 'original', 'mixup', 0.1, SYNERMIX_BETAS, 'mixup'),
    Preset('synermix-manifold', 'w-RA&ER(MM)', 'Eq. 5', True, 'original', 'manifold', 0.1, SYNERMIX_BETAS,
           'manifold-mixup'),
    Preset('clean-view', 'control: CE(originals)', 'docs/method.md §6', True, 'original', None, 0.5, INTRA_BETAS,
           'baseline', intra_mode='clean'),
    Preset('clean-view-mixup', 'control: CE(originals) + MixUp', 'docs/method.md §6', True, 'original', 'mixup',
           0.1, SYNERMIX_BETAS, 'mixup', intra_mode='clean'),
)}
METHODS = PRESETS


def get_preset(name: str) -> Preset:
    """The preset called `name`; an unknown name raises ValueError naming the closest valid one."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, list(PRESETS), n=1)
        hint = f' Did you mean "{close[0]}"?' if close else ''
        raise ValueError(f'Unknown method "{name}".{hint} Valid methods: {", ".join(PRESETS)}.')
    return PRESETS[name]


def find_preset(intra: bool, source: str = 'original', inter: Optional[str] = None,
                intra_mode: str = 'synthesize') -> Preset:
    """The preset made of these components (e.g. intra=True, inter='mixup' -> 'synermix')."""
    for preset in PRESETS.values():
        if preset.intra == intra and preset.inter == inter and (preset.source == source or not intra) and \
                (preset.intra_mode == intra_mode or not intra):
            return preset
    raise ValueError(
        f'No method mixes {source} features with inter={inter!r}: mixup already mixes the augmented view, so '
        'use source="original" with an inter-class mixup, or drop the mixup for the w-RA(aug) ablation.')


def create_synermix_task(
        model: nn.Module,
        method: Union[str, Preset] = 'synermix',
        beta: Optional[float] = None,
        num_classes: Optional[int] = None,
        mixup_alpha: float = PAPER_MIXUP_ALPHA,
        cutmix_alpha: float = 0.0,
        cutmix_minmax: Optional[Sequence[float]] = None,
        mixup_prob: float = 1.0,
        switch_prob: float = 0.5,
        mixup_mode: str = 'batch',
        label_smoothing: float = 0.1,
        manifold_layers: Optional[Sequence[str]] = None,
        **task_kwargs,
) -> SynerMixTask:
    """`SynerMixTask` of a paper method: its intra term, source, inter-class mixing and default β (Eq. 3-8).

    Args:
        model: timm model.
        method: A `Preset`, or its name (`PRESETS`).
        beta: β; the preset's default when None. Must be 0 (or None) for presets without the intra term.
        num_classes: Classes of the targets; defaults to `model.num_classes`.
        mixup_alpha, cutmix_alpha, cutmix_minmax, mixup_prob, switch_prob, mixup_mode: The inter-class
            mixing, as timm's Mixup (CutMix only for 'mixup' presets; Manifold MixUp mixes with MixUp's λ).
        label_smoothing: Smoothing of the inter term's targets (inside the mixed targets with a mixup).
        manifold_layers: Manifold MixUp's layer set S (default: the paper's for ResNet, MobileNetV3, Swin).
        **task_kwargs: Further `SynerMixTask` arguments (num_per_class, intra_every, device, ...).

    Example:
        ```python
        task = create_synermix_task(timm.create_model('resnet18', num_classes=100), 'synermix', beta=0.1)
        ```
    """
    preset = method if isinstance(method, Preset) else get_preset(method)
    method = preset.name
    if beta is None:
        beta = preset.default_beta
    elif beta and not preset.intra:
        raise ValueError(f'beta={beta} but method "{method}" has no intra term: use beta=0, or a synermix method.')
    num_classes = num_classes if num_classes is not None else getattr(model, 'num_classes', 1000)
    mix_kwargs = dict(mixup_alpha=mixup_alpha, prob=mixup_prob, mode=mixup_mode, label_smoothing=label_smoothing,
                      num_classes=num_classes)
    mixup = None
    if preset.inter == 'manifold':
        if cutmix_alpha > 0 or cutmix_minmax is not None:
            raise ValueError(f'method "{method}" mixes hidden states, where CutMix boxes have no meaning: '
                             'use cutmix_alpha=0.')
        mixup = ManifoldMixup(model, layers=manifold_layers, **mix_kwargs)
    elif preset.inter == 'mixup':
        mixup = Mixup(cutmix_alpha=cutmix_alpha, cutmix_minmax=cutmix_minmax, switch_prob=switch_prob, **mix_kwargs)
    elif task_kwargs.get('criterion') is None and task_kwargs.get('criterion_kwargs') is None:
        task_kwargs['criterion_kwargs'] = dict(smoothing=label_smoothing)
    return SynerMixTask(model, beta=beta, mixup=mixup, source=preset.source, intra_mode=preset.intra_mode,
                        **task_kwargs)
