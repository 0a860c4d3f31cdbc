import numpy as np
import pytest
import torch
from timm.data import Mixup as TimmMixup

from timm_synermix import Mixup

SETTINGS = [
    dict(mixup_alpha=1.0, cutmix_alpha=0.0, mode='elem'),
    dict(mixup_alpha=0.8, cutmix_alpha=1.0, mode='batch', switch_prob=0.5),
    dict(mixup_alpha=0.8, cutmix_alpha=1.0, mode='pair', label_smoothing=0.1),
    dict(mixup_alpha=0.0, cutmix_alpha=1.0, mode='elem', prob=0.7),
    dict(mixup_alpha=1.0, cutmix_alpha=0.0, cutmix_minmax=[0.2, 0.8], mode='batch'),
]


@pytest.mark.parametrize('setting', SETTINGS)
def test_mixup_matches_timm_on_even_batch(setting):
    x, target = torch.randn(8, 3, 16, 16), torch.randint(0, 5, (8,))
    for seed in range(4):
        np.random.seed(seed)
        expected_x, expected_target = TimmMixup(num_classes=5, **setting)(x.clone(), target)
        np.random.seed(seed)
        mixed_x, soft_target = Mixup(num_classes=5, **setting)(x.clone(), target)
        torch.testing.assert_close(mixed_x, expected_x, rtol=0, atol=0)
        torch.testing.assert_close(soft_target, expected_target, rtol=0, atol=0)


@pytest.mark.parametrize('mode', ['elem', 'pair', 'batch'])
def test_mixup_accepts_odd_batches(mode):
    x, target = torch.randn(7, 3, 8, 8), torch.arange(7)
    mixup = Mixup(mixup_alpha=1.0, mode=mode, label_smoothing=0.0, num_classes=7)
    mixed, soft_target = mixup(x.clone(), target)
    assert mixed.shape == x.shape and soft_target.shape == (7, 7)
    torch.testing.assert_close(soft_target.sum(1), torch.ones(7))
    lam = torch.as_tensor(mixup.lam, dtype=torch.float32).reshape(-1, 1, 1, 1)
    partner = Mixup.pair_index(7)
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[partner])
    if mode == 'pair':   # the middle sample is its own partner and stays unmixed
        torch.testing.assert_close(mixed[3], x[3])
        assert soft_target[3, 3] == 1


def test_odd_pair_mode_mixes_others_like_timm_without_the_middle():
    x, target = torch.randn(9, 3, 8, 8), torch.randint(0, 4, (9,))
    np.random.seed(3)
    mixed, _ = Mixup(mixup_alpha=1.0, mode='pair', num_classes=4)(x.clone(), target)
    np.random.seed(3)
    around = torch.cat([x[:4], x[5:]])
    expected, _ = TimmMixup(mixup_alpha=1.0, mode='pair', num_classes=4)(around, torch.cat([target[:4], target[5:]]))
    torch.testing.assert_close(torch.cat([mixed[:4], mixed[5:]]), expected)


def test_mixup_exposes_lambda_and_pairing():
    x, target = torch.randn(6, 3, 4, 4), torch.tensor([0, 1, 2, 3, 4, 5])
    mixup = Mixup(mixup_alpha=1.0, mode='elem', label_smoothing=0.0, num_classes=6)
    _, soft_target = mixup(x.clone(), target)
    lam = mixup.lam.squeeze(1)
    assert Mixup.pair_index(6).tolist() == [5, 4, 3, 2, 1, 0]
    torch.testing.assert_close(soft_target[torch.arange(6), target], lam)
    torch.testing.assert_close(soft_target[torch.arange(6), target.flip(0)], 1 - lam)
