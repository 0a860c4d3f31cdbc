"""SynerMixTask: timm training task with the SynerMix loss (docs/method.md §5, paper Eq. 5)."""
import contextlib
import inspect
from typing import Any, Callable, Dict, List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import SplitBatchNorm2d
from timm.task import ClassificationTask
from timm.utils.model import unwrap_model

from .inter import LogitDistillation, ManifoldMixup, Mixup
from .intra import first_occurrences, synthesize_all_classes
from .views import TwoViews

__all__ = ['SynerMixTask', 'SynerMixTrainableModule']

SOURCES = ('original', 'augmented')
JOINT_PASS = ('auto', 'never', 'shared-bn')
# What the intra term trains on: features synthesized per class (Eq. 1), or each clean feature alone (the
# clean-view control of docs/method.md §6, not a method of the paper).
INTRA_MODES = ('synthesize', 'clean')


@contextlib.contextmanager
def _frozen_running_stats(model: nn.Module):
    """BatchNorm normalises with the batch's statistics but leaves its running statistics untouched."""
    norms = [m for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.training]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


@contextlib.contextmanager
def _main_split_norms(model: nn.Module):
    """SplitBatchNorm2d normalises the whole batch with its main BatchNorm: the originals are the clean split."""
    norms = [(m, m.num_splits, m.aux_bn) for m in model.modules() if isinstance(m, SplitBatchNorm2d)]
    for m, _, _ in norms:
        m.num_splits, m.aux_bn = 1, nn.ModuleList()
    try:
        yield
    finally:
        for m, num_splits, aux_bn in norms:
            m.num_splits, m.aux_bn = num_splits, aux_bn


def batch_dependent_layers(model: nn.Module) -> List[str]:
    """Names of the layers whose training output depends on the rest of the batch (BatchNorm in train mode)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]


def _check_arguments(model, *, beta, mixup, source, num_per_class, intra_every, original_scale, joint_pass,
                     aug_splits, distillation, intra_mode) -> None:
    """Raise ValueError naming the first SynerMixTask argument that cannot work, and the fix."""
    if intra_mode not in INTRA_MODES:
        raise ValueError(f'intra_mode="{intra_mode}" is not one of {INTRA_MODES}.')
    if not 0.0 <= beta <= 1.0:
        raise ValueError(
            f'beta={beta} is outside [0, 1]: β weighs L_intra against L_inter, '
            'e.g. 0.1 for SynerMix, 0.5 for SynerMix-Intra alone.')
    if source not in SOURCES:
        raise ValueError(f'source="{source}" is not one of {SOURCES}.')
    if source == 'augmented' and mixup is not None and beta > 0:
        raise ValueError(
            'source="augmented" mixes features of the augmented view, which mixup would already have mixed: '
            'use source="original" with mixup, or no mixup for the w-RA(aug) ablation.')
    if num_per_class < 1:
        raise ValueError(f'num_per_class={num_per_class}: need at least 1.')
    if intra_every < 1:
        raise ValueError(f'intra_every={intra_every}: need an interval of at least 1 step.')
    if beta == 1.0 and intra_every > 1:
        raise ValueError(
            'beta=1 with intra_every > 1 would train on a zero loss between intra steps: '
            'lower beta or use intra_every=1.')
    if not 0.0 < original_scale <= 1.0:
        raise ValueError(f'original_scale={original_scale} must be in (0, 1].')
    if joint_pass not in JOINT_PASS:
        raise ValueError(f'joint_pass="{joint_pass}" is not one of {JOINT_PASS}.')
    if joint_pass == 'shared-bn' and (isinstance(mixup, ManifoldMixup) or original_scale != 1.0):
        raise ValueError('joint_pass="shared-bn" needs both views at one size in one forward: not with '
                         'ManifoldMixup (its hooks mix one view) or original_scale != 1.')
    if aug_splits == 1 or aug_splits < 0:
        raise ValueError(f'aug_splits={aug_splits}: use 0 (off) or 2 or more splits.')
    if aug_splits > 1 and mixup is not None:
        raise ValueError(f'aug_splits={aug_splits} with a mixup: the mix would pair images across AugMix splits '
                         '(timm mixes neither); drop one of them.')
    if aug_splits > 1 and source == 'augmented' and beta > 0:
        raise ValueError(f'aug_splits={aug_splits} with source="augmented": the w-RA(aug) ablation mixes one '
                         'augmented view; use source="original".')
    if distillation is not None and isinstance(mixup, ManifoldMixup):
        raise ValueError('distillation with ManifoldMixup: the student mixes hidden states the teacher never '
                         'sees; use Mixup or no mixup.')
    if mixup is not None and not isinstance(mixup, (Mixup, ManifoldMixup)):
        raise TypeError(
            f'mixup is a {type(mixup).__name__}: pass timm_synermix.Mixup (odd batches, originals unmixed) '
            'or timm_synermix.ManifoldMixup.')
    forward_head = getattr(model, 'forward_head', None)
    if forward_head is None or 'pre_logits' not in inspect.signature(forward_head).parameters:
        raise ValueError(
            f'{type(model).__name__} has no forward_head(x, pre_logits=True): SynerMix needs the features '
            'fed to the classifier. Use a timm model, or add forward_features/forward_head(pre_logits)/get_classifier.')
    if original_scale != 1.0 and getattr(getattr(model, 'patch_embed', None), 'strict_img_size', False):
        raise ValueError(
            f'{type(model).__name__} only accepts its configured input size, so original_scale must be 1.0: '
            'use intra_every to save time, or create the model with dynamic_img_size=True.')


class SynerMixTrainableModule(nn.Module):
    """The task's `trainable_module`: both training passes in one `forward`.

    DistributedDataParallel, `no_sync` and EMA wrap this module, as for timm's own tasks, so DDP
    sees one forward per backward. The augmented pass runs first (a pending Manifold MixUp hook
    belongs to it), then the originals' pass, in train mode with its own BatchNorm batch
    statistics (spec: two passes, two sets of batch statistics). With `joint=True` both views go
    through one forward of 2N instead: the same result where no layer depends on the batch. Its
    parameters are the model's.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward(
            self,
            augmented: torch.Tensor,
            original: Optional[torch.Tensor] = None,
            target: Optional[torch.Tensor] = None,
            *,
            with_intra: bool = False,
            num_per_class: int = 1,
            freeze_original_stats: bool = False,
            joint: bool = False,
            clean: bool = False,
    ):
        """(augmented logits, intra logits, their labels, their weight mask); None x 3 without intra.

        The intra rows are one synthesized feature per class present (Eq. 1), or with `clean=True` each image's
        own clean feature (the clean-view control); an image present twice counts once either way."""
        classifier = self.model.get_classifier()
        if with_intra and original is not None and joint:
            features = self.pre_logits(torch.cat([augmented, original]))
            augmented_features, features = features.split([augmented.shape[0], original.shape[0]])
        else:
            augmented_features = self.pre_logits(augmented)
            features = augmented_features
            if with_intra and original is not None:
                frozen = _frozen_running_stats(self.model) if freeze_original_stats else contextlib.nullcontext()
                with frozen, _main_split_norms(self.model):
                    features = self.pre_logits(original)
        output = classifier(augmented_features)
        if not with_intra:
            return output, None, None, None
        num_classes = getattr(self.model, 'num_classes', 0) or output.shape[-1]
        keep = first_occurrences(original if original is not None else augmented, target)
        if clean:
            return output, classifier(features), target, keep.to(features.dtype)
        synthesized, labels, present = synthesize_all_classes(features, target, num_classes, num_per_class, keep=keep)
        return output, classifier(synthesized), labels, present


class SynerMixTask(ClassificationTask):
    """Classification with SynerMix: `L = β·L_intra + (1-β)·L_inter` (Eq. 5).

    `L_inter` is the loss on the augmented view, mixed by `mixup` (MixUp/CutMix, Eq. 3; Manifold
    MixUp, Eq. 4) or unmixed (Eq. 8). `L_intra` (Eq. 2) is the hard-label cross-entropy of the
    classifier on features synthesized per class (Eq. 1) from the pre-logit features
    (`forward_features` → `forward_head(pre_logits=True)`) of the unaugmented originals, or of the
    augmented view for the w-RA(aug) ablation (Eq. 7). Gradients of both terms reach the backbone.

    Args:
        model: timm model whose `forward_head` accepts `pre_logits`.
        beta: β in [0, 1]; 0 trains on L_inter alone (no originals' pass), 1 on L_intra alone.
        mixup: `Mixup`, `ManifoldMixup`, or None (plain augmented loss).
        source: 'original' (SynerMix) or 'augmented' (w-RA(aug)) features for the intra term.
        num_per_class: P, synthesized features per class (§4.4.2).
        intra_every: Compute the intra term every k-th training step only (cheap mode); the
            loss is then `(1-β)·L_inter + β·L_intra` on those steps and `(1-β)·L_inter` between.
        original_scale: Resize the originals by this factor before their pass (cheap mode). Their
            pass then leaves BatchNorm running statistics alone: statistics of a smaller input would
            skew the full-resolution evaluation.
        joint_pass: 'auto' runs both views in one forward of 2N where that is exact (no BatchNorm in train
            mode: ViT, Swin, frozen or eval-mode BatchNorm), else two passes; 'never' always two passes;
            'shared-bn' one forward also with BatchNorm, whose batch statistics the views then share
            (faster, not the paper's two sets of statistics).
        aug_splits: AugMix splits of the augmented view (timm's `AugMixDataset`): it is then [splits*N], split-major,
            and `L_inter` sees the labels repeated per split (e.g. with timm's `JsdCrossEntropy`). The originals
            stay one clean view of N; a model converted with `convert_splitbn_model` normalises them with its
            main BatchNorm.
        distillation: A teacher on the augmented view (`LogitDistillation`), added to L_inter; not with
            ManifoldMixup, whose mixing happens inside the student, out of the teacher's sight.
        intra_mode: 'synthesize' (Eq. 1-2, SynerMix) or 'clean': L_intra is then the mean cross-entropy of
            the clean features themselves, at the same cost (the clean-view control, docs/method.md §6; not
            a method of the paper).
        criterion: Loss for L_inter; by default timm's soft-target CE with mixup, else CE
            (with `criterion_kwargs=dict(smoothing=...)` as ClassificationTask).
        criterion_kwargs, device, dtype, verbose: as `timm.task.ClassificationTask`.

    Example:
        ```python
        task = SynerMixTask(model, beta=0.1, mixup=Mixup(mixup_alpha=1.0, num_classes=100))
        out = task(TwoViews(original, augmented), target)   # or task(augmented, target, original=original)
        out['loss'].backward()                              # out: loss, output, loss_intra, loss_inter
        ```
    """

    def __init__(
            self,
            model: nn.Module,
            beta: float = 0.1,
            mixup: Optional[Union[Mixup, ManifoldMixup]] = None,
            source: str = 'original',
            num_per_class: int = 1,
            intra_every: int = 1,
            original_scale: float = 1.0,
            joint_pass: str = 'auto',
            aug_splits: int = 0,
            distillation: Optional[LogitDistillation] = None,
            intra_mode: str = 'synthesize',
            criterion: Optional[Union[nn.Module, Callable]] = None,
            criterion_kwargs: Optional[Dict[str, Any]] = None,
            device: Optional[torch.device] = None,
            dtype: Optional[torch.dtype] = None,
            verbose: bool = True,
    ):
        _check_arguments(model, beta=beta, mixup=mixup, source=source, num_per_class=num_per_class,
                         intra_every=intra_every, original_scale=original_scale, joint_pass=joint_pass,
                         aug_splits=aug_splits, distillation=distillation, intra_mode=intra_mode)
        if criterion is None and criterion_kwargs is None and mixup is not None:
            criterion_kwargs = dict(soft_targets=True)
        super().__init__(model, criterion, criterion_kwargs=criterion_kwargs, device=device, dtype=dtype,
                         verbose=verbose)
        self.beta = float(beta)
        self.mixup = mixup
        self.source = source
        self.num_per_class = num_per_class
        self.intra_every = intra_every
        self.original_scale = original_scale
        self.num_classes = getattr(model, 'num_classes', None)
        self.step = 0
        self.joint_pass = joint_pass
        self.aug_splits = aug_splits
        self.distillation = distillation
        self.intra_mode = intra_mode
        self._targets_checked = False
        self._norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.trainable_module = SynerMixTrainableModule(model)

    @property
    def mixup_enabled(self) -> bool:
        """Whether the inter-class mixing is on (False without one); a trainer turns it off for the last epochs."""
        return self.mixup is not None and bool(self.mixup.mixup_enabled)

    @mixup_enabled.setter
    def mixup_enabled(self, enabled: bool) -> None:
        if self.mixup is not None:
            self.mixup.mixup_enabled = enabled

    @property
    def model(self) -> nn.Module:
        """The classifier being trained (inside the trainable module and any DDP wrapper)."""
        return unwrap_model(self.trainable_module).model

    def compile(self, backend: str = 'inductor', mode: Optional[str] = None, **compile_kwargs) -> nn.Module:
        """Compile the model's feature and head passes (used by both views and by evaluation)."""
        model = self.model
        model.forward_features = torch.compile(model.forward_features, backend=backend, mode=mode, **compile_kwargs)
        model.forward_head = torch.compile(model.forward_head, backend=backend, mode=mode, **compile_kwargs)
        self.eval_model = model
        return model

    def _joint_now(self, original: Optional[torch.Tensor]) -> bool:
        """Whether this step's two views go through one forward (see `joint_pass`)."""
        if original is None or self.joint_pass == 'never' or self.original_scale != 1.0 or \
                isinstance(self.mixup, ManifoldMixup):
            return False
        return self.joint_pass == 'shared-bn' or not any(m.training for m in self._norms)

    def get_eval_model(self, module: Optional[nn.Module] = None, ema: bool = False) -> Optional[nn.Module]:
        """The classifier alone (EMA copy with `ema=True`): what evaluation and checkpoints see."""
        resolved = super().get_eval_model(module=module, ema=ema)
        current = resolved
        while current is not None:
            if isinstance(current, SynerMixTrainableModule):
                return current.model
            current = getattr(current, 'module', None)
        return resolved

    def get_task_state(self, module: Optional[nn.Module] = None, ema: bool = False) -> Dict[str, Any]:
        return {} if ema else {'step': self.step}

    def load_task_state(self, state, strict: bool = True, module=None, ema: bool = False) -> None:
        if state and not ema:
            self.step = int(state['step'])

    def _check_targets(self, target: torch.Tensor) -> None:
        if self.beta == 0 and self.mixup is None and target.is_floating_point():
            return  # soft targets mixed by the loader (timm's FastCollateMixup): plain timm training, no intra term
        if target.ndim != 1 or target.is_floating_point():
            raise ValueError(
                f'SynerMixTask needs class-index targets [N], got {tuple(target.shape)} {target.dtype}: mix through '
                'the task\'s `mixup`, not a collate-time mixup (FastCollateMixup) in the loader.')
        # The range is read from the first batch only: reading it needs the values on the host (a sync).
        if not self._targets_checked and self.num_classes and target.numel():
            self._targets_checked = True
            low, high = int(target.min()), int(target.max())
            if low < 0 or high >= self.num_classes:
                raise ValueError(
                    f'Target {low if low < 0 else high} is outside [0, {self.num_classes}): the model has '
                    f'{self.num_classes} outputs; create it with num_classes={high + 1} or more (the number of '
                    'classes in the data).')

    def forward(
            self,
            input: Union[torch.Tensor, TwoViews],
            target: torch.Tensor,
            original: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """Compute the SynerMix loss for one (supplemented) batch.

        Args:
            input: Augmented images [N, C, H, W], or a `TwoViews` batch (original, augmented).
            target: Class indices [N] (the intra term always uses hard labels).
            original: Unaugmented originals [N, C, H, W] when `input` is a tensor.

        Returns:
            Dict with 'loss', 'output' (logits of the augmented view), 'loss_intra', 'loss_inter',
            'with_intra' (bool: this step computed the intra term) and 'image_passes' (int: images through
            forward+backward, the originals' pass included).
        """
        if isinstance(input, TwoViews):
            original, augmented = input.original, input.augmented
        else:
            augmented = input
        self._check_targets(target)
        with_intra = self.training and self.beta > 0 and self.step % self.intra_every == 0
        if self.training:
            self.step += 1
        if with_intra and self.source == 'original':
            if original is None:
                raise ValueError(
                    'The intra term needs the unaugmented originals: pass a TwoViews batch (TwoViewDataset) or '
                    'original=..., or use source="augmented" / beta=0.')
            if self.original_scale != 1.0:
                original = F.interpolate(
                    original, scale_factor=self.original_scale, mode='bilinear', antialias=True, align_corners=False)
        else:
            original = None

        inter_target = target
        if self.aug_splits > 1 and self.training:
            # timm's collate repeats the labels per split; TwoViews batches carry them once, for the originals.
            if target.shape[0] == augmented.shape[0]:
                target = target[:target.shape[0] // self.aug_splits]
            inter_target = target.repeat(self.aug_splits)
        if self.mixup is not None and self.training:
            augmented, inter_target = self.mixup(augmented, target)
        output, synthesized_logits, synthesized_labels, present = self.trainable_module(
            augmented, original, target, with_intra=with_intra, num_per_class=self.num_per_class,
            freeze_original_stats=self.original_scale != 1.0, joint=self._joint_now(original),
            clean=self.intra_mode == 'clean')
        if isinstance(self.mixup, ManifoldMixup) and self.training:
            self.mixup.check_applied()

        if (self.mixup is not None or self.aug_splits > 1) and not self.training:
            loss_inter = F.cross_entropy(output, target)
        else:
            loss_inter = self.criterion(output, inter_target)
        if self.distillation is not None and self.training:
            loss_inter = self.distillation(output, augmented, loss_inter)
        if synthesized_logits is None:
            loss_intra = loss_inter.new_zeros(())
            # Steps skipped by intra_every keep the inter term's weight, so only the intra term thins out.
            loss = (1.0 - self.beta) * loss_inter if self.training else loss_inter
        else:
            # Eq. 2 over the classes present; dense rows keep the shapes fixed (no host sync).
            losses = F.cross_entropy(synthesized_logits.float(), synthesized_labels, reduction='none')
            loss_intra = (losses * present).sum() / present.sum()
            loss = self.beta * loss_intra + (1.0 - self.beta) * loss_inter
        # Images through forward+backward this step (shapes only, no sync): what the run's cost counts.
        passes = augmented.shape[0] + (original.shape[0] if synthesized_logits is not None and original is not None
                                       else 0)
        return {'loss': loss, 'output': output, 'loss_intra': loss_intra, 'loss_inter': loss_inter,
                'with_intra': synthesized_logits is not None, 'image_passes': passes}
