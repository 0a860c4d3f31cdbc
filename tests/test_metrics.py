import math

import numpy as np
import pytest
import torch

from timm_synermix.trainer.metrics import compute_feature_metrics, extract_features


def _clusters(std, num_classes=4, per_class=50, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=5., size=(num_classes, dim))
    labels = np.repeat(np.arange(num_classes), per_class)
    features = centers[labels] + rng.normal(scale=std, size=(len(labels), dim))
    return features.astype(np.float32), labels


def test_square_layout_gives_exact_known_metrics():
    # two classes, each two points 1 away from its centroid; centroids 10 apart
    features = np.array([[-5., 1.], [-5., -1.], [5., 1.], [5., -1.]])
    labels = np.array([0, 0, 1, 1])
    m = compute_feature_metrics(features, labels)
    scale = math.sqrt(26.)  # every point's distance to the global centroid (0, 0)
    assert m['intra_distance'] == pytest.approx(1. / scale)
    assert m['cohesion'] == pytest.approx(1. - 1. / scale)
    assert m['inter_centroid_distance'] == pytest.approx(10. / scale)
    assert m['fisher_ratio'] == pytest.approx(100. / 4.)
    # a = 2 (same-class partner), b = mean(10, sqrt(104)); s = 1 - a / b for every point
    assert m['silhouette'] == pytest.approx(1. - 4. / (10. + math.sqrt(104.)))
    assert (m['num_samples'], m['num_classes']) == (4, 2)
    assert 'accuracy' not in m


def test_tight_clusters_score_higher_cohesion_than_loose_ones():
    tight = compute_feature_metrics(*_clusters(std=0.2))
    loose = compute_feature_metrics(*_clusters(std=3.0))
    assert tight['intra_distance'] < 0.1 < 0.4 < loose['intra_distance']
    assert tight['cohesion'] > loose['cohesion']
    assert tight['inter_centroid_distance'] > loose['inter_centroid_distance']
    assert tight['fisher_ratio'] > 10 * loose['fisher_ratio']
    assert tight['silhouette'] > 0.9 > loose['silhouette']


def test_metrics_do_not_change_with_feature_scale_or_offset():
    features, labels = _clusters(std=1.0)
    base = compute_feature_metrics(features, labels)
    moved = compute_feature_metrics(features * 7. + 3., labels)
    for key in ('intra_distance', 'inter_centroid_distance', 'fisher_ratio', 'silhouette'):
        assert moved[key] == pytest.approx(base[key], rel=1e-5), key


def test_silhouette_subsample_is_seeded():
    features, labels = _clusters(std=2.0, per_class=100)
    a = compute_feature_metrics(features, labels, max_silhouette_samples=100, seed=1)
    b = compute_feature_metrics(features, labels, max_silhouette_samples=100, seed=1)
    full = compute_feature_metrics(features, labels)
    assert a['silhouette'] == b['silhouette']
    assert a['silhouette'] == pytest.approx(full['silhouette'], abs=0.1)


def test_metrics_accuracy_matches_predictions():
    features, labels = _clusters(std=1.0, num_classes=4, per_class=25)
    predictions = labels.copy()
    predictions[:10] = (predictions[:10] + 1) % 4  # 10 of 100 wrong
    assert compute_feature_metrics(features, labels, predictions)['accuracy'] == pytest.approx(0.9)
    logits = np.eye(4)[predictions] * 3.
    assert compute_feature_metrics(features, labels, logits)['accuracy'] == pytest.approx(0.9)


def test_metrics_reject_bad_input_with_a_reason():
    features, labels = _clusters(std=1.0)
    with pytest.raises(ValueError, match='at least two classes'):
        compute_feature_metrics(features, np.zeros(len(features), dtype=np.int64))
    with pytest.raises(ValueError, match=r'features \[N, D\] and labels \[N\]'):
        compute_feature_metrics(features, labels[:-1])
    with pytest.raises(ValueError, match='identical'):
        compute_feature_metrics(np.ones_like(features), labels)
    with pytest.raises(ValueError, match='predictions'):
        compute_feature_metrics(features, labels, labels[:5])


def test_extract_features_returns_classifier_inputs_and_logits():
    import timm
    torch.manual_seed(0)
    model = timm.create_model('test_resnet', num_classes=3)
    model.train()
    generator = torch.Generator().manual_seed(0)
    loader = [(torch.randn(4, 3, 32, 32, generator=generator), torch.tensor([0, 1, 2, 0])) for _ in range(3)]

    features, labels, logits = extract_features(model, loader, max_batches=2)
    assert features.shape == (8, model.num_features) and features.dtype == np.float32
    assert labels.tolist() == [0, 1, 2, 0] * 2 and labels.dtype == np.int64
    assert logits.shape == (8, 3) and logits.dtype == np.float32
    with torch.no_grad():
        from_features = model.get_classifier()(torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(from_features, logits, rtol=1e-5, atol=1e-5)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():  # eval-mode BatchNorm: the same input gives the same logits
        np.testing.assert_allclose(model(loader[0][0]).numpy(), logits[:4], rtol=1e-5, atol=1e-5)
