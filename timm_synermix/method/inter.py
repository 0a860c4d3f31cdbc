"""SynerMix-Inter (docs/method.md §4): the inter-class mixing of the augmented view.

`Mixup` is timm's MixUp / CutMix taking odd batches (paper Eq. 3); `ManifoldMixup` mixes hidden
states of any timm model through forward hooks (Eq. 4); `LogitDistillation` adds a teacher to the inter term.
"""
import difflib
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
from timm.data.mixup import Mixup as TimmMixup, mixup_target, rand_bbox_minmax

__all__ = ['Mixup', 'ManifoldMixup', 'LogitDistillation', 'default_manifold_layers', 'INPUT_LAYER']


class Mixup(TimmMixup):
    """timm's MixUp / CutMix for the augmented view of a supplemented batch (Eq. 3).

    Same arguments, random draws and output as `timm.data.Mixup` on even batches. Differences:
    odd batch sizes are accepted (supplementation often makes them odd: the middle sample of an
    odd batch is its own partner and stays unmixed), and the λ of the last call is kept in
    `self.lam` so Manifold MixUp and logging can reuse it. It is only ever called on the
    augmented images; the originals for the intra term never pass through it.

    The 'elem' and 'pair' modes are vectorised where timm loops over the batch in Python: the
    numpy draws are timm's, in timm's order, and the mixed rows are gathered, mixed and written
    back by a fixed number of tensor ops whatever the batch size, with the λ and box arrays
    copied to the device once per call and no host sync. The images, λ and targets equal timm's
    bit for bit. 'batch' mode is timm's own code.

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

    # timm does the CutMix box and MixUp weight arithmetic on numpy scalars taken from its float32
    # λ array. NumPy < 2 promotes those scalars to float64 when they meet a Python number (NEP 50
    # ended that), so the batched arithmetic runs in whichever dtype the scalar one gets.
    _SCALAR_DTYPE = type(1 - np.float32(1))

    @staticmethod
    def pair_index(batch_size: int, device=None) -> torch.Tensor:
        """Partner of each sample: timm mixes sample i with sample N-1-i."""
        return torch.arange(batch_size - 1, -1, -1, device=device)

    def _mix_elem(self, x: torch.Tensor) -> torch.Tensor:
        # timm's loop mixes the middle sample of an odd batch with itself: pixels and target stay
        # as they were up to rounding, but λ is drawn (and kept) like any other sample's.
        return self._mix_with_partner(x, *self._draw_elem(len(x), x.shape))

    def _mix_pair(self, x: torch.Tensor) -> torch.Tensor:
        # timm draws for the first half and mirrors it; the middle sample of an odd batch has no
        # partner and stays unmixed (λ = 1), which leaves every other pairing i <-> N-1-i as is.
        lam, mixup, boxes = self._draw_elem(len(x) // 2, x.shape)
        odd = len(x) % 2
        return self._mix_with_partner(
            x, self._mirrored(lam, 1., odd), self._mirrored(mixup, False, odd), self._mirrored(boxes, 0, odd))

    @staticmethod
    def _mirrored(half: np.ndarray, middle: object, odd: int) -> np.ndarray:
        filler = np.full((odd, *half.shape[1:]), middle, half.dtype)
        return np.concatenate([half, filler, half[::-1]])

    def _draw_elem(self, batch_size: int, img_shape) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """timm's per-sample draws: λ, which samples take MixUp, and the CutMix boxes.

        Consumes numpy's global RNG as timm's `_mix_elem` loop does: `_params_per_elem`, then a box
        for each sample with λ != 1 that takes CutMix, in sample order. Returns λ [N] (corrected for
        the box area as timm does), the MixUp mask [N] and boxes [N, 4] as (yl, yh, xl, xh), empty
        (all 0) for samples without CutMix.
        """
        lam, use_cutmix = self._params_per_elem(batch_size)
        mixed = lam != 1.
        cut = np.flatnonzero(mixed & use_cutmix)
        boxes = np.zeros((batch_size, 4), np.int64)
        if cut.size:
            boxes[cut], lam[cut] = self._cutmix_boxes(lam[cut], img_shape)
        return lam, mixed & ~use_cutmix, boxes

    def _cutmix_boxes(self, lam: np.ndarray, img_shape) -> Tuple[np.ndarray, np.ndarray]:
        """timm's `cutmix_bbox_and_lam` for each λ in turn: boxes [k, 4] and λ [k]."""
        img_h, img_w = img_shape[-2:]
        if self.cutmix_minmax is None:
            boxes = self._rand_bboxes(img_h, img_w, lam)
        else:
            # A minmax box's position is drawn within bounds set by its size draw: one at a time.
            boxes = np.array([rand_bbox_minmax(img_shape, self.cutmix_minmax) for _ in lam], np.int64)
        if self.correct_lam or self.cutmix_minmax is not None:
            yl, yh, xl, xh = boxes.T
            lam = 1. - (yh - yl) * (xh - xl) / float(img_h * img_w)
        return boxes, lam

    @classmethod
    def _rand_bboxes(cls, img_h: int, img_w: int, lam: np.ndarray) -> np.ndarray:
        """timm's `rand_bbox` (no margin) for each λ in turn, all drawn in one numpy call."""
        ratio = np.sqrt(1 - lam.astype(cls._SCALAR_DTYPE))
        cut_h, cut_w = (img_h * ratio).astype(np.int64), (img_w * ratio).astype(np.int64)
        # timm draws cy then cx for each box. Legacy RandomState.randint takes one masked 32-bit
        # draw per value for scalar and array bounds alike (numpy's random_bounded_uint64_fill and
        # random_bounded_uint64), so the bounds H, W, H, W, ... give timm's stream value for value.
        cy, cx = np.random.randint(0, np.tile(np.array([img_h, img_w]), len(lam))).reshape(-1, 2).T
        return np.stack([
            np.clip(cy - cut_h // 2, 0, img_h), np.clip(cy + (cut_h + 1) // 2, 0, img_h),
            np.clip(cx - cut_w // 2, 0, img_w), np.clip(cx + (cut_w + 1) // 2, 0, img_w)], 1)

    def _mix_with_partner(
            self, x: torch.Tensor, lam: np.ndarray, mixup: np.ndarray, boxes: np.ndarray) -> torch.Tensor:
        """Mix sample i with its partner N-1-i in place (Eq. 3) and return λ [N, 1] in x's dtype.

        MixUp samples become λ_i x_i + (1 - λ_i) x_{N-1-i}; CutMix samples take their partner's
        pixels inside box i. Only these rows are gathered, mixed and written back, by a fixed
        number of tensor ops whatever N; the rest of x is not touched.
        """
        n, dtype = len(x), x.dtype
        blended = np.flatnonzero(mixup)
        # timm pastes nothing for an empty box (λ near 1): such a sample keeps every pixel.
        cut = np.flatnonzero((boxes[:, 1] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 2]))
        k, c = len(blended), len(cut)
        # timm multiplies by the numpy scalars λ and 1 - λ, which torch applies at x's compute
        # precision (float32 for half types), rounding each product to x's dtype before the sum:
        # so do in-place products into rows of x's dtype.
        floats = np.concatenate([lam, lam[blended], 1 - lam[blended].astype(self._SCALAR_DTYPE)])
        floats = torch.from_numpy(floats).to(x.device, torch.promote_types(dtype, torch.float32), non_blocking=True)
        ints = np.concatenate([blended, n - 1 - blended, cut, n - 1 - cut, boxes[cut].ravel()])
        ints = torch.from_numpy(ints).to(x.device, non_blocking=True)
        # Gathered before any write, so every sample mixes with its partner's unmixed pixels.
        own, partner, cut_own, cut_partner = x.index_select(0, ints[:2 * (k + c)]).split([k, k, c, c])
        if k:
            lam_i, rest_i = floats[n:].view(2, k, *[1] * (x.ndim - 1)).unbind(0)
            x.index_copy_(0, ints[:k], own.mul_(lam_i).add_(partner.mul_(rest_i)))
        if c:
            yl, yh, xl, xh = ints[2 * (k + c):].view(c, 4, 1, 1, 1).unbind(1)
            rows = torch.arange(x.shape[-2], device=x.device).view(-1, 1)
            cols = torch.arange(x.shape[-1], device=x.device)
            inside = ((rows >= yl) & (rows < yh)) & ((cols >= xl) & (cols < xh))
            x.index_copy_(0, ints[2 * k:2 * k + c], torch.where(inside, cut_partner, cut_own, out=cut_own))
        return floats[:n].to(dtype).unsqueeze(1)

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


INPUT_LAYER = 'input'

# The paper's layer sets S (§4.1.2) in timm module names; 'input' mixes the images themselves.
_DEFAULT_LAYERS = {
    'ResNet': (INPUT_LAYER, 'layer1', 'layer2'),
    'MobileNetV3': (INPUT_LAYER, 'bn1', 'blocks.0', 'blocks.1'),
    'SwinTransformer': (INPUT_LAYER, 'patch_embed.norm', 'layers.0.blocks.1', 'layers.1.blocks.1'),
}


def default_manifold_layers(model: nn.Module) -> Optional[Tuple[str, ...]]:
    """The Manifold MixUp layer set S of docs/method.md §4 for ResNet, MobileNetV3 and Swin; None for other models."""
    return _DEFAULT_LAYERS.get(type(model).__name__)


class ManifoldMixup:
    """Manifold MixUp (Eq. 4): mix hidden states at a layer drawn once per mini-batch from S.

    Called like `Mixup`: `x, soft_target = manifold(x, target)` draws a layer k from `layers`
    and λ as timm's Mixup does for `mode` (MixUp only: CutMix boxes have no meaning for hidden
    states). If k is 'input' the images are mixed at once; otherwise the output of module k is
    mixed by a forward hook during the model's next forward, then the hook disarms. Sample i is
    mixed with sample N-1-i, as in timm. With `layers=('input',)` this is MixUp.

    Args:
        model: The timm model whose modules are hooked.
        layers: Module names (from `model.named_modules()`) and/or 'input'. Defaults to the
            paper's S for ResNet, MobileNetV3 and Swin; required for other models.
        mixup_alpha: Beta(α, α) parameter for λ.
        mode: 'batch', 'pair' or 'elem', as in timm's Mixup.
        prob: Probability of mixing a batch (or element).
        label_smoothing: Smoothing inside the mixed targets.
        num_classes: Number of classes of the targets.

    Example:
        ```python
        manifold = ManifoldMixup(model, mixup_alpha=1.0, num_classes=100)   # ResNet: input, layer1, layer2
        x, soft_target = manifold(x, target)
        loss = SoftTargetCrossEntropy()(model(x), soft_target)
        ```
    """

    def __init__(
            self,
            model: nn.Module,
            layers: Optional[Sequence[str]] = None,
            mixup_alpha: float = 1.0,
            mode: str = 'batch',
            prob: float = 1.0,
            label_smoothing: float = 0.0,
            num_classes: int = 1000,
    ):
        if layers is None:
            layers = default_manifold_layers(model)
            if layers is None:
                raise ValueError(
                    f'{type(model).__name__} has no default Manifold MixUp layers (the paper gives them for '
                    'ResNet, MobileNetV3 and Swin): pass layers=[...] with module names '
                    'from model.named_modules(), or "input".')
        layers = list(layers)
        if not layers:
            raise ValueError('layers is empty: give at least one module name or "input".')
        modules = dict(model.named_modules())
        for name in layers:
            if name != INPUT_LAYER and (name not in modules or name == ''):
                close = difflib.get_close_matches(name, [n for n in modules if n], n=3, cutoff=0.5)
                hint = f' Did you mean {", ".join(close)}?' if close else ''
                raise ValueError(
                    f'Manifold MixUp layer "{name}" is not a module of {type(model).__name__}.{hint} '
                    'Use names from model.named_modules(), or "input".')
        if mixup_alpha <= 0:
            raise ValueError(f'mixup_alpha={mixup_alpha}: Manifold MixUp needs mixup_alpha > 0.')
        self.layers = layers
        self.lam_source = Mixup(
            mixup_alpha=mixup_alpha, cutmix_alpha=0., prob=prob, mode=mode,
            label_smoothing=label_smoothing, num_classes=num_classes)
        self.lam = None
        self.layer = None
        self._armed: Optional[Tuple[str, torch.Tensor]] = None
        self._handles = [
            modules[name].register_forward_hook(self._make_hook(name))
            for name in dict.fromkeys(layers) if name != INPUT_LAYER
        ]

    @property
    def num_classes(self) -> int:
        return self.lam_source.num_classes

    @property
    def mixup_enabled(self) -> bool:
        return self.lam_source.mixup_enabled

    @mixup_enabled.setter
    def mixup_enabled(self, value: bool) -> None:
        # timm's train loop switches mixing off (mixup_off_epoch) through this attribute.
        self.lam_source.mixup_enabled = value

    def _draw_lam(self, batch_size: int) -> np.ndarray:
        source = self.lam_source
        if source.mode == 'elem':
            return source._params_per_elem(batch_size)[0]
        if source.mode == 'pair':
            half = source._params_per_elem(batch_size // 2)[0]
            return np.concatenate([half, np.ones(batch_size % 2, np.float32), half[::-1]])
        return np.full(batch_size, source._params_per_batch()[0], dtype=np.float32)

    @staticmethod
    def _mix(h: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        lam = lam.to(device=h.device, dtype=h.dtype).view(-1, *([1] * (h.ndim - 1)))
        return h * lam + h.flip(0) * (1. - lam)

    def _make_hook(self, name: str):
        def hook(module, inputs, output):
            if self._armed is None or self._armed[0] != name:
                return None
            lam = self._armed[1]
            self._armed = None
            if not isinstance(output, torch.Tensor):
                raise TypeError(
                    f'Manifold MixUp layer "{name}" returns {type(output).__name__}, not a tensor: '
                    'pick a module whose output is a single tensor.')
            if output.shape[0] != lam.numel():
                raise RuntimeError(
                    f'Manifold MixUp drew λ for {lam.numel()} samples but layer "{name}" saw a batch of '
                    f'{output.shape[0]}: call the model on the batch right after manifold(x, target).')
            return self._mix(output, lam)
        return hook

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        # A single-layer S draws nothing, so S = {input} consumes the RNG exactly as MixUp does.
        self.layer = self.layers[np.random.randint(len(self.layers))] if len(self.layers) > 1 else self.layers[0]
        lam = torch.from_numpy(self._draw_lam(len(x)))
        self.lam = lam.unsqueeze(1)
        if self.layer == INPUT_LAYER:
            x = self._mix(x, lam)
        else:
            self._armed = (self.layer, lam)
        soft_target = mixup_target(
            target, self.num_classes, self.lam.to(x.device), self.lam_source.label_smoothing)
        return x, soft_target

    def check_applied(self) -> None:
        """Raise if the drawn layer did not run in the forward that followed the call."""
        if self._armed is not None:
            name = self._armed[0]
            self._armed = None
            raise RuntimeError(
                f'Manifold MixUp layer "{name}" did not run in the model\'s forward: choose layers the '
                'forward pass goes through.')

    def remove(self) -> None:
        """Remove the forward hooks from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


class LogitDistillation(nn.Module):
    """A teacher on the augmented view: timm's logit distillation, added to L_inter.

    `L_inter = task_loss_weight * criterion(student, target) + distill_loss_weight * T² * KL(teacher || student)`
    with both softmaxes at temperature T, the teacher seeing the same (mixed) augmented images as the student,
    renormalised to its own mean and std. The originals and the intra term (Eq. 2) are untouched.

    Args:
        teacher: timm's `DistillationTeacher` (kept in eval mode, no gradients).
        mean, std: The student's input normalisation (per channel), which the teacher input is converted from.
        temperature: T, as in timm's logit distillation task.
        task_loss_weight, distill_loss_weight: Weights of the student's own loss and of the KL term.

    Example:
        ```python
        teacher = DistillationTeacher('resnet50', num_classes=100)
        task = SynerMixTask(student, beta=0.1, mixup=mixup, distillation=LogitDistillation(teacher, mean, std))
        ```
    """

    def __init__(
            self,
            teacher: nn.Module,
            mean: Sequence[float],
            std: Sequence[float],
            temperature: float = 4.0,
            task_loss_weight: float = 1.0,
            distill_loss_weight: float = 1.0,
    ):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'temperature={temperature} must be above 0.')
        self.teacher = teacher.eval()
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.temperature = temperature
        self.task_loss_weight = task_loss_weight
        self.distill_loss_weight = distill_loss_weight

    def train(self, mode: bool = True) -> 'LogitDistillation':
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, student_logits: torch.Tensor, augmented: torch.Tensor, task_loss: torch.Tensor) -> torch.Tensor:
        """The distilled L_inter from the student's logits on `augmented` and its own loss there."""
        with torch.no_grad():
            teacher_input = self.teacher.normalize_input(augmented, self.mean.to(augmented.dtype),
                                                         self.std.to(augmented.dtype))
            teacher_logits = self.teacher(teacher_input)
        t = self.temperature
        kl = nn.functional.kl_div(nn.functional.log_softmax(student_logits / t, dim=-1),
                                  nn.functional.log_softmax(teacher_logits / t, dim=-1),
                                  reduction='batchmean', log_target=True) * t * t
        return self.task_loss_weight * task_loss + self.distill_loss_weight * kl
