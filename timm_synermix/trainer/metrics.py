""" Feature-space metrics: how tight each class cluster is and how far apart classes are.

The paper's claim (Fig. 2 and Fig. 8, t-SNE of test features) is that SynerMix-Intra
tightens class clusters (intra-class cohesion) while inter-class mixup reduces overlap
between classes (inter-class separability). These functions put numbers on both, computed
on the features the classifier sees (timm's pre-logits).
"""
import numpy as np
import torch

__all__ = ['extract_features', 'compute_feature_metrics']


def extract_features(model, loader, device=None, max_batches=None):
    """ Pre-logit features, labels and logits of a timm model over a loader.

    Features are ``forward_head(forward_features(x), pre_logits=True)``, the input of
    ``model.get_classifier()``: the representation the paper visualises (Fig. 2, 8) and
    the one SynerMix-Intra mixes. Runs in eval mode under no_grad and restores the
    model's train/eval mode afterwards.

    Args:
        model: a timm model (has forward_features, forward_head, get_classifier).
        loader: yields (input, target) with hard integer targets; input may already be on device.
        device: device to run on; default the model's parameters' device.
        max_batches: stop after this many batches.

    Returns:
        (features float32 [N, D], labels int64 [N], logits float32 [N, K]) numpy arrays

    Example:
        >>> features, labels, logits = extract_features(model, eval_loader)
        >>> compute_feature_metrics(features, labels, logits.argmax(1))
    """
    if device is None:
        device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype  # --model-dtype: inputs in the weights' dtype, as in training
    was_training = model.training
    model.eval()
    features, labels, logits = [], [], []
    try:
        # inference_mode as evaluation: a streaming reader keeps a tensor it first made there (its epoch counter)
        with torch.inference_mode():
            for batch_idx, (input, target) in enumerate(loader):
                if max_batches is not None and batch_idx >= max_batches:
                    break
                if target.ndim != 1:
                    raise ValueError(
                        f'extract_features needs hard class targets of shape [B], got {tuple(target.shape)}; '
                        f'pass an evaluation loader without mixup / label smoothing.')
                x = model.forward_features(input.to(device=device, dtype=dtype))
                features.append(model.forward_head(x, pre_logits=True).float().cpu())
                logits.append(model.forward_head(x).float().cpu())
                labels.append(target.cpu())
    finally:
        model.train(was_training)
    if not features:
        raise ValueError('The loader yielded no batches; nothing to extract.')
    return (
        torch.cat(features).numpy(),
        torch.cat(labels).numpy().astype(np.int64),
        torch.cat(logits).numpy(),
    )


def _checked(features, labels):
    """(features as float64 [N, D], labels, class index per sample, count per class), or ValueError."""
    x = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.ndim != 1 or len(x) != len(labels):
        raise ValueError(
            f'Expected features [N, D] and labels [N], got {x.shape} and {labels.shape}.')
    if not np.isfinite(x).all():
        raise ValueError('features contain NaN or inf; check the model (diverged training?).')
    classes, y, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if len(classes) < 2 or len(classes) >= len(x):
        raise ValueError(
            f'Need at least two classes and more samples than classes, got {len(classes)} classes '
            f'for {len(x)} samples; evaluate on more data.')
    return x, labels, y, counts


def compute_feature_metrics(features, labels, predictions=None, max_silhouette_samples=2000, seed=0):
    """ Intra-class cohesion and inter-class separability of a feature set.

    Distances are divided by ``scale``, the mean distance of all features to the global
    centroid, so the numbers compare across models and feature sizes.

    * ``intra_distance``: mean distance of a feature to its class centroid / scale; lower
      is tighter (the paper's intra-class cohesion, Fig. 2/8). 0 when every class collapses
      to a point, about 1 when class centroids carry no information.
    * ``cohesion``: ``1 - intra_distance``, so higher is better like the other scores.
      (Chosen over 1 / intra_distance, which is unbounded for collapsed classes.)
    * ``inter_centroid_distance``: mean pairwise distance between class centroids / scale.
    * ``fisher_ratio``: trace(S_b) / trace(S_w), between-class over within-class scatter
      (inf when classes are points).
    * ``silhouette``: sklearn's silhouette score (Euclidean) on at most
      ``max_silhouette_samples`` features drawn with ``seed``; in [-1, 1].
    * ``accuracy``: fraction of predictions equal to labels, when predictions are given.

    Args:
        features: [N, D] features.
        labels: [N] integer class labels; at least two classes.
        predictions: [N] predicted classes or [N, K] logits / probabilities.
        max_silhouette_samples: subsample size of the silhouette score (it is O(N^2)).
        seed: seed of that subsample.

    Returns:
        dict of the floats above plus num_samples and num_classes.
    """
    from sklearn.metrics import accuracy_score, silhouette_score

    x, labels, y, counts = _checked(features, labels)
    num_classes = len(counts)

    centroid = x.mean(0)
    scale = np.linalg.norm(x - centroid, axis=1).mean()
    if scale == 0:
        raise ValueError('All features are identical (a collapsed model); the metrics are undefined.')

    class_centroids = np.zeros((num_classes, x.shape[1]))
    np.add.at(class_centroids, y, x)
    class_centroids /= counts[:, None]
    within = x - class_centroids[y]
    within_sq = np.einsum('ij,ij->i', within, within)
    intra_distance = np.sqrt(within_sq).mean() / scale

    # pairwise centroid distances from the Gram matrix: avoids a [C, C, D] tensor
    sq_norms = np.einsum('ij,ij->i', class_centroids, class_centroids)
    dist_sq = sq_norms[:, None] + sq_norms[None, :] - 2 * class_centroids @ class_centroids.T
    upper = np.triu_indices(num_classes, k=1)
    inter_centroid_distance = np.sqrt(np.clip(dist_sq[upper], 0, None)).mean() / scale

    between_trace = (counts * ((class_centroids - centroid) ** 2).sum(1)).sum()
    within_trace = within_sq.sum()
    fisher_ratio = between_trace / within_trace if within_trace > 0 else float('inf')

    sample_size = max_silhouette_samples if len(x) > max_silhouette_samples else None
    silhouette = silhouette_score(x, y, sample_size=sample_size, random_state=seed)

    metrics = dict(
        num_samples=int(len(x)),
        num_classes=int(num_classes),
        intra_distance=float(intra_distance),
        cohesion=float(1. - intra_distance),
        inter_centroid_distance=float(inter_centroid_distance),
        fisher_ratio=float(fisher_ratio),
        silhouette=float(silhouette),
    )
    if predictions is not None:
        predictions = np.asarray(predictions)
        if predictions.ndim == 2:
            predictions = predictions.argmax(1)
        if predictions.shape != labels.shape:
            raise ValueError(
                f'predictions must be [N] classes or [N, K] scores for N={len(labels)}, '
                f'got {predictions.shape}.')
        metrics['accuracy'] = float(accuracy_score(labels, predictions))
    return metrics
