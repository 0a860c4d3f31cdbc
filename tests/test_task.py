import inspect

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.task import ClassificationTask

from timm_synermix import Mixup, PRESETS, SynerMixTask, TwoViews, create_synermix_task, synthesize_class_features

NUM_CLASSES = 4


def tiny_model(name='test_resnet', **kwargs):
    torch.manual_seed(0)
    return timm.create_model(name, num_classes=NUM_CLASSES, **kwargs)


def batch(size=7, image=32):
    generator = torch.Generator().manual_seed(1)
    original = torch.randn(size, 3, image, image, generator=generator)
    augmented = original.flip(-1) + 0.1 * torch.randn(size, 3, image, image, generator=generator)
    target = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 0, 1][:size])
    return original, augmented, target


def pre_logits(model, x):
    return model.forward_head(model.forward_features(x), pre_logits=True)


def test_loss_is_beta_weighted_sum_of_intra_and_inter():
    original, augmented, target = batch()
    task = SynerMixTask(tiny_model(), beta=0.3)
    out = task(TwoViews(original, augmented), target)
    assert set(out) == {'loss', 'output', 'loss_intra', 'loss_inter', 'with_intra', 'image_passes'}
    assert out['with_intra'] and out['image_passes'] == 14  # the augmented view and the originals, 7 each
    torch.testing.assert_close(out['loss'], 0.3 * out['loss_intra'] + 0.7 * out['loss_inter'])
    assert out['output'].shape == (7, NUM_CLASSES)


def test_intra_loss_is_ce_of_classifier_on_synthesized_original_features():
    original, augmented, target = batch()
    model = tiny_model()
    task = SynerMixTask(model, beta=0.5)
    torch.manual_seed(5)
    out = task(augmented.clone(), target, original=original)
    torch.manual_seed(5)
    pre_logits(model, augmented)   # same BatchNorm state sequence as the task: augmented pass first
    synthesized, labels = synthesize_class_features(pre_logits(model, original), target)
    expected = F.cross_entropy(model.get_classifier()(synthesized), labels)
    torch.testing.assert_close(out['loss_intra'], expected)
    torch.testing.assert_close(out['loss_inter'], F.cross_entropy(model(augmented), target), rtol=1e-4, atol=1e-4)


def test_with_a_linear_head_the_intra_loss_is_the_cross_entropy_of_mixed_clean_logits():
    """docs/method.md §6: W(Σ w_j f_j) + b = Σ w_j (W f_j + b) because Σ w_j = 1, so L_intra (the loss the test
    above pins for the task) is the cross-entropy of a convex mix of one class's clean logits, which by convexity
    is at most the mean of those logits' cross-entropies under the same weights."""
    original, _, target = batch()
    model = tiny_model()
    features = pre_logits(model, original)
    logits = model.get_classifier()(features)
    torch.manual_seed(3)
    synthesized, labels = synthesize_class_features(features, target)
    torch.manual_seed(3)
    weights, _ = synthesize_class_features(torch.eye(len(target)), target)   # row c: Eq. 1's w_j of class c
    torch.testing.assert_close(weights.sum(1), torch.ones(len(labels)))
    mixed_logits = weights @ logits
    torch.testing.assert_close(model.get_classifier()(synthesized), mixed_logits, rtol=1e-5, atol=1e-5)
    per_image = F.cross_entropy(logits, target, reduction='none')
    bound = weights @ per_image
    assert (F.cross_entropy(mixed_logits, labels, reduction='none') <= bound + 1e-6).all()


def test_the_clean_view_control_is_the_mean_cross_entropy_of_the_originals_at_the_same_cost():
    original, augmented, target = batch()
    model = tiny_model()
    task = SynerMixTask(model, beta=0.5, intra_mode='clean')
    out = task(augmented.clone(), target, original=original)
    pre_logits(model, augmented)
    expected = F.cross_entropy(model.get_classifier()(pre_logits(model, original)), target)
    torch.testing.assert_close(out['loss_intra'], expected)
    assert out['image_passes'] == 14
    with pytest.raises(ValueError, match='intra_mode'):
        SynerMixTask(model, intra_mode='mixed')


def test_the_task_counts_its_image_passes_per_step():
    original, augmented, target = batch()
    augment_only = SynerMixTask(tiny_model(), beta=0.5, source='augmented')
    assert augment_only(augmented, target)['image_passes'] == 7   # no extra pass
    every_other = SynerMixTask(tiny_model(), beta=0.5, intra_every=2)
    passes = [every_other(TwoViews(original, augmented), target)['image_passes'] for _ in range(3)]
    assert passes == [14, 7, 14]
    assert SynerMixTask(tiny_model(), beta=0.0)(augmented, target)['image_passes'] == 7
    # Counted by images, not pixels: originals at half the side are still 7 images through forward+backward.
    half = SynerMixTask(tiny_model(), beta=0.5, original_scale=0.5)
    assert half(TwoViews(original, augmented), target)['image_passes'] == 14


def test_beta_zero_is_plain_timm_training_without_originals_pass():
    original, augmented, target = batch()
    model = tiny_model()
    calls = []
    model.conv1.register_forward_hook(lambda m, i, o: calls.append('stem'))
    out = SynerMixTask(model, beta=0.0)(augmented, target)
    assert calls.count('stem') == 1
    reference = ClassificationTask(tiny_model())(augmented, target)
    torch.testing.assert_close(out['loss'], reference['loss'])
    assert out['loss_intra'].item() == 0


def test_gradients_reach_the_backbone_through_the_originals_pass():
    original, augmented, target = batch()
    model = tiny_model()
    task = SynerMixTask(model, beta=1.0)
    out = task(TwoViews(original, augmented), target)
    out['loss'].backward()
    first_conv = next(p for n, p in model.named_parameters() if p.ndim == 4)
    assert first_conv.grad.abs().sum() > 0
    torch.testing.assert_close(out['loss'], out['loss_intra'])


def test_originals_are_never_mixed():
    original, augmented, target = batch()
    model = tiny_model()
    seen = []
    model.conv1.register_forward_hook(lambda m, i, o: seen.append(i[0].detach().clone()))
    kept = original.clone()
    mixup = Mixup(mixup_alpha=1.0, mode='elem', label_smoothing=0.0, num_classes=NUM_CLASSES)
    SynerMixTask(model, beta=0.1, mixup=mixup)(TwoViews(original, augmented.clone()), target)
    assert len(seen) == 2
    torch.testing.assert_close(original, kept)
    torch.testing.assert_close(seen[1], kept)
    assert not torch.allclose(seen[0], augmented)


def test_augmented_source_mixes_the_augmented_features_in_one_pass():
    original, augmented, target = batch()
    model = tiny_model()
    stem_calls = []
    model.conv1.register_forward_hook(lambda m, i, o: stem_calls.append(1))
    torch.manual_seed(2)
    out = SynerMixTask(model, beta=0.4, source='augmented')(augmented, target)
    assert len(stem_calls) == 1
    torch.manual_seed(2)
    synthesized, labels = synthesize_class_features(pre_logits(model, augmented), target)
    torch.testing.assert_close(out['loss_intra'], F.cross_entropy(model.get_classifier()(synthesized), labels))


def test_p_synthesized_features_per_class_average_the_loss():
    original, augmented, target = batch()
    model = tiny_model()
    torch.manual_seed(3)
    out = SynerMixTask(model, beta=0.5, num_per_class=3)(TwoViews(original, augmented), target)
    torch.manual_seed(3)
    pre_logits(model, augmented)
    synthesized, labels = synthesize_class_features(pre_logits(model, original), target, num_per_class=3)
    assert synthesized.shape[0] == 12
    torch.testing.assert_close(out['loss_intra'], F.cross_entropy(model.get_classifier()(synthesized), labels))


@pytest.mark.parametrize('name', list(PRESETS))
def test_every_paper_method_is_expressible_and_trains(name):
    original, augmented, target = batch()
    model = tiny_model('resnet10t')
    task = create_synermix_task(model, name, beta=0.1 if PRESETS[name].intra else None, mixup_mode='elem',
                                label_smoothing=0.0)
    before = [p.detach().clone() for p in model.parameters()]
    out = task(TwoViews(original, augmented), target)
    out['loss'].backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert torch.isfinite(out['loss'])
    assert (out['loss_intra'] > 0) == PRESETS[name].intra
    assert sum((p - b).abs().sum() for p, b in zip(model.parameters(), before)) > 0


@pytest.mark.parametrize('name', timm.list_models('test_*'))
def test_synermix_task_trains_every_timm_test_model(name):
    model = tiny_model(name)
    if 'pre_logits' not in inspect.signature(model.forward_head).parameters:
        pytest.skip(f'{name} has no forward_head(pre_logits=True)')
    size = model.pretrained_cfg['input_size'][-1] if 'vit' in name or 'max' in name or 'coat' in name else 64
    original, augmented, target = batch(size=6, image=size)
    model.eval()
    with torch.no_grad():   # the task's logits path must equal the model's own head
        torch.testing.assert_close(model.get_classifier()(pre_logits(model, original)), model(original),
                                   rtol=1e-4, atol=1e-4)
    model.train()
    out = SynerMixTask(model, beta=0.2)(TwoViews(original, augmented), target)
    out['loss'].backward()
    assert torch.isfinite(out['loss']) and out['loss_intra'] > 0
    assert sum(p.grad.abs().sum() for p in model.parameters() if p.grad is not None) > 0


def test_intra_every_k_steps_skips_the_originals_pass_between():
    original, augmented, target = batch()
    model = tiny_model()
    stem_calls = []
    model.conv1.register_forward_hook(lambda m, i, o: stem_calls.append(1))
    task = SynerMixTask(model, beta=0.2, intra_every=3)
    losses = [task(TwoViews(original, augmented), target) for _ in range(6)]
    assert len(stem_calls) == 6 + 2
    assert [out['loss_intra'].item() > 0 for out in losses] == [True, False, False, True, False, False]
    torch.testing.assert_close(losses[1]['loss'], 0.8 * losses[1]['loss_inter'])
    assert task.get_task_state() == {'step': 6}
    task.load_task_state({'step': 2})
    assert task(TwoViews(original, augmented), target)['loss_intra'].item() == 0


def test_original_scale_shrinks_the_originals_pass():
    original, augmented, target = batch(image=64)
    model = tiny_model()
    sizes = []
    model.conv1.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[-1]))
    SynerMixTask(model, beta=0.2, original_scale=0.5)(TwoViews(original, augmented), target)
    assert sizes == [64, 32]


def test_eval_mode_loss_is_plain_cross_entropy():
    original, augmented, target = batch()
    model = tiny_model().eval()
    out = SynerMixTask(model, beta=0.3, mixup=Mixup(num_classes=NUM_CLASSES)).eval()(augmented, target)
    torch.testing.assert_close(out['loss'], F.cross_entropy(model(augmented), target))


@pytest.mark.parametrize('beta', [-0.1, 1.5])
def test_beta_outside_unit_interval_is_rejected(beta):
    with pytest.raises(ValueError, match=rf'beta={beta} is outside \[0, 1\]'):
        SynerMixTask(tiny_model(), beta=beta)


def test_model_without_pre_logits_is_rejected():
    class Plain(torch.nn.Module):
        def forward_head(self, x):
            return x
    with pytest.raises(ValueError, match=r'Plain has no forward_head\(x, pre_logits=True\)'):
        SynerMixTask(Plain(), beta=0.1)


def test_targets_outside_num_classes_are_rejected():
    original, augmented, _ = batch()
    with pytest.raises(ValueError, match=r'Target 9 is outside \[0, 4\).*num_classes=10'):
        SynerMixTask(tiny_model(), beta=0.1)(TwoViews(original, augmented), torch.tensor([0, 0, 1, 1, 9, 9, 2]))


def test_missing_originals_are_named():
    _, augmented, target = batch()
    with pytest.raises(ValueError, match='needs the unaugmented originals.*TwoViewDataset'):
        SynerMixTask(tiny_model(), beta=0.1)(augmented, target)


def _ddp_worker(rank, world_size, init_file, result_file, shards):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world_size)
    torch.manual_seed(0)
    model = timm.create_model('test_resnet', num_classes=NUM_CLASSES)
    task = SynerMixTask(model, beta=0.3).prepare_distributed()
    original, augmented, target = shards[rank]
    torch.manual_seed(100 + rank)
    task(TwoViews(original, augmented), target)['loss'].backward()
    if rank == 0:
        torch.save({n: p.grad for n, p in model.named_parameters()}, result_file)
    dist.destroy_process_group()


def test_ddp_gradients_match_a_single_process_run(tmp_path):
    original, augmented, target = batch(size=8)
    shards = [(original[:4], augmented[:4], target[:4]), (original[4:], augmented[4:], target[4:])]
    torch.multiprocessing.spawn(
        _ddp_worker, args=(2, str(tmp_path / 'init'), str(tmp_path / 'grads.pt'), shards), nprocs=2)
    ddp_grads = torch.load(tmp_path / 'grads.pt')

    model = tiny_model()
    task = SynerMixTask(model, beta=0.3)
    for rank, (o, a, t) in enumerate(shards):   # DDP averages the ranks' gradients
        torch.manual_seed(100 + rank)
        (task(TwoViews(o, a), t)['loss'] / 2).backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(ddp_grads[name], param.grad, rtol=1e-4, atol=1e-5)


def test_beta_one_with_intra_every_is_rejected():
    with pytest.raises(ValueError, match='beta=1 with intra_every > 1'):
        SynerMixTask(tiny_model(), beta=1.0, intra_every=2)


def test_downscaled_originals_leave_batchnorm_running_stats_alone():
    original, augmented, target = batch(image=64)
    reference = tiny_model()
    reference(augmented)   # train mode: one update of the running statistics, by the augmented pass only
    model = tiny_model()
    SynerMixTask(model, beta=0.2, original_scale=0.5)(TwoViews(original, augmented), target)
    running = {k: v for k, v in model.state_dict().items() if 'running' in k}
    assert running
    for key, value in running.items():
        torch.testing.assert_close(value, reference.state_dict()[key])
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize('name', ['test_vit', 'test_resnet'])
def test_joint_pass_gives_two_passes_loss_and_gradients_where_exact(name):
    original, augmented, target = batch()
    results = {}
    for joint in ('never', 'auto'):
        model = tiny_model(name, **({'img_size': 32} if name == 'test_vit' else {}))
        if name == 'test_resnet':   # BatchNorm frozen: no layer depends on the batch, so auto joins the views
            model.apply(lambda m: m.eval() if isinstance(m, torch.nn.BatchNorm2d) else None)
        task = SynerMixTask(model, beta=0.3, joint_pass=joint)
        if name == 'test_resnet':
            task.train()
            model.apply(lambda m: m.eval() if isinstance(m, torch.nn.BatchNorm2d) else None)
        assert task._joint_now(original) == (joint == 'auto')
        torch.manual_seed(5)
        out = task(TwoViews(original, augmented), target)
        out['loss'].backward()
        results[joint] = (out['loss'].detach(), _grads(model))
    torch.testing.assert_close(results['auto'][0], results['never'][0])
    for key, grad in results['never'][1].items():
        torch.testing.assert_close(results['auto'][1][key], grad, rtol=1e-4, atol=1e-6)


def test_auto_keeps_two_passes_for_batchnorm_in_training():
    original, _, _ = batch()
    assert not SynerMixTask(tiny_model(), beta=0.3)._joint_now(original)
    assert SynerMixTask(tiny_model(), beta=0.3, joint_pass='shared-bn')._joint_now(original)


def test_an_image_twice_in_a_batch_is_mixed_once():
    from timm_synermix.method.intra import first_occurrences, synthesize_all_classes
    images = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    images = torch.stack([images[0], images[0], images[1]])          # image 0 twice, as repeated augmentation gives
    labels = torch.tensor([2, 2, 2])
    keep = first_occurrences(images, labels)
    assert keep.tolist() == [True, False, True]
    features = torch.tensor([[1., 0.], [1., 0.], [0., 1.]])
    synthesized, _, present = synthesize_all_classes(features, labels, 3, generator=torch.Generator().manual_seed(5),
                                                     keep=keep)
    r = 1.0 - torch.rand((1, 3), generator=torch.Generator().manual_seed(5))[0]
    torch.testing.assert_close(synthesized[2], torch.stack([r[0], r[2]]) / (r[0] + r[2]))
    assert present.tolist() == [False, False, True]


def test_augmix_splits_train_the_inter_term_and_the_originals_use_the_main_batchnorm():
    from timm.layers import convert_splitbn_model
    from timm.loss import JsdCrossEntropy
    model = convert_splitbn_model(tiny_model(), 3)
    task = SynerMixTask(model, beta=0.5, aug_splits=3, criterion=JsdCrossEntropy(num_splits=3, smoothing=0.))
    task.train()
    original, augmented, target = batch(size=4)                       # 4 originals: not divisible by the 3 splits
    out = task(TwoViews(original, torch.cat([augmented] * 3)), target)
    assert out['output'].shape == (12, NUM_CLASSES) and out['loss_intra'] > 0
    assert out['image_passes'] == 3 * 4 + 4   # three augmented splits, the originals once
    norms = [m for m in model.modules() if hasattr(m, 'aux_bn')]
    assert norms and all(m.num_batches_tracked == 2 and m.aux_bn[0].num_batches_tracked == 1 for m in norms)


def test_augmix_splits_refuse_a_mixup():
    with pytest.raises(ValueError, match='aug_splits=3 with a mixup'):
        SynerMixTask(tiny_model(), aug_splits=3, mixup=Mixup(mixup_alpha=1.0, num_classes=NUM_CLASSES))


def test_a_teacher_adds_its_distillation_to_the_inter_term_only():
    import copy
    from timm.task import DistillationTeacher
    from timm_synermix import LogitDistillation
    original, augmented, target = batch()
    model = tiny_model('test_vit', img_size=32)          # no BatchNorm: the student in train mode = the teacher
    cfg = model.pretrained_cfg
    twin = LogitDistillation(DistillationTeacher(copy.deepcopy(model)), cfg['mean'], cfg['std'], temperature=2.0,
                             task_loss_weight=0.0, distill_loss_weight=1.0)
    task = SynerMixTask(model, beta=0.3, distillation=twin)
    task.train()
    out = task(TwoViews(original, augmented), target)
    assert not twin.teacher.training
    torch.testing.assert_close(out['loss_inter'], torch.zeros(()), atol=1e-6, rtol=0)   # KL(a twin || itself) = 0
    other = tiny_model('test_vit', img_size=32, drop_rate=0.0)
    torch.nn.init.normal_(other.get_classifier().weight)
    with_teacher = SynerMixTask(model, beta=0.3, distillation=LogitDistillation(
        DistillationTeacher(other), cfg['mean'], cfg['std'], temperature=2.0, task_loss_weight=0.5))
    with_teacher.train()
    out = with_teacher(TwoViews(original, augmented), target)
    student = model(augmented)
    kl = F.kl_div(F.log_softmax(student / 2, -1), F.log_softmax(other.eval()(augmented) / 2, -1),
                  reduction='batchmean', log_target=True) * 4
    torch.testing.assert_close(out['loss_inter'], 0.5 * F.cross_entropy(student, target) + kl, rtol=1e-5, atol=1e-6)
