import pytest
import torch
import torch.nn.functional as F

from timm_synermix import intra_class_loss, synthesize_class_features


def per_class_loop_reference(features, labels, r):
    """The authors' formulation: loop over classes, w = r / sum(r) within the class (Eq. 1)."""
    out, out_labels = [], []
    for p in range(r.shape[0]):
        for c in torch.unique(labels):
            members = labels == c
            w = r[p, members] / r[p, members].sum()
            out.append((w.unsqueeze(1) * features[members]).sum(0))
            out_labels.append(c)
    return torch.stack(out), torch.stack(out_labels)


def test_synthesized_feature_is_normalised_uniform_mix_of_class_features():
    features = torch.randn(9, 6)
    labels = torch.tensor([3, 1, 3, 7, 1, 3, 7, 7, 1])
    synthesized, synthesized_labels = synthesize_class_features(
        features, labels, generator=torch.Generator().manual_seed(11))
    r = 1 - torch.rand((1, 9), generator=torch.Generator().manual_seed(11))   # U(0, 1]
    expected, expected_labels = per_class_loop_reference(features, labels, r)
    torch.testing.assert_close(synthesized, expected)
    assert synthesized_labels.tolist() == expected_labels.tolist() == [1, 3, 7]


def test_weights_are_a_convex_combination():
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    one_hot_features = torch.eye(6)
    synthesized, _ = synthesize_class_features(one_hot_features, labels)
    torch.testing.assert_close(synthesized.sum(1), torch.ones(2))
    assert (synthesized >= 0).all()
    assert synthesized[0, 4:].abs().sum() == 0 and synthesized[1, :4].abs().sum() == 0


def test_one_synthesized_feature_per_class_or_p_per_class():
    features, labels = torch.randn(10, 4), torch.tensor([0, 0, 2, 2, 2, 5, 5, 9, 9, 9])
    synthesized, synthesized_labels = synthesize_class_features(features, labels)
    assert synthesized.shape == (4, 4)
    synthesized, synthesized_labels = synthesize_class_features(
        features, labels, num_per_class=3, generator=torch.Generator().manual_seed(2))
    assert synthesized.shape == (12, 4)
    assert synthesized_labels.tolist() == [0, 2, 5, 9] * 3
    r = 1 - torch.rand((3, 10), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(synthesized, per_class_loop_reference(features, labels, r)[0])


def test_singleton_class_synthesizes_its_own_feature():
    features, labels = torch.randn(3, 5), torch.tensor([4, 8, 8])
    synthesized, _ = synthesize_class_features(features, labels)
    torch.testing.assert_close(synthesized[0], features[0])


def test_intra_loss_is_mean_hard_label_ce_and_reaches_the_features():
    features = torch.randn(8, 5, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    classifier = torch.nn.Linear(5, 3)
    loss = intra_class_loss(features, labels, classifier, generator=torch.Generator().manual_seed(0))
    synthesized, synthesized_labels = synthesize_class_features(
        features, labels, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss, F.cross_entropy(classifier(synthesized), synthesized_labels))
    loss.backward()
    assert features.grad.abs().sum(1).min() > 0


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r'features \[N, D\] and labels \[N\]'):
        synthesize_class_features(torch.randn(4, 3), torch.tensor([0, 1, 1]))


def test_dense_synthesis_equals_the_per_class_one_for_the_same_draws():
    from timm_synermix.method.intra import synthesize_all_classes
    features = torch.randn(12, 5)
    labels = torch.tensor([3, 3, 0, 7, 7, 7, 0, 3, 9, 9, 0, 7])
    sparse, sparse_labels = synthesize_class_features(features, labels, 2, torch.Generator().manual_seed(4))
    dense, dense_labels, present = synthesize_all_classes(features, labels, 10, 2, torch.Generator().manual_seed(4))
    assert present.sum() == 8 and dense.shape == (20, 5)
    torch.testing.assert_close(dense[present], sparse)
    assert torch.equal(dense_labels[present], sparse_labels)
    assert dense[~present].abs().sum() == 0
