""" Acceptance tests for train.py: its main(argv) in-process, as the command line calls it (train_helpers); the
torchrun runs as subprocesses, as a user would start them.

A tiny ImageFolder of random PNGs (3 classes x 6 train / 2 validation images, 40 px) is written once per
session; every run trains test_resnet at 32 px on CPU for one epoch of 4 steps. Runs are cached per session
(per xdist worker: the tests that share one are in the xdist group 'method_runs') so tests that need the output of
a method's run (safetensors, fine-tuning) reuse it. Resume, crashes and bad input: test_reliability.py.
"""
import glob
import json
import os

import numpy as np
import pytest
import timm
import torch
import yaml

from train_helpers import (COMMON, ROOT, RUNS, TORCHRUN, assert_same_as_timm, load_ckpt, method_run,  # noqa: F401
                           out_root, parity_run, read_summary, run_in_process, run_train, save_teacher,
                           tiny_imagefolder, write_image_folder)

# the tests that read a cached method_run: on one xdist worker, which trains each once
method_runs = pytest.mark.xdist_group('method_runs')

METHODS = ['baseline', 'mixup', 'manifold-mixup', 'synermix-intra', 'synermix-intra-aug', 'synermix',
           'synermix-manifold']
SUMMARY_COLUMNS = ['epoch', 'train_loss', 'train_loss_intra', 'train_loss_inter', 'eval_loss', 'eval_top1',
                   'eval_top5', 'lr']
RESULT_KEYS = {'method', 'best_top1', 'best_epoch', 'last_k', 'last_k_mean_top1', 'last_k_std_top1', 'metrics',
               'cost', 'finished', 'settings'}


# ---------------------------------------------------------------------------------------------------------------
# one epoch per method
# ---------------------------------------------------------------------------------------------------------------

@method_runs
@pytest.mark.parametrize('method', METHODS)
def test_method_one_epoch_writes_outputs(method, tiny_imagefolder, out_root):
    extra = ('--no-prefetcher',) if method == 'synermix-manifold' else ()
    out = method_run(method, tiny_imagefolder, out_root, extra)
    for name in ('args.yaml', 'summary.csv', 'last.pth.tar', 'checkpoint-0.pth.tar', 'model_best.pth.tar',
                 'results.json', 'features.npz', 'model_best.safetensors'):
        assert os.path.isfile(os.path.join(out, name)), name

    columns, rows = read_summary(out)
    assert columns == SUMMARY_COLUMNS
    assert [int(r['epoch']) for r in rows] == [0]
    row = rows[0]
    for col in SUMMARY_COLUMNS:
        assert row[col] != '' and np.isfinite(float(row[col])), col
    has_intra = method.startswith('synermix')
    assert (float(row['train_loss_intra']) > 0) == has_intra

    with open(os.path.join(out, 'args.yaml')) as f:
        args = yaml.safe_load(f)
    assert args['method'] == method
    assert args['synermix'] == has_intra
    assert args['synermix_beta'] == ({'synermix-intra': 0.5, 'synermix-intra-aug': 0.5}.get(method, 0.1)
                                     if has_intra else 0.0)
    assert args['manifold_mixup'] == ('manifold' in method)
    assert (args['mixup'] > 0) == (method in ('mixup', 'synermix', 'manifold-mixup', 'synermix-manifold'))

    with open(os.path.join(out, 'results.json')) as f:
        results = json.load(f)
    assert set(results) == RESULT_KEYS
    assert results['method'] == method
    assert results['best_epoch'] == 0 and results['last_k'] == 1
    assert results['best_top1'] == pytest.approx(float(row['eval_top1']))
    assert isinstance(results['metrics'], dict)
    # cost: 4 steps of 4 images (supplemented ones grow), twice where the originals take a second pass
    cost = results['cost']
    assert cost['epochs'] == 1 and cost['train_seconds'] > 0
    if not has_intra:
        assert cost['image_passes'] == 16
    elif method == 'synermix-intra-aug':
        assert 16 <= cost['image_passes'] <= 32
    else:
        assert 32 <= cost['image_passes'] <= 64 and cost['image_passes'] % 2 == 0
    if method == 'synermix':
        assert {'silhouette', 'accuracy'} <= set(results['metrics'])

    feats = np.load(os.path.join(out, 'features.npz'))
    assert feats['features'].dtype == np.float32 and feats['labels'].dtype == np.int64
    assert feats['features'].shape[0] == feats['labels'].shape[0] == 6  # the validation split
    assert sorted(np.unique(feats['labels']).tolist()) == [0, 1, 2]

    ckpt = load_ckpt(os.path.join(out, 'last.pth.tar'))  # weights_only=True
    extras = ckpt['synermix']
    assert {'scheduler', 'sampler', 'rng_all', 'history'} <= set(extras)
    assert ckpt['task_state']['step'] == 4  # 18 images // batch 4 = 4 steps


@method_runs
def test_log_shows_loss_terms_and_supplemented_batch(tiny_imagefolder, out_root):
    method_run('synermix', tiny_imagefolder, out_root)
    proc = RUNS[('synermix', ())][1]
    log = proc.stdout + proc.stderr
    train_lines = [line for line in log.splitlines() if line.startswith('Train: 0')]
    assert len(train_lines) == 4
    for key in ('Loss:', 'Intra:', 'Inter:', 'Batch:', '/s', 'LR:'):
        assert key in train_lines[0]


# ---------------------------------------------------------------------------------------------------------------
# config files and holdout (bad input: test_reliability.py)
# ---------------------------------------------------------------------------------------------------------------

def test_config_keys_become_defaults(tiny_imagefolder, tmp_path):
    cfg = tmp_path / 'ok.yaml'
    cfg.write_text(yaml.safe_dump({'model': 'test_resnet', 'img_size': 32, 'batch_size': 4, 'epochs': 1,
                                   'smoothing': 0.0, 'sched': 'step', 'warmup_epochs': 0, 'lr': 0.01,
                                   'workers': 0, 'method': 'synermix-intra', 'synermix_beta': 0.3}))
    run_in_process('-c', cfg, tiny_imagefolder, '--device', 'cpu', '--output', tmp_path, '--experiment', 'cfg',
                   '--synermix-beta', '0.4')
    with open(tmp_path / 'cfg' / 'args.yaml') as f:
        args = yaml.safe_load(f)
    assert args['method'] == 'synermix-intra' and args['synermix_beta'] == 0.4  # command line beats the file
    assert args['img_size'] == 32 and args['smoothing'] == 0.0


@method_runs
def test_val_holdout_is_stratified_split_of_train(tiny_imagefolder, out_root):
    out = method_run('synermix-intra', tiny_imagefolder, out_root, ('--val-holdout', '0.3333'))
    feats = np.load(os.path.join(out, 'features.npz'))
    assert np.bincount(feats['labels']).tolist() == [2, 2, 2]  # 1/3 of 6 train images per class
    ckpt = load_ckpt(os.path.join(out, 'last.pth.tar'))
    assert ckpt['task_state']['step'] == 3  # 12 remaining train images // batch 4


# ---------------------------------------------------------------------------------------------------------------
# weights: model_best.safetensors through timm, fine-tuning from --pretrained-path
# ---------------------------------------------------------------------------------------------------------------

@method_runs
def test_model_best_safetensors_loads_through_timm(tiny_imagefolder, out_root):
    import timm
    out = method_run('baseline', tiny_imagefolder, out_root)
    file = os.path.join(out, 'model_best.safetensors')
    best = load_ckpt(os.path.join(out, 'model_best.pth.tar'))['state_dict']

    model = timm.create_model('test_resnet', pretrained=True, num_classes=3,
                              pretrained_cfg_overlay=dict(file=file, num_classes=3))
    for k, v in model.state_dict().items():
        assert torch.equal(v, best[k]), k

    # as in the brief: pretrained_cfg_overlay=dict(file=...) with num_classes loads the backbone (head adapted)
    model = timm.create_model('test_resnet', pretrained=True, pretrained_cfg_overlay=dict(file=file), num_classes=3)
    backbone = [k for k in best if not k.startswith('fc.')]
    assert backbone and all(torch.equal(model.state_dict()[k], best[k]) for k in backbone)
    assert model.get_classifier().out_features == 3


@method_runs
@pytest.mark.parametrize('source', ['pth.tar', 'safetensors'])
def test_pretrained_path_resets_head_and_loads_backbone(source, tiny_imagefolder, out_root, tmp_path):
    src_dir = method_run('baseline', tiny_imagefolder, out_root)
    five_classes = write_image_folder(tmp_path / 'five', classes=5)
    src = os.path.join(src_dir, 'last.pth.tar' if source == 'pth.tar' else 'model_best.safetensors')
    src_sd = load_ckpt(os.path.join(src_dir, 'last.pth.tar'))['state_dict']
    exp = f'finetune-{source}'
    # lr 0: the new run's weights are the loaded ones, so the saved checkpoint shows what was loaded
    run_in_process(five_classes, *COMMON, '--method', 'synermix', '--pretrained-path', src, '--num-classes', '5',
                   '--lr', '0', '--weight-decay', '0', '--output', out_root, '--experiment', exp)
    sd = load_ckpt(os.path.join(out_root, exp, 'last.pth.tar'))['state_dict']
    assert sd['fc.weight'].shape[0] == 5 and src_sd['fc.weight'].shape[0] == 3
    for k, v in sd.items():
        if k.startswith('fc.') or 'running_' in k or 'num_batches_tracked' in k:
            continue
        assert torch.equal(v, src_sd[k]), k


# ---------------------------------------------------------------------------------------------------------------
# distributed: torchrun, 2 processes on CPU (gloo) vs one process, same global batch
# ---------------------------------------------------------------------------------------------------------------

def _conv_linear_weights(path):
    state = load_ckpt(os.path.join(path, 'last.pth.tar'))['state_dict']
    return {k: v for k, v in state.items() if k.endswith('.weight') and v.ndim > 1}


def _max_gap(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_torchrun_two_procs_match_single_process_without_batchnorm(tiny_imagefolder, out_root):
    # No BatchNorm (a ViT), no augmentation, plain batches: the 2 ranks' halves of each global batch average to
    # the single process's gradient, so the runs agree to float precision.
    if not os.path.exists(TORCHRUN):
        pytest.skip('torchrun not installed next to the interpreter')
    common = [a for a in COMMON if a not in ('-b', '4')]
    argv = [tiny_imagefolder, *common, '--model', 'test_vit', '--model-kwargs', 'img_size=32', '--method', 'baseline',
            '--no-aug', '--lr', '0.05', '--output', out_root, '--no-feature-metrics']
    # --batch-order seeded: the single process cuts the same global batches as the two ranks share
    run_in_process(*argv, '-b', '8', '--experiment', 'vit-single', '--batch-order', 'seeded')
    run_in_process(*argv, '-b', '8', '--experiment', 'vit-single-lr0', '--lr', '0', '--batch-order', 'seeded')
    proc = run_train(*argv, '-b', '4', '--experiment', 'vit-ddp', '--batch-order', 'seeded', torchrun=2)
    assert 'distributed mode' in proc.stdout + proc.stderr
    single, ddp = (_conv_linear_weights(os.path.join(out_root, e)) for e in ('vit-single', 'vit-ddp'))
    init = _conv_linear_weights(os.path.join(out_root, 'vit-single-lr0'))
    moved, apart = _max_gap(single, init), _max_gap(single, ddp)
    assert moved > 1e-3 and apart < 1e-3 * moved


def test_torchrun_synermix_finishes_close_to_single_process(tiny_imagefolder, out_root):
    # SynerMix under DDP (its gradients equal the single-process per-shard average: test_task.py). Here the
    # supplements, λ draws and BatchNorm statistics are per rank, so only the losses are compared, loosely.
    if not os.path.exists(TORCHRUN):
        pytest.skip('torchrun not installed next to the interpreter')
    common = [a for a in COMMON if a not in ('-b', '4')]
    argv = [tiny_imagefolder, *common, '--method', 'synermix', '--no-aug', '--lr', '0.01', '--output', out_root]
    run_in_process(*argv, '-b', '8', '--experiment', 'single')
    run_train(*argv, '-b', '4', '--experiment', 'ddp', torchrun=2)
    _, single = read_summary(os.path.join(out_root, 'single'))
    _, ddp = read_summary(os.path.join(out_root, 'ddp'))
    assert len(single) == len(ddp) == 1
    s, d = single[0], ddp[0]
    assert float(d['train_loss']) == pytest.approx(float(s['train_loss']), abs=0.15)
    assert float(d['eval_loss']) == pytest.approx(float(s['eval_loss']), abs=0.15)
    assert float(d['lr']) == pytest.approx(float(s['lr']))
    with open(os.path.join(out_root, 'ddp', 'results.json')) as f:
        assert json.load(f)['method'] == 'synermix'


# ---------------------------------------------------------------------------------------------------------------
# the paper's config files
# ---------------------------------------------------------------------------------------------------------------

def test_cifar_config_runs_end_to_end(tiny_imagefolder, out_root):
    # the shipped CIFAR-100 file on the tiny ImageFolder: CIFAR stem, cutout-like erasing, elem mixup
    run_in_process('-c', os.path.join(ROOT, 'configs', 'cifar100_resnet18.yaml'), tiny_imagefolder, '--dataset', '',
                   '--val-split', 'validation', '--num-classes', '3', '--epochs', '1', '-b', '4', '-j', '0',
                   '--device', 'cpu', '--method', 'synermix', '--no-feature-metrics', '--output', out_root,
                   '--experiment', 'cifar-config')
    with open(os.path.join(out_root, 'cifar-config', 'args.yaml')) as f:
        args = yaml.safe_load(f)
    assert args['cifar_stem'] and args['reprob'] == 1.0 and args['mixup_mode'] == 'elem' and args['mixup'] == 1.0
    sd = load_ckpt(os.path.join(out_root, 'cifar-config', 'last.pth.tar'))['state_dict']
    assert sd['conv1.weight'].shape[-1] == 3


def test_shipped_configs_parse():
    from timm_synermix.trainer.args import parse_args
    config_dir = os.path.join(ROOT, 'configs')
    files = sorted(glob.glob(os.path.join(config_dir, '*.yaml')))
    assert len(files) >= 12
    for path in files:
        args, _ = parse_args(['-c', path])
        assert args.opt == 'sgd' and args.momentum == 0.9 and args.weight_decay == 5e-4, path
        assert args.sched == 'step' and args.decay_rate == 0.5 and args.smoothing == 0, path
        with open(os.path.join(config_dir, 'README.md')) as f:
            assert os.path.basename(path) in f.read(), path


def test_too_few_eval_images_for_metrics_still_finish_the_run(tmp_path):
    data = write_image_folder(tmp_path / 'data', n_train=4, n_val=1)   # 3 eval images for 3 classes: no silhouette
    proc = run_in_process(data, *COMMON, '--method', 'synermix', '--output', tmp_path / 'out', '--experiment', 'few')
    with open(tmp_path / 'out' / 'few' / 'results.json') as f:
        results = json.load(f)
    assert results['metrics'] == {} and results['method'] == 'synermix'
    assert 'Feature metrics skipped' in proc.stdout + proc.stderr


@method_runs
@pytest.mark.parametrize('batches', ['paired', 'fixed'])
def test_one_batch_shape_modes_train_with_every_step_the_same_size(batches, tiny_imagefolder, out_root):
    extra = ('--synermix-batches', batches) + (('--synermix-fixed-size', '6') if batches == 'fixed' else ())
    method_run('synermix', tiny_imagefolder, out_root, extra)
    proc = RUNS[('synermix', extra)][1]
    sizes = {line.split('Batch: ')[1].split()[0] for line in (proc.stdout + proc.stderr).splitlines()
             if line.startswith('Train: 0')}
    assert sizes == {'4' if batches == 'paired' else '6'}


# ---------------------------------------------------------------------------------------------------------------
# timm's flags
# ---------------------------------------------------------------------------------------------------------------

@method_runs
def test_rsb_recipe_bce_loss_trains_with_synermix(tiny_imagefolder, out_root):
    # ResNet-Strikes-Back: BCE with a target threshold on top of MixUp/CutMix; SynerMix's intra term stays CE
    out = method_run('synermix', tiny_imagefolder, out_root,
                     ('--bce-loss', '--bce-target-thresh', '0.2', '--mixup', '0.1', '--cutmix', '1.0'))
    proc = RUNS[('synermix', ('--bce-loss', '--bce-target-thresh', '0.2', '--mixup', '0.1', '--cutmix', '1.0'))][1]
    assert 'criterion=BinaryCrossEntropy' in proc.stdout + proc.stderr
    _, rows = read_summary(out)
    assert float(rows[0]['train_loss_intra']) > 0


# The parity tests (marker `parity`; `.ci/run` runs them a second time under another outer numeric setting): each
# runs our train.py without SynerMix in a subprocess under train_helpers.PORTABLE_NUMERICS (one interpreter that the
# parity runs share, train_helpers.portable_run; a torchrun run its own) and compares its per-epoch (train loss,
# eval loss, top-1) with the numbers that timm's own train.py (pytorch-image-models aa4b5850,
# with train_helpers.RECORDED_BUILD: timm 1.0.31, torch 2.14.1, Pillow 13.0.0) printed for the same flags on the
# same tiny ImageFolder under the same setting, where both gave the same floats. How to check it on another machine
# or build: docs/timm-parity.md, "Across machines".
PARITY_FLAGS = ('--model', 'test_resnet', '--num-classes', '3', '--img-size', '32', '-b', '4', '--epochs', '2',
                '--device', 'cpu', '-j', '0', '--sched', 'cosine', '--warmup-epochs', '0', '--lr', '0.05',
                '--seed', '7')


@pytest.mark.parity
@pytest.mark.parametrize('flags, timm_flags, timm_numbers', [
    (('--method', 'mixup'), '--mixup 1.0', [(1.1132837384939194, 0.6517278254032135, 66.66666666666667),
                                            (0.9741474539041519, 0.4632788399855296, 66.66666666666667)]),
    (('--mixup', '0.8', '--cutmix', '1.0'), 'the same', [(1.2440067827701569, 0.7323363224665324, 66.66666666666667),
                                                         (0.9950553476810455, 0.5351932495832443, 66.66666666666667)]),
    (('--mixup', '0.8', '--cutmix', '1.0', '--no-prefetcher'), 'the same',
     [(1.1610867381095886, 0.7358809113502502, 66.66666666666667), (1.0610868334770203, 0.4971128503481547, 100.0)]),
], ids=['method-mixup', 'mixup-cutmix-prefetcher', 'mixup-cutmix-no-prefetcher'])
def test_mixup_without_synermix_reproduces_timms_train_py(flags, timm_flags, timm_numbers, tiny_imagefolder, tmp_path):
    """timm's train.py ran with `timm_flags` in place of `flags`; under the prefetcher timm mixes in the loader
    (FastCollateMixup), and so does a run without SynerMix here. Exactly equal (assert_same_as_timm)."""
    ours = parity_run(tiny_imagefolder, *PARITY_FLAGS, *flags, '--output', tmp_path, '--experiment', 'mixup')
    assert_same_as_timm(ours, timm_numbers)


@pytest.mark.parity
def test_without_synermix_a_torchrun_run_reproduces_timms_train_py(tiny_imagefolder, tmp_path):
    """timm's train.py ran under torchrun, 2 gloo ranks, with one local edit to let its DDP wrap a CPU model
    (device_ids=None). --log-interval 1: timm's DDP train loss averages the logged steps only, so logging every step
    makes it the mean over all steps, as here.

    Equal to rtol=1e-6, not exactly: timm all-reduces and averages the per-step numbers as float32 tensors (its
    top-1 66.66666412353516 is 200/3 in float32), we average the same per-step values in float64, so the two means
    part by float32 rounding: up to 9.5e-8 relative in these runs, and 1e-6 is about 8 float32 ulps. A changed
    default as small as the cosine schedule's min_lr at 1e-5 in place of 0 (the second epoch's LR 2e-4 higher) moves
    them by 2.7e-5, and seeding rank 1 as rank 0 by 0.5."""
    timm_numbers = [(1.147562026977539, 1.0144060850143433, 66.66666412353516),
                    (1.0977962017059326, 0.9366400837898254, 66.66666412353516)]
    ours = parity_run(tiny_imagefolder, *PARITY_FLAGS, '--log-interval', '1', '--output', tmp_path, '--experiment',
                      'ddp', torchrun=2)
    np.testing.assert_allclose(ours, timm_numbers, rtol=1e-6, atol=0)


@method_runs
def test_a_head_larger_than_the_data_trains_with_a_warning_as_timm_allows(tiny_imagefolder, out_root):
    out = method_run('synermix', tiny_imagefolder, out_root, ('--num-classes', '5'))
    log = RUNS[('synermix', ('--num-classes', '5'))][1].stderr + RUNS[('synermix', ('--num-classes', '5'))][1].stdout
    assert '--num-classes 5 but the training set has 3 classes: outputs 3..4 are never a target' in log
    assert load_ckpt(os.path.join(out, 'last.pth.tar'))['state_dict']['fc.weight'].shape[0] == 5


@pytest.mark.parity
def test_scheduled_resolutions_without_synermix_reproduce_timms_train_py(tiny_imagefolder, tmp_path):
    """timm's scheduled loader batches (32 px x 4 and 48 px x 2), the loss scaled by sqrt(batch / 3, the schedule's
    average batch). Exactly timm's numbers for these flags (assert_same_as_timm)."""
    timm_numbers = [(1.4748128652572632, 0.5567986567815145, 66.66666666666667),
                    (1.199045525656806, 0.6063144132494926, 66.66666666666667)]
    ours = parity_run(tiny_imagefolder, *PARITY_FLAGS, '--train-img-sizes', '32', '48', '--train-batch-sizes', '4',
                      '2', '--variable-batch-loss-scale', 'sqrt', '--output', tmp_path, '--experiment', 'sr')
    assert_same_as_timm(ours, timm_numbers)


def test_distillation_with_synermix_puts_the_teacher_on_the_augmented_view(tiny_imagefolder, tmp_path):
    from timm.models._hub import save_for_hf
    torch.manual_seed(0)
    save_for_hf(timm.create_model('test_resnet', num_classes=3), str(tmp_path / 'teacher'), safe_serialization=True)
    proc = run_in_process(tiny_imagefolder, *COMMON, '--method', 'synermix', '--kd-model-name',
                          f'local-dir:{tmp_path / "teacher"}', '--distill-loss-weight', '0.5', '--no-feature-metrics',
                          '--output', tmp_path, '--experiment', 'kd-synermix')
    assert "Creating KD teacher model: 'local-dir:" in proc.stdout + proc.stderr
    _, rows = read_summary(tmp_path / 'kd-synermix')
    assert float(rows[0]['train_loss_intra']) > 0 and np.isfinite(float(rows[0]['train_loss_inter']))


AUGMIX_RECIPE = ('--aa', 'augmix-m5-w4-d2', '--aug-splits', '3', '--jsd-loss', '--split-bn', '--resplit', '--remode',
                 'pixel', '--reprob', '0.6')
DEIT_RECIPE = ('--model', 'test_vit', '--aa', 'rand-m9-mstd0.5-inc1', '--mixup', '.8', '--cutmix', '1.0', '--reprob',
               '0.25', '--aug-repeats', '3', '--smoothing', '0.1', '--opt', 'adamw', '--lr', '5e-4', '--weight-decay',
               '0.05', '--warmup-lr', '1e-6', '--drop-path', '0.1')


@pytest.mark.parity
def test_augmix_recipe_without_synermix_reproduces_timms_train_py(tiny_imagefolder, tmp_path):
    """The AugMix recipe of timm's docs, shrunk, with a step schedule: per-epoch train loss (JSD), eval loss and
    top-1, exactly timm's (assert_same_as_timm)."""
    timm_numbers = [(1.1114524006843567, 0.476397110382095, 66.66666666666667),
                    (1.8905182778835297, 4.373003164927165, 0.0)]
    flags = list(PARITY_FLAGS)
    flags[flags.index('cosine')] = 'step'
    ours = parity_run(tiny_imagefolder, *flags, '--decay-epochs', '100', *AUGMIX_RECIPE, '--output', tmp_path,
                      '--experiment', 'augmix')
    assert_same_as_timm(ours, timm_numbers)


def recipe_run(name, recipe, data, out_root):
    proc = run_in_process(data, *COMMON, *recipe, '--synermix', '--no-feature-metrics', '--output', out_root,
                          '--experiment', name)
    return os.path.join(out_root, name), proc.stdout + proc.stderr


def test_augmix_recipe_trains_with_synermix_on_three_splits(tiny_imagefolder, out_root):
    out, log = recipe_run('augmix-synermix', AUGMIX_RECIPE, tiny_imagefolder, out_root)
    with open(os.path.join(out, 'results.json')) as f:
        settings = json.load(f)['settings']   # what the run was, recorded with its scores
    assert settings['aug_splits'] == 3 and settings['method'] == 'synermix-intra' and settings['batch_size'] == 4
    assert 'criterion=JsdCrossEntropy' in log
    # 4 primaries (+ supplements) per step, each as 3 AugMix splits: at least 12 augmented images per step.
    assert min(int(line.split('Batch: ')[1].split()[0]) for line in log.splitlines() if 'Batch: ' in line) >= 12
    _, rows = read_summary(out)
    assert float(rows[0]['train_loss_intra']) > 0 and np.isfinite(float(rows[0]['eval_loss']))


def test_deit_recipe_with_repeated_augmentation_trains_with_synermix(tiny_imagefolder, out_root):
    out, _ = recipe_run('deit-synermix', DEIT_RECIPE, tiny_imagefolder, out_root)
    _, rows = read_summary(out)
    assert float(rows[0]['train_loss_intra']) > 0 and np.isfinite(float(rows[0]['eval_loss']))


@method_runs
def test_model_dtype_bfloat16_trains_and_saves_bfloat16_weights(tiny_imagefolder, out_root):
    out = method_run('synermix', tiny_imagefolder, out_root, ('--model-dtype', 'bfloat16', '--no-prefetcher'))
    _, rows = read_summary(out)
    assert np.isfinite(float(rows[0]['train_loss'])) and float(rows[0]['train_loss_intra']) > 0
    assert load_ckpt(os.path.join(out, 'last.pth.tar'))['state_dict']['fc.weight'].dtype == torch.bfloat16


@pytest.mark.parity
def test_distillation_without_synermix_reproduces_timms_train_py(tiny_imagefolder, tmp_path):
    """With this teacher (train_helpers.save_teacher: test_resnet with numpy-drawn weights, the same on every
    machine, saved with timm's save_for_hf) and these flags, exactly timm's per-epoch numbers (assert_same_as_timm)."""
    teacher = save_teacher(tmp_path / 'teacher')
    timm_numbers = [(1.348544031381607, 1.4451320171356201, 0.0),
                    (1.4486966729164124, 1.0716025568544865, 66.66666666666667)]
    ours = parity_run(tiny_imagefolder, *PARITY_FLAGS, '--kd-model-name', f'local-dir:{teacher}', '--smoothing', '0.1',
                      '--output', tmp_path, '--experiment', 'kd')
    assert_same_as_timm(ours, timm_numbers)


SMALL_TIMM_FLAGS = ('--save-images', '--use-multi-epochs-loader', '-j', '1', '--device-modules', 'json')


@method_runs
def test_save_images_writes_each_logged_training_batch(tiny_imagefolder, out_root):
    from PIL import Image
    out = method_run('synermix', tiny_imagefolder, out_root, SMALL_TIMM_FLAGS)
    assert {f'train-batch-{i}.jpg' for i in range(4)} <= set(os.listdir(out))   # --log-interval 1: every batch
    with Image.open(os.path.join(out, 'train-batch-0.jpg')) as image:
        assert image.height == 32 and image.width % 32 == 0 and image.width >= 4 * 32   # one row of 32 px images


@method_runs
def test_multi_epochs_loader_and_device_modules_are_accepted_and_train(tiny_imagefolder, out_root):
    out = method_run('synermix', tiny_imagefolder, out_root, SMALL_TIMM_FLAGS)
    with open(os.path.join(out, 'results.json')) as f:
        assert json.load(f)['finished'] is True


@method_runs
def test_a_named_loss_is_timms_and_becomes_the_inter_criterion(tiny_imagefolder, out_root):
    out = method_run('synermix-intra', tiny_imagefolder, out_root, ('--loss', 'poly'))
    log = RUNS[('synermix-intra', ('--loss', 'poly'))][1]
    assert 'criterion=PolyCrossEntropy' in log.stdout + log.stderr
    _, rows = read_summary(out)
    assert float(rows[0]['train_loss_intra']) > 0


@method_runs
def test_val_interval_evaluates_and_checkpoints_every_nth_epoch_and_the_last(tiny_imagefolder, out_root):
    out = method_run('baseline', tiny_imagefolder, out_root, ('--epochs', '3', '--val-interval', '2'))
    _, rows = read_summary(out)
    assert [int(r['epoch']) for r in rows] == [1, 2]
    assert not os.path.exists(os.path.join(out, 'checkpoint-0.pth.tar'))


def test_head_init_scale_and_bias_set_the_classifier():
    from timm_synermix.trainer.args import parse_args
    from timm_synermix.trainer.models import create_model_from_args
    args, _ = parse_args(['--model', 'test_resnet', '--head-init-scale', '0', '--head-init-bias', '-2'])
    head = create_model_from_args(args, 3).get_classifier()
    assert head.weight.abs().sum() == 0 and torch.all(head.bias == -2)


def test_an_args_yaml_written_by_timms_train_py_loads_and_trains(tiny_imagefolder, tmp_path):
    # tests/data/timm_args.yaml: written by timm's own train.py (1.0.29.dev0) on a tiny ImageFolder, paths neutralised
    config = os.path.join(ROOT, 'tests', 'data', 'timm_args.yaml')
    run_in_process('-c', config, tiny_imagefolder, '--epochs', '1', '--output', tmp_path, '--experiment', 'timm-args')
    with open(tmp_path / 'timm-args' / 'results.json') as f:
        assert json.load(f)['method'] == 'baseline'


def test_resume_with_more_epochs_continues_the_longer_schedule(tiny_imagefolder, tmp_path):
    common = [tiny_imagefolder, *COMMON, '--sched', 'cosine', '--no-feature-metrics', '--output', tmp_path,
              '--experiment', 'longer']
    run_in_process(*common, '--epochs', '3')
    run_in_process(*common, '--epochs', '4', '--resume', tmp_path / 'longer' / 'last.pth.tar')
    _, rows = read_summary(tmp_path / 'longer')
    # cosine over 4 epochs from lr 0.05: epoch 3 trains at 0.05 * (1 + cos(3π/4)) / 2 = 0.00732, not at 0
    assert [int(r['epoch']) for r in rows] == [0, 1, 2, 3]
    assert float(rows[3]['lr']) == pytest.approx(0.05 * (1 + np.cos(3 * np.pi / 4)) / 2, rel=1e-4)


def test_resume_auto_starts_then_continues_and_stop_epoch_keeps_the_schedule(tiny_imagefolder, tmp_path):
    common = [tiny_imagefolder, *COMMON, '--sched', 'cosine', '--no-feature-metrics', '--output', tmp_path,
              '--experiment', 'auto', '--epochs', '4', '--resume', 'auto']
    run_in_process(*common, '--stop-epoch', '2', '--save-epochs', '1')
    folder = tmp_path / 'auto'
    with open(folder / 'results.json') as f:
        assert json.load(f)['finished'] is False   # a stopped run never reads as the finished schedule
    assert load_ckpt(folder / 'milestone-1.pth.tar')['epoch'] == 0
    run_in_process(*common)
    _, rows = read_summary(folder)
    assert [int(r['epoch']) for r in rows] == [0, 1, 2, 3]
    assert float(rows[1]['lr']) == pytest.approx(0.05 * (1 + np.cos(np.pi / 4)) / 2, rel=1e-4)
    with open(folder / 'results.json') as f:
        assert json.load(f)['finished'] is True


@pytest.mark.parity
def test_without_synermix_a_run_reproduces_timms_train_py(tiny_imagefolder, tmp_path):
    """The plain run: exactly the per-epoch train loss, eval loss and top-1 that timm's train.py printed for these
    flags on this tiny ImageFolder (assert_same_as_timm)."""
    timm_numbers = [(0.999367892742157, 0.7610521713892618, 66.66666666666667),
                    (0.9706045687198639, 0.5607398152351379, 100.0)]
    ours = parity_run(tiny_imagefolder, *PARITY_FLAGS, '--output', tmp_path, '--experiment', 'parity')
    assert_same_as_timm(ours, timm_numbers)
