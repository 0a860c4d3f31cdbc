""" Acceptance tests for train.py (run as a subprocess, as a user would).

A tiny ImageFolder of random PNGs (3 classes x 6 train / 2 validation images, 40 px) is written once per
session; every run trains test_resnet at 32 px on CPU for one epoch of 4 steps. Runs are cached per session
so tests that need the output of a method's run (safetensors, fine-tuning, resume) reuse it.
"""
import csv
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, 'train.py')
PYTHON = sys.executable
TORCHRUN = os.path.join(os.path.dirname(sys.executable), 'torchrun')

METHODS = ['baseline', 'mixup', 'manifold-mixup', 'synermix-intra', 'synermix-intra-aug', 'synermix',
           'synermix-manifold']
SUMMARY_COLUMNS = ['epoch', 'train_loss', 'train_loss_intra', 'train_loss_inter', 'eval_loss', 'eval_top1',
                   'eval_top5', 'lr']
RESULT_KEYS = {'method', 'best_top1', 'best_epoch', 'last_k', 'last_k_mean_top1', 'last_k_std_top1', 'metrics'}
COMMON = ['--model', 'test_resnet', '--img-size', '32', '-b', '4', '--epochs', '1', '--device', 'cpu', '-j', '0',
          '--sched', 'step', '--decay-epochs', '100', '--warmup-epochs', '0', '--lr', '0.05', '--smoothing', '0',
          '--log-interval', '1', '--seed', '7']


# ---------------------------------------------------------------------------------------------------------------
# helpers (conftest_train)
# ---------------------------------------------------------------------------------------------------------------

def _env(threads=1):  # one thread per process: on a shared 2-core box more threads are 10x slower
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE='1', PYTHONUNBUFFERED='1')
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    return env


def run_train(*args, check=True, cwd=None, torchrun=0):
    cmd = [TORCHRUN, '--standalone', f'--nproc_per_node={torchrun}', TRAIN] if torchrun else [PYTHON, TRAIN]
    proc = subprocess.run(cmd + [str(a) for a in args], cwd=cwd or ROOT, env=_env(),
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f'train.py failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}')
    return proc


def read_summary(path):
    with open(os.path.join(path, 'summary.csv')) as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def load_ckpt(path):
    from timm.models._helpers import _torch_load
    return _torch_load(path, weights_only=True)


@pytest.fixture(scope='session')
def tiny_imagefolder(tmp_path_factory):
    from PIL import Image
    root = tmp_path_factory.mktemp('tiny_imagefolder')
    rng = np.random.default_rng(0)
    for split, n in (('train', 6), ('validation', 2)):
        for c in range(3):
            folder = root / split / f'class{c}'
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = (rng.random((40, 40, 3)) * 80 + c * 80).astype(np.uint8)  # learnable: class = brightness
                Image.fromarray(pixels).save(folder / f'{i}.png')
    return str(root)


@pytest.fixture(scope='session')
def out_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp('train_output'))


_RUNS = {}


def method_run(method, data, out_root, extra=()):
    """Output folder of a one-epoch run of `method` (run once per session)."""
    key = (method, tuple(extra))
    if key not in _RUNS:
        exp = method + ('-' + '-'.join(a.strip('-') for a in extra) if extra else '')
        # feature metrics (sklearn) cost a few seconds: computed for the SynerMix run only
        metrics = () if method == 'synermix' else ('--no-feature-metrics',)
        proc = run_train(data, *COMMON, '--method', method, '--output', out_root, '--experiment', exp, *extra,
                         *metrics)
        _RUNS[key] = (os.path.join(out_root, exp), proc)
    return _RUNS[key][0]


def _load_train_module():
    spec = importlib.util.spec_from_file_location('synermix_train_script', TRAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------------------------
# one epoch per method
# ---------------------------------------------------------------------------------------------------------------

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


def test_log_shows_loss_terms_and_supplemented_batch(tiny_imagefolder, out_root):
    method_run('synermix', tiny_imagefolder, out_root)
    proc = _RUNS[('synermix', ())][1]
    log = proc.stdout + proc.stderr
    train_lines = [line for line in log.splitlines() if line.startswith('Train: 0')]
    assert len(train_lines) == 4
    for key in ('Loss:', 'Intra:', 'Inter:', 'Batch:', '/s', 'LR:'):
        assert key in train_lines[0]


# ---------------------------------------------------------------------------------------------------------------
# config files and bad input
# ---------------------------------------------------------------------------------------------------------------

def test_config_typo_fails_naming_key(tiny_imagefolder, tmp_path):
    cfg = tmp_path / 'typo.yaml'
    cfg.write_text(yaml.safe_dump({'model': 'test_resnet', 'smothing': 0.0}))
    proc = run_train('-c', cfg, tiny_imagefolder, '--device', 'cpu', '--output', tmp_path, check=False)
    assert proc.returncode == 2
    assert "'smothing'" in proc.stderr and "'smoothing'" in proc.stderr
    assert 'Traceback' not in proc.stderr
    assert not os.listdir(tmp_path / 'train') if (tmp_path / 'train').exists() else True


def test_config_keys_become_defaults(tiny_imagefolder, tmp_path):
    cfg = tmp_path / 'ok.yaml'
    cfg.write_text(yaml.safe_dump({'model': 'test_resnet', 'img_size': 32, 'batch_size': 4, 'epochs': 1,
                                   'smoothing': 0.0, 'sched': 'step', 'warmup_epochs': 0, 'lr': 0.01,
                                   'workers': 0, 'method': 'synermix-intra', 'synermix_beta': 0.3}))
    run_train('-c', cfg, tiny_imagefolder, '--device', 'cpu', '--output', tmp_path, '--experiment', 'cfg',
              '--synermix-beta', '0.4')
    with open(tmp_path / 'cfg' / 'args.yaml') as f:
        args = yaml.safe_load(f)
    assert args['method'] == 'synermix-intra' and args['synermix_beta'] == 0.4  # command line beats the file
    assert args['img_size'] == 32 and args['smoothing'] == 0.0


def test_bad_inputs_one_line_exit_2(tiny_imagefolder, out_root, tmp_path):
    cases = [
        ([str(tmp_path / 'missing'), '--device', 'cpu'], 'does not exist'),
        ([tiny_imagefolder, '--device', 'cpu', '--method', 'synermx'], 'synermix'),
    ]
    # an existing experiment folder is never overwritten without --resume
    out = method_run('baseline', tiny_imagefolder, out_root)
    before = os.path.getmtime(os.path.join(out, 'last.pth.tar'))
    cases.append(([tiny_imagefolder, *COMMON, '--method', 'baseline', '--output', out_root, '--experiment',
                   'baseline'], '--resume'))
    for argv, needle in cases:
        proc = run_train(*argv, check=False)
        assert proc.returncode == 2, proc.stderr[-2000:]
        err = [line for line in proc.stderr.strip().splitlines() if line.startswith('train.py: error:')]
        assert len(err) == 1 and needle in err[0], proc.stderr[-2000:]
        assert 'Traceback' not in proc.stderr
    assert os.path.getmtime(os.path.join(out, 'last.pth.tar')) == before


def test_val_holdout_is_stratified_split_of_train(tiny_imagefolder, out_root):
    out = method_run('synermix-intra', tiny_imagefolder, out_root, ('--val-holdout', '0.3333'))
    feats = np.load(os.path.join(out, 'features.npz'))
    assert np.bincount(feats['labels']).tolist() == [2, 2, 2]  # 1/3 of 6 train images per class
    ckpt = load_ckpt(os.path.join(out, 'last.pth.tar'))
    assert ckpt['task_state']['step'] == 3  # 12 remaining train images // batch 4


def test_cifar_stem():
    import timm
    train = _load_train_module()
    model = train.apply_cifar_stem(timm.create_model('resnet18', num_classes=10))
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape[-1] == 4  # 32 / 8: no stem downsampling
    with pytest.raises(train.UserError):
        train.apply_cifar_stem(timm.create_model('test_resnet'))  # deep stem: not a single conv1


# ---------------------------------------------------------------------------------------------------------------
# weights: model_best.safetensors through timm, fine-tuning from --pretrained-path
# ---------------------------------------------------------------------------------------------------------------

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


@pytest.mark.parametrize('source', ['pth.tar', 'safetensors'])
def test_pretrained_path_resets_head_and_loads_backbone(source, tiny_imagefolder, out_root):
    src_dir = method_run('baseline', tiny_imagefolder, out_root)
    src = os.path.join(src_dir, 'last.pth.tar' if source == 'pth.tar' else 'model_best.safetensors')
    src_sd = load_ckpt(os.path.join(src_dir, 'last.pth.tar'))['state_dict']
    exp = f'finetune-{source}'
    # lr 0: the new run's weights are the loaded ones, so the saved checkpoint shows what was loaded
    run_train(tiny_imagefolder, *COMMON, '--method', 'synermix', '--pretrained-path', src, '--num-classes', '5',
              '--lr', '0', '--weight-decay', '0', '--output', out_root, '--experiment', exp)
    sd = load_ckpt(os.path.join(out_root, exp, 'last.pth.tar'))['state_dict']
    assert sd['fc.weight'].shape[0] == 5 and src_sd['fc.weight'].shape[0] == 3
    for k, v in sd.items():
        if k.startswith('fc.') or 'running_' in k or 'num_batches_tracked' in k:
            continue
        assert torch.equal(v, src_sd[k]), k


# ---------------------------------------------------------------------------------------------------------------
# resume (issue 6)
# ---------------------------------------------------------------------------------------------------------------

def _max_diff(a, b):
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_resume_continues_exactly(tiny_imagefolder, out_root):
    part = method_run('synermix', tiny_imagefolder, out_root)  # epoch 0 of a 2-epoch-identical schedule
    run_train(tiny_imagefolder, *COMMON, '--method', 'synermix', '--epochs', '2', '--output', out_root,
              '--experiment', 'synermix-2ep')
    run_train(tiny_imagefolder, *COMMON, '--method', 'synermix', '--epochs', '2', '--output', out_root,
              '--experiment', 'synermix-resumed', '--resume', os.path.join(part, 'last.pth.tar'))
    full = os.path.join(out_root, 'synermix-2ep')
    resumed = os.path.join(out_root, 'synermix-resumed')
    assert read_summary(full) == read_summary(resumed)
    a = load_ckpt(os.path.join(full, 'last.pth.tar'))
    b = load_ckpt(os.path.join(resumed, 'last.pth.tar'))
    assert _max_diff(a['state_dict'], b['state_dict']) == 0.0
    assert a['task_state'] == b['task_state']


def test_recovery_checkpoint_resumes_mid_epoch(tiny_imagefolder, out_root):
    # exact mid-epoch resume holds without the prefetcher (it reads one batch ahead) and with -j 0
    run_train(tiny_imagefolder, *COMMON, '--method', 'synermix-intra', '--recovery-interval', '1',
              '--no-prefetcher', '--output', out_root, '--experiment', 'recovery')
    rec_dir = os.path.join(out_root, 'recovery')
    recoveries = sorted(glob.glob(os.path.join(rec_dir, 'recovery-0-*.pth.tar')))
    assert recoveries
    ckpt = load_ckpt(recoveries[0])
    assert ckpt['synermix']['next_batch'] in (1, 2, 3)
    run_train(tiny_imagefolder, *COMMON, '--method', 'synermix-intra', '--no-prefetcher', '--output', out_root,
              '--experiment', 'recovery-resumed', '--resume', recoveries[0])
    a = load_ckpt(os.path.join(rec_dir, 'last.pth.tar'))
    b = load_ckpt(os.path.join(out_root, 'recovery-resumed', 'last.pth.tar'))
    assert _max_diff(a['state_dict'], b['state_dict']) == 0.0
    assert float(read_summary(rec_dir)[1][0]['train_loss']) == pytest.approx(
        float(read_summary(os.path.join(out_root, 'recovery-resumed'))[1][0]['train_loss']))


# ---------------------------------------------------------------------------------------------------------------
# distributed: torchrun, 2 processes on CPU (gloo) vs one process, same global batch
# ---------------------------------------------------------------------------------------------------------------

def test_torchrun_two_procs_matches_single_process(tiny_imagefolder, out_root):
    if not os.path.exists(TORCHRUN):
        pytest.skip('torchrun not installed next to the interpreter')
    common = [a for a in COMMON if a not in ('-b', '4')]
    argv = [tiny_imagefolder, *common, '--method', 'synermix', '--no-aug', '--lr', '0.01', '--output', out_root]
    run_train(*argv, '-b', '8', '--experiment', 'single')
    proc = run_train(*argv, '-b', '4', '--experiment', 'ddp', torchrun=2)
    assert 'distributed mode' in proc.stdout + proc.stderr
    _, single = read_summary(os.path.join(out_root, 'single'))
    _, ddp = read_summary(os.path.join(out_root, 'ddp'))
    assert len(single) == len(ddp) == 1
    s, d = single[0], ddp[0]
    print('single', s, '\nddp', d)
    # same global batches (the sampler shards each global batch across ranks); BatchNorm normalises per rank,
    # supplements are drawn per rank, so the numbers agree within a tolerance, not exactly
    assert float(d['train_loss']) == pytest.approx(float(s['train_loss']), abs=0.15)
    assert float(d['eval_loss']) == pytest.approx(float(s['eval_loss']), abs=0.15)
    assert float(d['lr']) == pytest.approx(float(s['lr']))
    with open(os.path.join(out_root, 'ddp', 'results.json')) as f:
        assert json.load(f)['method'] == 'synermix'
    a = load_ckpt(os.path.join(out_root, 'single', 'last.pth.tar'))['state_dict']
    b = load_ckpt(os.path.join(out_root, 'ddp', 'last.pth.tar'))['state_dict']
    assert set(a) == set(b)
    weights = [k for k in a if k.endswith('.weight') and a[k].ndim > 1]
    assert max((a[k] - b[k]).abs().max().item() for k in weights) < 0.05


# ---------------------------------------------------------------------------------------------------------------
# script-level helpers (no subprocess)
# ---------------------------------------------------------------------------------------------------------------

def test_derive_method_name_and_presets():
    train = _load_train_module()
    _, parser = train._build_parsers()

    def resolved(*argv):
        return train.apply_method(parser.parse_args(['x', *argv]))

    assert resolved().method == 'baseline'
    assert resolved('--mixup', '0.2').method == 'mixup'
    assert resolved('--cutmix', '1.0').method == 'cutmix'
    assert resolved('--synermix').method == 'synermix-intra'
    assert resolved('--synermix', '--synermix-source', 'augmented').method == 'synermix-intra-aug'
    assert resolved('--synermix', '--mixup', '1').method == 'synermix'
    assert resolved('--synermix', '--manifold-mixup').method == 'synermix-manifold'
    a = resolved('--method', 'synermix', '--mixup', '0.05')
    assert a.synermix and a.mixup == 0.05 and a.synermix_beta == 0.1
    a = resolved('--method', 'synermix-manifold')
    assert a.manifold_mixup and a.mixup == 1.0
    for argv in (['--method', 'baseline', '--mixup', '1'], ['--method', 'mixup', '--synermix'],
                 ['--method', 'nope'], ['--method', 'synermix', '--synermix-beta', '2']):
        with pytest.raises(train.UserError):
            resolved(*argv)


def test_summarize_results_last_k():
    train = _load_train_module()
    history = [dict(epoch=e, eval_top1=t) for e, t in enumerate([10., 30., 30., 20., 40.])]
    r = train.summarize_results(history, 'synermix', last_k=2)
    assert r['best_top1'] == 40. and r['best_epoch'] == 4
    assert r['last_k'] == 2 and r['last_k_mean_top1'] == 30. and r['last_k_std_top1'] == 10.
    r = train.summarize_results(history[:4], 'x', last_k=10)
    assert r['best_epoch'] == 1 and r['last_k'] == 4


def test_atomic_write_replaces_whole_file(tmp_path):
    train = _load_train_module()
    path = tmp_path / 'f.bin'
    train.atomic_write(str(path), lambda f: f.write(b'one'))
    with pytest.raises(RuntimeError):
        def fail(f):
            f.write(b'partial')
            raise RuntimeError('disk full')
        train.atomic_write(str(path), fail)
    assert path.read_bytes() == b'one'
    assert os.listdir(tmp_path) == ['f.bin']  # no temp file left behind


def test_cifar_config_runs_end_to_end(tiny_imagefolder, out_root):
    # the shipped CIFAR-100 file on the tiny ImageFolder: CIFAR stem, cutout-like erasing, elem mixup
    run_train('-c', os.path.join(ROOT, 'configs', 'cifar100_resnet18.yaml'), tiny_imagefolder, '--dataset', '',
              '--val-split', 'validation', '--num-classes', '3', '--epochs', '1', '-b', '4', '-j', '0',
              '--device', 'cpu', '--method', 'synermix', '--no-feature-metrics', '--output', out_root,
              '--experiment', 'cifar-config')
    with open(os.path.join(out_root, 'cifar-config', 'args.yaml')) as f:
        args = yaml.safe_load(f)
    assert args['cifar_stem'] and args['reprob'] == 1.0 and args['mixup_mode'] == 'elem' and args['mixup'] == 1.0
    sd = load_ckpt(os.path.join(out_root, 'cifar-config', 'last.pth.tar'))['state_dict']
    assert sd['conv1.weight'].shape[-1] == 3


def test_shipped_configs_parse():
    train = _load_train_module()
    config_dir = os.path.join(ROOT, 'configs')
    files = sorted(glob.glob(os.path.join(config_dir, '*.yaml')))
    assert len(files) >= 12
    for path in files:
        args, _ = train.parse_args(['-c', path])
        assert args.opt == 'sgd' and args.momentum == 0.9 and args.weight_decay == 5e-4, path
        assert args.sched == 'step' and args.decay_rate == 0.5 and args.smoothing == 0, path
        with open(os.path.join(config_dir, 'README.md')) as f:
            assert os.path.basename(path) in f.read(), path
