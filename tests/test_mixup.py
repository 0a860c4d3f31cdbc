import numpy as np
import pytest
import torch
from timm.data import Mixup as TimmMixup
from timm.data.mixup import mixup_target, rand_bbox
from torch.overrides import TorchFunctionMode

from timm_synermix import Mixup

SETTINGS = [
    dict(mixup_alpha=1.0, cutmix_alpha=0.0, mode='elem'),
    dict(mixup_alpha=0.8, cutmix_alpha=1.0, mode='batch', switch_prob=0.5),
    dict(mixup_alpha=0.8, cutmix_alpha=1.0, mode='pair', label_smoothing=0.1),
    dict(mixup_alpha=0.0, cutmix_alpha=1.0, mode='elem', prob=0.7),
    dict(mixup_alpha=1.0, cutmix_alpha=0.0, cutmix_minmax=[0.2, 0.8], mode='batch'),
]

# The per-sample modes draw differently for each of these: MixUp and CutMix alone and together,
# minmax boxes (drawn one at a time), uncorrected λ, and unmixed samples (prob < 1) with tiny λ.
PER_SAMPLE = {
    'mixup': dict(mixup_alpha=1.0, cutmix_alpha=0.0),
    'cutmix': dict(mixup_alpha=0.0, cutmix_alpha=1.0),
    'both': dict(mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=0.5),
    'minmax': dict(mixup_alpha=0.8, cutmix_alpha=1.0, cutmix_minmax=[0.2, 0.8]),
    'uncorrected': dict(mixup_alpha=0.8, cutmix_alpha=1.0, correct_lam=False),
    'sparse': dict(mixup_alpha=0.2, cutmix_alpha=0.2, prob=0.6, label_smoothing=0.1),
}
NUM_CLASSES = 10


def make_batch(n, dtype=torch.float32):
    """Non-square images, so a box's rows and columns cannot be swapped unnoticed, with signed
    zeros, which survive only if unmixed pixels are selected rather than multiplied by 1."""
    x = torch.randn(n, 3, 12, 20)
    x[:, :, 0, :2] = -0.0
    return x.to(dtype), torch.randint(0, NUM_CLASSES, (n,))


def timm_with_lam(mode, setting, x, target):
    """timm's Mixup on x in place; its __call__ does not return λ, so catch it on the way."""
    mixup = TimmMixup(num_classes=NUM_CLASSES, mode=mode, **setting)
    mix, caught = getattr(mixup, f'_mix_{mode}'), []
    setattr(mixup, f'_mix_{mode}', lambda images: caught.append(mix(images)) or caught[0])
    _, soft_target = mixup(x, target)
    return caught[0], soft_target


def assert_identical(actual, expected):
    """Bit for bit (torch.equal would take -0.0 for 0.0)."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[actual.element_size()]
    assert torch.equal(actual.view(bits), expected.view(bits))


def assert_same_numpy_state(actual, expected):
    assert actual[0] == expected[0] and np.array_equal(actual[1], expected[1]) and actual[2:] == expected[2:]


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


@pytest.mark.parametrize('name', PER_SAMPLE)
@pytest.mark.parametrize('mode', ['elem', 'pair'])
def test_elem_and_pair_modes_equal_timm_for_the_same_draws(mode, name):
    x, target = make_batch(16)
    for seed in range(3):
        np.random.seed(seed)
        torch.manual_seed(seed)
        expected_x = x.clone()
        expected_lam, expected_target = timm_with_lam(mode, PER_SAMPLE[name], expected_x, target)
        expected_state = np.random.get_state()
        np.random.seed(seed)
        torch.manual_seed(seed)
        mixup = Mixup(num_classes=NUM_CLASSES, mode=mode, **PER_SAMPLE[name])
        mixed_x, soft_target = mixup(x.clone(), target)
        assert_identical(mixed_x, expected_x)
        assert_identical(mixup.lam, expected_lam)
        assert_identical(soft_target, expected_target)
        assert_same_numpy_state(np.random.get_state(), expected_state)   # later draws stay in step


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize('mode', ['elem', 'pair'])
def test_half_and_double_images_equal_timm(mode, dtype):
    # timm multiplies by numpy scalars, which torch keeps at float32 or more for every image dtype.
    x, target = make_batch(16, dtype)
    for name in ('both', 'sparse'):
        np.random.seed(0)
        expected_x = x.clone()
        expected_lam, expected_target = timm_with_lam(mode, PER_SAMPLE[name], expected_x, target)
        np.random.seed(0)
        mixup = Mixup(num_classes=NUM_CLASSES, mode=mode, **PER_SAMPLE[name])
        mixed_x, soft_target = mixup(x.clone(), target)
        assert_identical(mixed_x, expected_x)
        assert_identical(mixup.lam, expected_lam)
        assert_identical(soft_target, expected_target)


@pytest.mark.parametrize('name', PER_SAMPLE)
def test_odd_elem_batch_equals_timms_per_sample_loop(name):
    # timm's __call__ refuses odd batches, but its loop (j = N-1-i) takes them: the middle sample
    # mixes with itself. That loop is the reference.
    x, target = make_batch(9)
    np.random.seed(1)
    expected_x = x.clone()
    reference = TimmMixup(num_classes=NUM_CLASSES, mode='elem', **PER_SAMPLE[name])
    expected_lam = reference._mix_elem(expected_x)
    expected_target = mixup_target(target, NUM_CLASSES, expected_lam, reference.label_smoothing)
    expected_state = np.random.get_state()
    np.random.seed(1)
    mixup = Mixup(num_classes=NUM_CLASSES, mode='elem', **PER_SAMPLE[name])
    mixed_x, soft_target = mixup(x.clone(), target)
    assert_identical(mixed_x, expected_x)
    assert_identical(mixup.lam, expected_lam)
    assert_identical(soft_target, expected_target)
    assert_same_numpy_state(np.random.get_state(), expected_state)


@pytest.mark.parametrize('name', PER_SAMPLE)
def test_odd_pair_batch_mixes_the_others_like_timm_and_leaves_the_middle_alone(name):
    x, target = make_batch(9)
    around = torch.cat([x[:4], x[5:]])
    np.random.seed(3)
    lam_around, target_around = timm_with_lam('pair', PER_SAMPLE[name], around, torch.cat([target[:4], target[5:]]))
    expected_state = np.random.get_state()
    np.random.seed(3)
    mixup = Mixup(num_classes=NUM_CLASSES, mode='pair', **PER_SAMPLE[name])
    mixed_x, soft_target = mixup(x.clone(), target)
    assert_identical(torch.cat([mixed_x[:4], mixed_x[5:]]), around)
    assert_identical(mixed_x[4], x[4])
    assert_identical(mixup.lam, torch.cat([lam_around[:4], torch.ones(1, 1), lam_around[4:]]))
    assert_identical(torch.cat([soft_target[:4], soft_target[5:]]), target_around)
    assert_identical(soft_target[4], mixup_target(target[4:5], NUM_CLASSES, 1., mixup.label_smoothing)[0])
    assert_same_numpy_state(np.random.get_state(), expected_state)


@pytest.mark.parametrize('mode', ['elem', 'pair'])
def test_disabled_or_never_applied_mixup_leaves_the_batch_untouched_like_timm(mode):
    x, target = make_batch(6)
    for switch_off in ({'prob': 0.0}, {'mixup_enabled': False}):
        reference = TimmMixup(num_classes=NUM_CLASSES, mode=mode, **PER_SAMPLE['both'])
        mixup = Mixup(num_classes=NUM_CLASSES, mode=mode, **PER_SAMPLE['both'])
        for mixer in (reference, mixup):
            mixer.mix_prob = switch_off.get('prob', 1.0)
            mixer.mixup_enabled = switch_off.get('mixup_enabled', True)
        np.random.seed(0)
        _, expected_target = reference(x.clone(), target)
        expected_state = np.random.get_state()
        np.random.seed(0)
        mixed_x, soft_target = mixup(x.clone(), target)
        assert_identical(mixed_x, x)
        assert_identical(mixup.lam, torch.ones(6, 1))
        assert_identical(soft_target, expected_target)
        assert_same_numpy_state(np.random.get_state(), expected_state)


@pytest.mark.parametrize('shape', [(12, 20), (32, 32), (1, 7), (5, 1)])
def test_batched_box_draws_are_timms_per_sample_draws(shape):
    # One randint call with bounds H, W, H, W, ... must give what timm's cy, cx calls give box by
    # box, rejection sampling included (H = 12 rejects often, a 1-pixel side draws nothing).
    lam = np.random.beta(0.5, 0.5, size=200).astype(np.float32)
    np.random.seed(7)
    expected = np.array([rand_bbox(shape, value) for value in lam])
    expected_state = np.random.get_state()
    np.random.seed(7)
    np.testing.assert_array_equal(Mixup._rand_bboxes(*shape, lam), expected)
    assert_same_numpy_state(np.random.get_state(), expected_state)


class CountTorchCalls(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def count_torch_calls(mixup, batch_size):
    x, target = make_batch(batch_size)
    np.random.seed(0)
    with CountTorchCalls() as counter:
        mixup(x, target)
    return counter.calls


@pytest.mark.parametrize('name', ['mixup', 'cutmix'])
@pytest.mark.parametrize('mode', ['elem', 'pair'])
def test_elem_and_pair_modes_make_the_same_tensor_calls_for_any_batch_size(mode, name):
    # Counts Python-level torch calls, where a per-sample loop would show; the counter does see
    # timm's loop grow with the batch.
    reference = TimmMixup(num_classes=NUM_CLASSES, mode=mode, **PER_SAMPLE[name])
    assert count_torch_calls(reference, 64) > count_torch_calls(reference, 4)
    mixup = Mixup(num_classes=NUM_CLASSES, mode=mode, **PER_SAMPLE[name])
    assert count_torch_calls(mixup, 64) == count_torch_calls(mixup, 4) == count_torch_calls(mixup, 5)


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


def test_mixup_exposes_lambda_and_pairing():
    x, target = torch.randn(6, 3, 4, 4), torch.tensor([0, 1, 2, 3, 4, 5])
    mixup = Mixup(mixup_alpha=1.0, mode='elem', label_smoothing=0.0, num_classes=6)
    _, soft_target = mixup(x.clone(), target)
    lam = mixup.lam.squeeze(1)
    assert Mixup.pair_index(6).tolist() == [5, 4, 3, 2, 1, 0]
    torch.testing.assert_close(soft_target[torch.arange(6), target], lam)
    torch.testing.assert_close(soft_target[torch.arange(6), target.flip(0)], 1 - lam)
