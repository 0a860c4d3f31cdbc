"""SynerMix-Intra: per-class feature synthesis (docs/method.md §3, paper Eq. 1-2)."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = ['synthesize_class_features', 'synthesize_all_classes', 'intra_class_loss', 'first_occurrences']


def first_occurrences(images: torch.Tensor, labels: torch.Tensor, probes: int = 64) -> torch.Tensor:
    """True for each image's first copy in the batch: Eq. 1 mixes distinct images, not an image with itself.

    A batch can hold one image more than once (repeated augmentation, fixed-size top-ups); its unaugmented
    originals are then equal tensors. Copies are found on the device (no host sync) by one integer key per image:
    the bit patterns of `probes` evenly spaced values and the label, hashed, so equal images always share a key
    and the comparison is [N, N] integers whatever the image size.

    Args:
        images: The originals [N, ...] (the view whose features are mixed).
        labels: Class indices [N].
        probes: Values compared per image.

    Returns:
        Bool mask [N], False for the second and later copies of an image.
    """
    flat = images.reshape(images.shape[0], -1)
    step = max(1, flat.shape[1] // probes)
    bits = flat[:, ::step].float().contiguous().view(torch.int32).to(torch.int64)
    # Odd multipliers per position; int64 products and sums wrap around, which keeps equal rows equal.
    multipliers = torch.arange(1, bits.shape[1] + 1, device=bits.device, dtype=torch.int64) * 2654435761 | 1
    key = (bits * multipliers).sum(1) * 1000003 + labels.to(torch.int64)
    same = key.unsqueeze(1) == key.unsqueeze(0)
    return ~torch.tril(same, diagonal=-1).any(1)


def synthesize_class_features(
        features: torch.Tensor,
        labels: torch.Tensor,
        num_per_class: int = 1,
        generator: Optional[torch.Generator] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mix the features of each class in the batch into synthesized features (Eq. 1).

    For every class c present in `labels` and each of `num_per_class` draws,
    `f_syn = sum_j w_j f_j` over the samples j of class c, with `w_j = r_j / sum_i r_i` and
    `r ~ U(0, 1)` i.i.d. The sums over classes are scatter-adds, so the cost is one pass over
    the batch whatever the number of classes.

    Args:
        features: Pre-logit features [N, D] (gradients flow through them).
        labels: Class indices [N].
        num_per_class: P, synthesized features per class (paper §4.4.2).
        generator: Optional torch.Generator for the uniform draws.

    Returns:
        (synthesized [P*C, D], labels [P*C]) for the C classes present, grouped by draw.

    Example:
        ```python
        f_syn, y_syn = synthesize_class_features(pre_logits, target)
        loss_intra = F.cross_entropy(model.get_classifier()(f_syn), y_syn)
        ```
    """
    if labels.numel() == 0:
        raise ValueError('labels is empty: there is no class to synthesize a feature for.')
    # The dense form over the classes up to the largest label, with the absent classes' rows dropped.
    synthesized, classes, present = synthesize_all_classes(
        features, labels, int(labels.max()) + 1, num_per_class, generator)
    return synthesized[present], classes[present]


def synthesize_all_classes(
        features: torch.Tensor,
        labels: torch.Tensor,
        num_classes: int,
        num_per_class: int = 1,
        generator: Optional[torch.Generator] = None,
        keep: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 1 for every class slot at once: no data-dependent shapes, so no host sync (e.g. on a GPU).

    The same draws and features as `synthesize_class_features`, laid out densely over `num_classes`:
    rows of classes absent from the batch are zero and masked out.

    Args:
        features: Pre-logit features [N, D].
        labels: Class indices [N] in [0, num_classes).
        num_classes: C, the classifier's class count.
        num_per_class: P, synthesized features per class.
        generator: Optional torch.Generator for the uniform draws.
        keep: Optional bool mask [N]; rows left out get weight 0 (see `first_occurrences`).

    Returns:
        (synthesized [P*C, D], labels [P*C], present [P*C] bool: the class is in the batch).

    Example:
        ```python
        f_syn, y_syn, present = synthesize_all_classes(pre_logits, target, num_classes=100)
        ce = F.cross_entropy(model.get_classifier()(f_syn), y_syn, reduction='none')
        loss_intra = (ce * present).sum() / present.sum()      # Eq. 2: the mean over the classes present
        ```
    """
    if features.ndim != 2 or labels.ndim != 1 or features.shape[0] != labels.shape[0]:
        raise ValueError(
            f'Expected features [N, D] and labels [N], got {tuple(features.shape)} and {tuple(labels.shape)}.')
    if num_per_class < 1:
        raise ValueError(f'num_per_class={num_per_class}: need at least one synthesized feature per class.')
    r = 1.0 - torch.rand(
        (num_per_class, labels.numel()), generator=generator, device=features.device, dtype=torch.float32)
    if keep is not None:
        r = r * keep.to(r.dtype)
    totals = r.new_zeros(num_per_class, num_classes).index_add_(1, labels, r)
    weights = (r / totals[:, labels]).to(features.dtype)
    weighted = weights.unsqueeze(-1) * features.unsqueeze(0)
    synthesized = features.new_zeros(num_per_class, num_classes, features.shape[1]).index_add_(1, labels, weighted)
    classes = torch.arange(num_classes, device=labels.device).repeat(num_per_class)
    return synthesized.reshape(-1, features.shape[1]), classes, (totals > 0).reshape(-1)


def intra_class_loss(
        features: torch.Tensor,
        labels: torch.Tensor,
        classifier: torch.nn.Module,
        num_per_class: int = 1,
        generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """L_intra (Eq. 2): mean hard-label cross-entropy of the classifier on the synthesized features."""
    synthesized, synthesized_labels = synthesize_class_features(features, labels, num_per_class, generator)
    logits = classifier(synthesized)
    return F.cross_entropy(logits.float(), synthesized_labels)
