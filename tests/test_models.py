"""CIFAR stem and fine-tuning from a local weights file (--pretrained-path)."""
import pytest
import timm
import torch
from safetensors.torch import save_file

from timm_synermix.trainer.errors import InputError
from timm_synermix.trainer.models import apply_cifar_stem, create_train_model, mismatched_keys


def test_cifar_stem():
    model = apply_cifar_stem(timm.create_model('resnet18', num_classes=10))
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape[-1] == 4  # 32 / 8: no stem downsampling
    with pytest.raises(InputError, match='--cifar-stem'):
        apply_cifar_stem(timm.create_model('test_resnet'))  # deep stem: not a single conv1


def _weights(tmp_path, name, model):
    path = str(tmp_path / name)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path


@pytest.mark.parametrize('cifar_stem', [False, True])
def test_pretrained_path_resets_head_keeps_backbone(tmp_path, cifar_stem):
    src = timm.create_model('resnet18', num_classes=3)
    if cifar_stem:
        apply_cifar_stem(src)
    path = _weights(tmp_path, 'src.safetensors', src)
    model = create_train_model('resnet18', num_classes=5, pretrained_path=path, cifar_stem=cifar_stem)
    assert model.get_classifier().out_features == 5
    sd, ref = model.state_dict(), src.state_dict()
    assert all(torch.equal(sd[k], ref[k]) for k in ref if not k.startswith('fc.'))
    same = create_train_model('resnet18', num_classes=3, pretrained_path=path, cifar_stem=cifar_stem, keep_head=True)
    assert torch.equal(same.state_dict()['fc.weight'], ref['fc.weight'])  # kept on request: same head size


def test_pretrained_path_that_does_not_fit_names_keys(tmp_path):
    path = _weights(tmp_path, 'other.safetensors', timm.create_model('resnet34', num_classes=3))
    for cifar_stem in (False, True):
        with pytest.raises(InputError) as e:
            create_train_model('resnet18', num_classes=3, pretrained_path=path, cifar_stem=cifar_stem)
        msg = str(e.value)
        assert 'mismatched keys' in msg and 'other.safetensors' in msg and '\n' not in msg, msg
    with pytest.raises(InputError, match='does not exist'):
        create_train_model('resnet18', num_classes=3, pretrained_path=str(tmp_path / 'none.pth'))


def test_mismatched_keys():
    model = torch.nn.Linear(3, 2)
    assert mismatched_keys(model, {'weight': torch.zeros(2, 3), 'bias': torch.zeros(2)}) == []
    bad = mismatched_keys(model, {'weight': torch.zeros(4, 3), 'extra': torch.zeros(1)})
    assert bad == ['weight: file (4, 3) vs model (2, 3)', 'bias: missing in file', 'extra: not in model']
    assert mismatched_keys(model, {'weight': torch.zeros(4, 3)}, ignore=('weight', 'bias')) == []


@pytest.mark.parametrize('cifar_stem', [False, True])
def test_a_same_size_head_is_reset_as_timms_train_py_resets_it_unless_kept(tmp_path, cifar_stem):
    """timm's train.py loads --pretrained-path with num_classes=-1 in the overlay, so the file's head never loads,
    even when its class count matches (another task's classes, same size)."""
    src = timm.create_model('test_resnet', num_classes=3)
    if cifar_stem:
        src = timm.create_model('resnet18', num_classes=3)
        apply_cifar_stem(src)
    path = _weights(tmp_path, 'w.safetensors', src)
    name = 'resnet18' if cifar_stem else 'test_resnet'
    torch.manual_seed(1)
    ours = create_train_model(name, 3, pretrained_path=path, cifar_stem=cifar_stem)
    assert not torch.equal(ours.get_classifier().weight, src.get_classifier().weight)
    assert torch.equal(ours.layer1[0].conv1.weight, src.layer1[0].conv1.weight)
    if not cifar_stem:
        torch.manual_seed(1)
        timms = timm.create_model(name, num_classes=3, pretrained=True,
                                  pretrained_cfg_overlay=dict(file=path, num_classes=-1))
        assert all(torch.equal(v, timms.state_dict()[k]) for k, v in ours.state_dict().items())
    kept = create_train_model(name, 3, pretrained_path=path, cifar_stem=cifar_stem, keep_head=True)
    assert torch.equal(kept.get_classifier().weight, src.get_classifier().weight)
