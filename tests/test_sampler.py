import numpy as np
import pytest
import torch

from timm_synermix import SupplementedBatchSampler, dataset_labels


def balanced_labels(num_classes=10, per_class=20):
    return np.repeat(np.arange(num_classes), per_class)


def epoch_batches(sampler, epoch=0):
    sampler.set_epoch(epoch)
    return [np.asarray(b) for b in sampler]


def test_every_class_in_batch_has_two_samples():
    labels = balanced_labels(num_classes=50, per_class=6)
    sampler = SupplementedBatchSampler(labels, batch_size=16, seed=1)
    batches = epoch_batches(sampler)
    assert len(batches) == 300 // 16
    for batch in batches:
        counts = np.bincount(labels[batch])
        assert counts[counts > 0].min() >= 2
        assert 16 <= len(batch) <= 32


def test_supplements_are_other_images_of_the_class_never_duplicates():
    labels = balanced_labels(num_classes=30, per_class=4)
    sampler = SupplementedBatchSampler(labels, batch_size=12, seed=3)
    for batch in epoch_batches(sampler):
        assert len(set(batch.tolist())) == len(batch)


def test_only_classes_seen_once_are_supplemented():
    labels = balanced_labels(num_classes=30, per_class=4)
    sampler = SupplementedBatchSampler(labels, batch_size=12, seed=3)
    plain = SupplementedBatchSampler(labels, batch_size=12, seed=3, supplement=False)
    for batch, base in zip(epoch_batches(sampler), epoch_batches(plain)):
        assert set(base.tolist()) <= set(batch.tolist())
        base_counts = np.bincount(labels[base], minlength=30)
        added = np.bincount(labels[np.setdiff1d(batch, base)], minlength=30)
        np.testing.assert_array_equal(added, (base_counts == 1).astype(int))


def test_supplements_are_drawn_uniformly_from_the_class():
    labels = np.array([0, 0, 0, 0, 0, 1])   # class 0 has 5 images
    sampler = SupplementedBatchSampler(labels, batch_size=2, seed=0, allow_singleton_classes=True, shuffle=False)
    rng = np.random.default_rng(0)
    draws = np.concatenate([sampler._supplements(np.array([2, 5]), rng) for _ in range(8000)])
    counts = np.bincount(draws, minlength=6)
    assert counts[2] == 0 and counts[5] == 0
    np.testing.assert_allclose(counts[[0, 1, 3, 4]] / 8000, 0.25, atol=0.02)


def test_batch_order_is_shuffled_so_supplements_are_not_all_at_the_end():
    labels = balanced_labels(num_classes=40, per_class=5)
    sampler = SupplementedBatchSampler(labels, batch_size=10, seed=0)
    plain = SupplementedBatchSampler(labels, batch_size=10, seed=0, supplement=False)
    tail_positions = 0
    for batch, base in zip(epoch_batches(sampler), epoch_batches(plain)):
        is_supplement = ~np.isin(batch, base)
        tail_positions += is_supplement[len(base):].all()
    assert tail_positions < len(epoch_batches(plain)) // 4


def test_batches_are_deterministic_from_seed_and_epoch():
    labels = balanced_labels()
    a = SupplementedBatchSampler(labels, batch_size=8, seed=5)
    b = SupplementedBatchSampler(labels, batch_size=8, seed=5)
    first, again = epoch_batches(a, 2), epoch_batches(b, 2)
    assert all(np.array_equal(x, y) for x, y in zip(first, again))
    other_epoch = epoch_batches(a, 3)
    assert not all(np.array_equal(x, y) for x, y in zip(first, other_epoch))


def test_drop_last_controls_the_last_partial_batch():
    labels = balanced_labels(num_classes=5, per_class=7)   # 35 samples
    assert len(SupplementedBatchSampler(labels, batch_size=8, drop_last=True)) == 4
    kept = SupplementedBatchSampler(labels, batch_size=8, drop_last=False)
    assert len(kept) == 5
    base_sizes = [len(b) for b in SupplementedBatchSampler(labels, batch_size=8, drop_last=False, supplement=False)]
    assert base_sizes == [8, 8, 8, 8, 3]


@pytest.mark.parametrize('drop_last', [True, False])
def test_ranks_yield_equal_batch_counts(drop_last):
    labels = balanced_labels(num_classes=7, per_class=11)   # 77 samples, not divisible by 3 ranks
    counts = [len(list(SupplementedBatchSampler(labels, batch_size=5, drop_last=drop_last, num_replicas=3, rank=r)))
              for r in range(3)]
    assert counts == [counts[0]] * 3
    assert counts[0] == (77 // 3 // 5 if drop_last else -(-26 // 5))


def test_ranks_shard_the_epoch_disjointly():
    labels = balanced_labels(num_classes=8, per_class=12)   # 96 samples
    shards = [np.concatenate(epoch_batches(SupplementedBatchSampler(
        labels, batch_size=6, num_replicas=2, rank=r, supplement=False, seed=4), epoch=1)) for r in range(2)]
    assert len(np.intersect1d(shards[0], shards[1])) == 0
    assert sorted(np.concatenate(shards).tolist()) == list(range(96))


def test_supplements_come_from_the_whole_training_set():
    labels = balanced_labels(num_classes=40, per_class=2)
    sampler = SupplementedBatchSampler(labels, batch_size=8, num_replicas=2, rank=0, seed=0)
    base = np.concatenate(epoch_batches(SupplementedBatchSampler(
        labels, batch_size=8, num_replicas=2, rank=0, seed=0, supplement=False)))
    supplements = np.setdiff1d(np.concatenate(epoch_batches(sampler)), base)
    assert len(supplements) > 0
    assert not np.isin(supplements, base).all()


def test_resume_at_batch_k_continues_the_same_sequence():
    labels = balanced_labels()
    sampler = SupplementedBatchSampler(labels, batch_size=8, seed=9)
    full = epoch_batches(sampler, epoch=4)
    resumed = SupplementedBatchSampler(labels, batch_size=8, seed=0)
    resumed.load_state_dict({'seed': 9, 'epoch': 4, 'start_batch': 10})
    assert len(resumed) == len(full) - 10
    tail = [np.asarray(b) for b in resumed]
    assert all(np.array_equal(x, y) for x, y in zip(full[10:], tail)) and len(tail) == len(full) - 10


def test_labels_are_read_without_decoding_images(image_folder, monkeypatch):
    from PIL import Image
    from timm.data import create_dataset
    dataset = create_dataset('', root=str(image_folder))

    def no_decoding(*args, **kwargs):
        raise AssertionError('an image was decoded')
    monkeypatch.setattr(Image, 'open', no_decoding)
    np.testing.assert_array_equal(dataset_labels(dataset), np.repeat(np.arange(4), 5))

    class TorchvisionLike(torch.utils.data.Dataset):
        targets = [2, 0, 1, 2]
    np.testing.assert_array_equal(dataset_labels(TorchvisionLike()), [2, 0, 1, 2])
    np.testing.assert_array_equal(dataset_labels(torch.utils.data.Subset(TorchvisionLike(), [3, 1])), [2, 0])
    np.testing.assert_array_equal(dataset_labels([1, 1, 0]), [1, 1, 0])


def test_class_with_a_single_image_is_named_in_the_error():
    labels = np.array([0, 0, 1, 2, 2, 3])
    with pytest.raises(ValueError, match=r'single training image.*: 1, 3\..*allow_singleton_classes'):
        SupplementedBatchSampler(labels, batch_size=2)
    with pytest.raises(ValueError, match='cat, dog'):
        SupplementedBatchSampler(labels, batch_size=2, class_names=['ant', 'cat', 'bee', 'dog'])


def test_allowed_singleton_classes_pass_with_one_sample():
    labels = np.array([0, 0, 1, 2, 2, 3])
    sampler = SupplementedBatchSampler(labels, batch_size=6, allow_singleton_classes=True, drop_last=False)
    (batch,) = epoch_batches(sampler)
    assert sorted(np.bincount(labels[batch]).tolist()) == [1, 1, 2, 2]


def test_batch_size_below_two_is_rejected():
    with pytest.raises(ValueError, match='batch_size=1.*2 or more'):
        SupplementedBatchSampler([0, 0, 1, 1], batch_size=1)


def test_labels_outside_num_classes_are_rejected():
    with pytest.raises(ValueError, match=r'Labels \[5\] are outside \[0, 3\).*num_classes=6'):
        SupplementedBatchSampler([0, 0, 5, 5], batch_size=2, num_classes=3)
    with pytest.raises(ValueError, match=r'Labels \[-1\]'):
        SupplementedBatchSampler([0, 0, -1, -1], batch_size=2)


# ---------------------------------------------------------------------------------------------------------------
# one batch shape: fixed-size supplemented batches, paired batches
# ---------------------------------------------------------------------------------------------------------------

def cifar100_like_labels(seed=0):
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(100), 50))


def test_fixed_size_batches_all_have_the_same_size_and_two_images_per_class():
    labels = cifar100_like_labels()
    sampler = SupplementedBatchSampler(labels, batch_size=32, seed=0, fixed_size=48)
    batches = epoch_batches(sampler)
    assert len(batches) == 5000 // 32 and {len(b) for b in batches} == {48}
    for batch in batches:
        counts = np.bincount(labels[batch])
        assert counts[counts > 0].min() >= 2


def test_suggested_fixed_size_rarely_leaves_a_primary_out():
    labels = cifar100_like_labels()
    sampler = SupplementedBatchSampler(labels, batch_size=32, seed=0)
    size = sampler.suggest_fixed_size()
    assert size % 8 == 0 and 32 < size <= 64
    fixed = SupplementedBatchSampler(labels, batch_size=32, seed=0, fixed_size=size)
    plain = SupplementedBatchSampler(labels, batch_size=32, seed=0, supplement=False)
    kept = sum(len(set(p.tolist()) & set(f.tolist())) for p, f in zip(epoch_batches(plain), epoch_batches(fixed)))
    assert kept >= 0.98 * 32 * len(epoch_batches(plain))


def paired(labels, batch_size=32, **kw):
    from timm_synermix.method.sampler import PairedBatchSampler
    return PairedBatchSampler(labels, batch_size=batch_size, **kw)


def test_paired_batches_keep_the_batch_size_with_two_distinct_images_per_class():
    labels = cifar100_like_labels()
    sampler = paired(labels, seed=1)
    batches = epoch_batches(sampler)
    assert {len(b) for b in batches} == {32}
    for batch in batches:
        classes, counts = np.unique(labels[batch], return_counts=True)
        assert (counts % 2 == 0).all()
        for c in classes:   # each class's images in the batch: at least two distinct ones
            assert len(set(batch[labels[batch] == c].tolist())) >= 2


def test_paired_epoch_shows_every_image_once_and_borrows_one_per_odd_class():
    labels = np.repeat(np.arange(7), [5, 4, 3, 6, 2, 9, 3])   # odd classes: 0, 2, 5, 6
    sampler = paired(labels, batch_size=4, seed=2, drop_last=False)
    seen = np.concatenate(epoch_batches(sampler))
    assert set(seen.tolist()) == set(range(labels.size))
    assert seen.size == labels.size + 4
    extra = np.bincount(labels[seen], minlength=7) - np.bincount(labels, minlength=7)
    assert extra.tolist() == [1, 0, 1, 0, 0, 1, 1]


def test_paired_batches_are_deterministic_and_resume_mid_epoch():
    labels = cifar100_like_labels()
    a, b = paired(labels, seed=3), paired(labels, seed=3)
    full = epoch_batches(a, epoch=2)
    assert all(np.array_equal(x, y) for x, y in zip(full, epoch_batches(b, epoch=2)))
    assert not np.array_equal(full[0], epoch_batches(a, epoch=3)[0])
    resumed = paired(labels, seed=3)
    resumed.load_state_dict({'seed': 3, 'epoch': 2, 'start_batch': 7})
    rest = [np.asarray(x) for x in resumed]
    assert len(rest) == len(full) - 7 and all(np.array_equal(x, y) for x, y in zip(rest, full[7:]))


@pytest.mark.parametrize('drop_last', [True, False])
def test_paired_ranks_yield_equal_batch_counts_and_disjoint_pairs(drop_last):
    labels = cifar100_like_labels()[:4999]
    ranks = [paired(labels, seed=0, num_replicas=3, rank=r, drop_last=drop_last) for r in range(3)]
    batches = [epoch_batches(s) for s in ranks]
    assert len({len(b) for b in batches}) == 1
    if drop_last:
        flat = [set(np.concatenate(b).tolist()) for b in batches]
        borrowed = 50   # at most one borrowed image per odd class can repeat another rank's image
        assert len(flat[0] & flat[1]) + len(flat[1] & flat[2]) + len(flat[0] & flat[2]) <= borrowed


def test_paired_batch_size_must_be_even():
    with pytest.raises(ValueError, match='batch_size=31: paired batches'):
        paired(cifar100_like_labels(), batch_size=31)


def test_repeated_images_count_once_so_each_class_still_gets_two_distinct_images():
    labels = balanced_labels(num_classes=10, per_class=6)
    sampler = SupplementedBatchSampler(labels, batch_size=12, seed=0, num_repeats=3)
    batches = epoch_batches(sampler)
    assert sum(len(b) for b in batches) > 12 * len(batches)   # supplements were needed: repeats did not count
    for batch in batches:
        distinct = np.unique(batch)
        assert np.bincount(labels[distinct], minlength=10)[np.unique(labels[batch])].min() >= 2
        assert np.bincount(batch).max() == 3                  # each primary shows up 3 times


def test_repeated_augmentation_keeps_the_epoch_length_and_shows_a_third_of_the_images_three_times():
    labels = balanced_labels(num_classes=10, per_class=6)
    plain = SupplementedBatchSampler(labels, batch_size=12, seed=0, supplement=False, num_repeats=3)
    batches = epoch_batches(plain)
    counts = np.bincount(np.concatenate(batches), minlength=labels.size)
    assert len(batches) == 60 // 12 and sorted(set(counts.tolist())) == [0, 3] and (counts == 3).sum() == 20


def test_repeats_have_no_meaning_for_paired_or_fixed_size_batches():
    from timm_synermix import PairedBatchSampler
    with pytest.raises(ValueError, match='num_repeats=3 with paired'):
        PairedBatchSampler(balanced_labels(), batch_size=8, num_repeats=3)
    with pytest.raises(ValueError, match='num_repeats=3'):
        SupplementedBatchSampler(balanced_labels(), batch_size=8, fixed_size=16, num_repeats=3)


def test_a_fractional_repeat_count_repeats_some_images_one_time_fewer():
    labels = balanced_labels(num_classes=10, per_class=6)
    sampler = SupplementedBatchSampler(labels, batch_size=12, seed=0, supplement=False, num_repeats=2.5)
    counts = np.bincount(np.concatenate(epoch_batches(sampler)), minlength=labels.size)
    assert set(counts[counts > 0].tolist()) <= {2, 3} and counts.sum() == 60


# --- paired batches with distinct classes (--batch-composition paired-distinct) -------------------------------

def distinct(labels, **kw):
    return paired(labels, batch_size=kw.pop('batch_size', 32), distinct_classes=True, **kw)


def test_paired_distinct_batches_hold_half_the_batch_in_different_classes_and_no_image_twice():
    labels = np.repeat(np.arange(62), 7)   # odd counts: each class borrows one image
    for batch in epoch_batches(distinct(labels, seed=1), epoch=1):
        classes, counts = np.unique(labels[batch], return_counts=True)
        assert len(batch) == 32 and len(set(batch.tolist())) == 32
        assert len(classes) == 16 and (counts == 2).all()


def test_paired_distinct_epoch_shows_each_image_at_most_once_plus_borrowed_ones():
    labels = np.repeat(np.arange(62), 8)   # 248 pairs, 15 batches of 16 pairs: 8 pairs left out this epoch
    seen = np.concatenate(epoch_batches(distinct(labels, seed=0)))
    assert len(seen) == 15 * 32 and len(set(seen.tolist())) == 15 * 32


def test_paired_distinct_batches_resume_mid_epoch_and_ranks_stay_disjoint():
    labels = cifar100_like_labels()
    full = epoch_batches(distinct(labels, seed=3), epoch=2)
    resumed = distinct(labels, seed=3)
    resumed.load_state_dict({'seed': 3, 'epoch': 2, 'start_batch': 5})
    assert all(np.array_equal(x, y) for x, y in zip(list(resumed), full[5:]))
    ranks = [epoch_batches(distinct(labels, seed=0, num_replicas=2, rank=r)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])
    assert all(len(np.unique(labels[b])) == 16 for b in ranks[0] + ranks[1])
    overlap = set(np.concatenate(ranks[0]).tolist()) & set(np.concatenate(ranks[1]).tolist())
    assert len(overlap) <= 50   # only borrowed images of odd classes can repeat across ranks


def test_paired_distinct_needs_enough_classes_for_a_batch():
    with pytest.raises(ValueError, match='distinct_classes'):
        distinct(np.repeat(np.arange(10), 8), batch_size=32)


# --- supplementation every k-th batch (the intra term every k-th step) -------------------------------------------

def test_supplement_every_k_supplements_the_batches_of_global_index_divisible_by_k():
    labels = cifar100_like_labels()
    sampler = SupplementedBatchSampler(labels, 32, seed=0, supplement_every=3)
    for epoch in range(2):
        for b, batch in enumerate(epoch_batches(sampler, epoch)):
            if (epoch * sampler.num_batches + b) % 3:
                assert len(batch) == 32
            else:
                _, counts = np.unique(labels[batch], return_counts=True)
                assert len(batch) > 32 and counts.min() >= 2


def test_paired_distinct_batches_in_a_row_do_not_repeat_one_set_of_classes():
    labels = np.repeat(np.arange(124), 6)   # 3 pairs per class: unshuffled, 3 batches in a row share their classes
    batches = epoch_batches(distinct(labels, seed=0))
    shared = [len(set(labels[a]) & set(labels[b])) for a, b in zip(batches, batches[1:])]
    assert np.mean(shared) < 4   # of 16 classes; random batches share about 16 * 16 / 124 ≈ 2
