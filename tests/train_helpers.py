""" Shared by the train.py tests: a tiny ImageFolder, train.py as a subprocess or in-process, cached runs.

Every run trains test_resnet at 32 px on CPU, one thread per process (on a shared 2-core box more
threads are 10x slower), on 3 classes x 6 training images: 4 steps of batch 4 per epoch.
"""
import csv
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, 'train.py')
PYTHON = sys.executable
TORCHRUN = os.path.join(os.path.dirname(sys.executable), 'torchrun')

COMMON = ['--model', 'test_resnet', '--img-size', '32', '-b', '4', '--epochs', '1', '--device', 'cpu', '-j', '0',
          '--sched', 'step', '--decay-epochs', '100', '--warmup-epochs', '0', '--lr', '0.05', '--smoothing', '0',
          '--log-interval', '1', '--seed', '7']


def train_env(threads=1, **extra):
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE='1', PYTHONUNBUFFERED='1', **extra)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    return env


def train_cmd(*args, torchrun=0):
    cmd = [TORCHRUN, '--standalone', f'--nproc_per_node={torchrun}', TRAIN] if torchrun else [PYTHON, TRAIN]
    return cmd + [str(a) for a in args]


def run_train(*args, check=True, cwd=None, torchrun=0, env=None):
    proc = subprocess.run(train_cmd(*args, torchrun=torchrun), cwd=cwd or ROOT, env=env or train_env(),
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


def max_diff(a, b):
    assert set(a) == set(b)
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def hash_tree(folder):
    """{relative path: sha256} of every file under folder."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, 'rb') as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


def write_image_folder(root, n_train=6, n_val=2, classes=3):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (('train', n_train), ('validation', n_val)):
        for c in range(classes):
            folder = os.path.join(root, split, f'class{c}')
            os.makedirs(folder)
            for i in range(n):
                pixels = (rng.random((40, 40, 3)) * 80 + c * 80).astype(np.uint8)  # learnable: class = brightness
                Image.fromarray(pixels).save(os.path.join(folder, f'{i}.png'))
    return str(root)


_SESSION = {}


@pytest.fixture(scope='session')
def tiny_imagefolder(tmp_path_factory):
    if 'data' not in _SESSION:  # one copy when several test modules import this fixture
        _SESSION['data'] = write_image_folder(tmp_path_factory.mktemp('tiny_imagefolder'))
    return _SESSION['data']


@pytest.fixture(scope='session')
def out_root(tmp_path_factory):
    if 'out' not in _SESSION:
        _SESSION['out'] = str(tmp_path_factory.mktemp('train_output'))
    return _SESSION['out']


RUNS = {}


def method_run(method, data, out_root, extra=()):
    """Output folder of a one-epoch run of `method` (run once per session)."""
    key = (method, tuple(extra))
    if key not in RUNS:
        exp = method + ('-' + '-'.join(a.strip('-') for a in extra) if extra else '')
        # feature metrics (sklearn) cost a few seconds: computed for the SynerMix run only
        metrics = () if method == 'synermix' else ('--no-feature-metrics',)
        proc = run_train(data, *COMMON, '--method', method, '--output', out_root, '--experiment', exp, *extra,
                         *metrics)
        RUNS[key] = (os.path.join(out_root, exp), proc)
    return RUNS[key][0]


def load_train_module():
    """The trainer's main module, for in-process main(argv) calls."""
    from timm_synermix.trainer import main
    return main
