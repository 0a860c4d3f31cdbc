import numpy as np
import pytest
import torch
from timm.data import create_dataset, create_loader, create_transform

from timm_synermix import SupplementedBatchSampler, TwoViewDataset, TwoViews, create_synermix_loader
from timm_synermix.method.views import create_original_transform

DATA_CONFIG = dict(input_size=(3, 32, 32), interpolation='bilinear', mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                   crop_pct=0.875, crop_mode='center')


class CountingDataset(torch.utils.data.Dataset):
    def __init__(self, dataset):
        self.dataset, self.calls = dataset, 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.calls += 1
        return self.dataset[index]


def test_two_view_dataset_decodes_each_image_once(image_folder):
    base = CountingDataset(create_dataset('', root=str(image_folder)))
    views = TwoViewDataset(base, create_transform(32, is_training=True), create_original_transform(DATA_CONFIG))
    (sample, target) = views[7]
    assert base.calls == 1
    assert isinstance(sample, TwoViews) and target == 1
    assert sample.original.shape == sample.augmented.shape == (3, 32, 32)


def test_original_view_is_the_models_eval_transform(image_folder):
    dataset = create_dataset('', root=str(image_folder))
    image, _ = dataset[3]
    eval_transform = create_original_transform(DATA_CONFIG)
    views = TwoViewDataset(create_dataset('', root=str(image_folder)), create_transform(32, is_training=True),
                           eval_transform)
    torch.testing.assert_close(views[3][0].original, eval_transform(image))
    first, second = views[3][0].original, views[3][0].original
    torch.testing.assert_close(first, second)


@pytest.mark.parametrize('use_prefetcher', [False, True])
def test_works_with_timms_create_loader_which_assigns_the_transform(image_folder, use_prefetcher):
    eval_transform = create_original_transform(DATA_CONFIG, use_prefetcher=use_prefetcher)
    views = TwoViewDataset(create_dataset('', root=str(image_folder)), original_transform=eval_transform)
    loader = create_loader(views, input_size=(3, 32, 32), batch_size=4, is_training=True,
                           use_prefetcher=use_prefetcher, device=torch.device('cpu'), num_workers=0,
                           mean=DATA_CONFIG['mean'], std=DATA_CONFIG['std'], re_prob=1.0, re_split=True)
    assert views.transform is not None
    batch, target = next(iter(loader))
    if use_prefetcher:   # fast_collate stacks [originals; augmented] and repeats the targets
        assert batch.shape == (8, 3, 32, 32) and target.shape == (8,)
        torch.testing.assert_close(target[:4], target[4:])
        original, augmented = batch[:4], batch[4:]
    else:
        original, augmented = batch.original, batch.augmented
    # 'const' random erasing (re_prob=1) writes exact zeros: on every augmented image, on no original.
    assert augmented.eq(0).float().mean() > 0.05
    assert original.eq(0).float().mean() < 0.005


def load_epoch(image_folder, use_prefetcher, re_prob=0.0, num_workers=0, **kwargs):
    dataset = create_dataset('', root=str(image_folder))
    sampler = SupplementedBatchSampler(dataset, batch_size=4, seed=0)
    loader = create_synermix_loader(
        dataset, (3, 32, 32), sampler, two_views=True, use_prefetcher=use_prefetcher, device=torch.device('cpu'),
        num_workers=num_workers, mean=DATA_CONFIG['mean'], std=DATA_CONFIG['std'], re_prob=re_prob,
        crop_pct=DATA_CONFIG['crop_pct'], **kwargs)
    return [(views, target) for views, target in loader]


@pytest.mark.parametrize('use_prefetcher', [False, True])
def test_loader_yields_both_views_with_prefetcher_on_and_off(image_folder, use_prefetcher):
    batches = load_epoch(image_folder, use_prefetcher)
    assert len(batches) == 5
    for views, target in batches:
        assert isinstance(views, TwoViews)
        assert views.original.shape == views.augmented.shape == (len(target), 3, 32, 32)
        assert views.original.dtype == torch.float32
        counts = np.bincount(target.numpy())
        assert counts[counts > 0].min() >= 2


def test_prefetcher_and_plain_loader_give_the_same_originals(image_folder):
    plain = load_epoch(image_folder, use_prefetcher=False)
    prefetched = load_epoch(image_folder, use_prefetcher=True)
    for (a, ta), (b, tb) in zip(plain, prefetched):
        torch.testing.assert_close(ta, tb)
        # uint8 rounding under the prefetcher vs float ToTensor: one grey level over std 0.25.
        torch.testing.assert_close(a.original, b.original, atol=1 / 255 / 0.25 + 1e-5, rtol=0)


@pytest.mark.parametrize('use_prefetcher', [False, True])
def test_random_erasing_never_touches_the_originals(image_folder, use_prefetcher):
    clean = load_epoch(image_folder, use_prefetcher, re_prob=0.0)
    erased = load_epoch(image_folder, use_prefetcher, re_prob=1.0)
    for (a, _), (b, _) in zip(clean, erased):
        torch.testing.assert_close(a.original, b.original)

    def zero_fraction(batches, view):
        return torch.cat([getattr(v, view).flatten() for v, _ in batches]).eq(0).float().mean().item()
    # 'const' erasing writes exact zeros (in normalized space), which random pixels almost never hit.
    assert zero_fraction(erased, 'augmented') > 0.05 > 0.005 > zero_fraction(clean, 'augmented')
    assert zero_fraction(erased, 'original') < 0.005


def test_two_views_survive_a_subset_and_random_interpolation(image_folder):
    dataset = torch.utils.data.Subset(create_dataset('', root=str(image_folder)), list(range(12)))
    dataset.transform = None
    sampler = SupplementedBatchSampler([i // 3 for i in range(12)], batch_size=4, seed=0)
    loader = create_synermix_loader(dataset, (3, 32, 32), sampler, two_views=True, use_prefetcher=True,
                                    device=torch.device('cpu'), num_workers=0, interpolation='random')
    views, target = next(iter(loader))
    assert isinstance(views, TwoViews) and views.original.shape == (len(target), 3, 32, 32)


def test_loader_keeps_the_original_transform_of_a_two_view_dataset(image_folder):
    def marker_transform(image):
        return torch.full((3, 8, 8), 7.0)
    views = TwoViewDataset(create_dataset('', root=str(image_folder)), original_transform=marker_transform)
    sampler = SupplementedBatchSampler(views, batch_size=4, seed=0)
    loader = create_synermix_loader(views, (3, 32, 32), sampler, two_views=True, use_prefetcher=False,
                                    device=torch.device('cpu'), num_workers=0)
    batch, _ = next(iter(loader))
    assert torch.all(batch.original == 7.0)


@pytest.mark.parametrize('use_prefetcher', [False, True])
def test_augmix_splits_make_up_the_augmented_view_and_leave_the_originals_clean(image_folder, use_prefetcher):
    clean = load_epoch(image_folder, use_prefetcher)
    augmix = load_epoch(image_folder, use_prefetcher, re_prob=1.0, num_aug_splits=3, re_split=True,
                        auto_augment='augmix-m5-w4-d2')
    for (a, target_a), (b, target_b) in zip(clean, augmix):
        n = len(target_b)
        assert b.augmented.shape == (3 * n, 3, 32, 32) and torch.equal(target_a, target_b)
        torch.testing.assert_close(a.original, b.original)
    # With --resplit the first (clean) AugMix split is spared by random erasing, the other two are erased.
    zeros = [torch.cat([v.augmented[i * len(t):(i + 1) * len(t)].flatten() for v, t in augmix]).eq(0).float().mean()
             for i in range(3)]
    if use_prefetcher:  # without the prefetcher timm erases per image, where --resplit has no effect
        assert zeros[0] < 0.005 < 0.05 < min(zeros[1:])
