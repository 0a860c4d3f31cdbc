import collections

import numpy as np
import pytest
import timm
import torch

from timm_synermix import ManifoldMixup, Mixup, default_manifold_layers


@pytest.fixture(scope='module')
def resnet():
    return timm.create_model('resnet10t', num_classes=4).eval()


@pytest.mark.parametrize('name, expected', [
    ('resnet18', ('input', 'layer1', 'layer2')),
    ('mobilenetv3_large_100', ('input', 'bn1', 'blocks.0', 'blocks.1')),
    ('swin_tiny_patch4_window7_224', ('input', 'patch_embed.norm', 'layers.0.blocks.1', 'layers.1.blocks.1')),
])
def test_default_layers_follow_the_spec_for_resnet_mobilenetv3_swin(name, expected):
    with torch.device('meta'):
        model = timm.create_model(name)
    assert default_manifold_layers(model) == expected
    modules = dict(model.named_modules())
    assert all(layer in modules for layer in expected if layer != 'input')
    ManifoldMixup(model, num_classes=1000)


def test_hidden_state_is_mixed_at_the_drawn_layer(resnet):
    x, target = torch.randn(5, 3, 32, 32), torch.arange(5) % 4
    captured = {}
    manifold = ManifoldMixup(resnet, layers=['layer1'], mixup_alpha=1.0, mode='elem', num_classes=4)
    with torch.no_grad():
        clean = resnet.layer1(resnet.maxpool(resnet.act1(resnet.bn1(resnet.conv1(x)))))
    handle = resnet.layer1.register_forward_hook(lambda m, i, o: captured.setdefault('mixed', o))
    with torch.no_grad():
        same_x, soft_target = manifold(x, target)
        resnet(same_x)
    handle.remove()
    manifold.remove()
    assert same_x is x
    lam = manifold.lam.view(-1, 1, 1, 1)
    torch.testing.assert_close(captured['mixed'], lam * clean + (1 - lam) * clean.flip(0))
    torch.testing.assert_close(soft_target.sum(1), torch.ones(5))


def test_hook_mixes_only_the_next_forward(resnet):
    x, target = torch.randn(4, 3, 32, 32), torch.arange(4)
    manifold = ManifoldMixup(resnet, layers=['layer2'], num_classes=4)
    with torch.no_grad():
        clean = resnet(x)
        manifold(x, target)
        mixed = resnet(x)
        after = resnet(x)
    manifold.remove()
    assert not torch.allclose(mixed, clean)
    torch.testing.assert_close(after, clean)


@pytest.mark.parametrize('mode', ['elem', 'pair', 'batch'])
def test_input_only_manifold_mixup_equals_mixup(resnet, mode):
    x, target = torch.randn(6, 3, 8, 8), torch.randint(0, 4, (6,))
    np.random.seed(7)
    expected_x, expected_target = Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, mode=mode, label_smoothing=0.1,
                                        num_classes=4)(x.clone(), target)
    np.random.seed(7)
    manifold = ManifoldMixup(resnet, layers=['input'], mixup_alpha=1.0, mode=mode, label_smoothing=0.1, num_classes=4)
    mixed_x, soft_target = manifold(x.clone(), target)
    torch.testing.assert_close(mixed_x, expected_x)
    torch.testing.assert_close(soft_target, expected_target)


def test_layer_is_drawn_once_per_batch_uniformly_from_s(resnet):
    manifold = ManifoldMixup(resnet, num_classes=4)
    x, target = torch.randn(2, 3, 8, 8), torch.arange(2)
    drawn = collections.Counter()
    for _ in range(600):
        manifold(x, target)
        drawn[manifold.layer] += 1
        manifold._armed = None
    manifold.remove()
    assert set(drawn) == {'input', 'layer1', 'layer2'}
    assert all(150 < count < 250 for count in drawn.values())


def test_unknown_layer_name_is_rejected_with_a_suggestion(resnet):
    with pytest.raises(ValueError, match='"layr2" is not a module of ResNet. Did you mean layer2'):
        ManifoldMixup(resnet, layers=['input', 'layr2'], num_classes=4)


def test_model_without_defaults_needs_layer_names():
    model = timm.create_model('test_vit', num_classes=3, img_size=32)
    with pytest.raises(ValueError, match=r'VisionTransformer has no default Manifold MixUp layers.*layers=\[...\]'):
        ManifoldMixup(model, num_classes=3)
    manifold = ManifoldMixup(model, layers=['blocks.0'], num_classes=3)
    x, soft = manifold(torch.randn(3, 3, 32, 32), torch.arange(3))
    model(x)
    manifold.check_applied()


def test_layer_that_never_runs_is_reported(resnet):
    manifold = ManifoldMixup(resnet, layers=['layer1'], num_classes=4)
    manifold(torch.randn(2, 3, 8, 8), torch.arange(2))
    with pytest.raises(RuntimeError, match='"layer1" did not run'):
        manifold.check_applied()
