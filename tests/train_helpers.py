""" Shared by the train.py tests: a tiny ImageFolder, train.py in-process or as a subprocess, cached runs.

Every run trains test_resnet at 32 px on CPU, one thread per process (on a shared 2-core box more
threads are 10x slower), on 3 classes x 6 training images: 4 steps of batch 4 per epoch.

A run is in-process (run_in_process: train.py's main(argv) in the test's interpreter) unless the test is about
the process: a signal, an exit as a process, torchrun, the HF_HUB_OFFLINE read at import. Importing timm and the
trainer costs ~3 s of CPU, a tiny run a fraction of a second. The parity runs need PORTABLE_NUMERICS, read when
torch is imported: they share one subprocess started under it (portable_run).
"""
import csv
import hashlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile

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


# ---------------------------------------------------------------------------------------------------------------
# parity with timm's train.py: numbers recorded under a portable numeric setting
# ---------------------------------------------------------------------------------------------------------------

# One thread, and ATen, oneDNN and MKL held to code paths that any x86-64 CPU with SSE4.1 runs the same way: ATen's
# scalar kernels, oneDNN's SSE4.1 kernels, MKL's conditional-numerical-reproducibility mode. These are read when
# torch is imported, so they only work for a fresh process: train.py (and timm's train.py, when the numbers were
# recorded) runs under them as a subprocess, whatever the outer environment. A tiny run amplifies rounding: on
# one machine, five settings of these variables gave five different epoch-2 eval losses, from 0.49 to 0.61.
# Under this setting an AMD EPYC (AVX2) and an Intel Xeon (AVX-512, AMX) gave the same floats in every parity run,
# given the same Pillow (docs/timm-parity.md, "Across machines").
PORTABLE_NUMERICS = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1', 'ATEN_CPU_CAPABILITY': 'default',
                     'ONEDNN_MAX_CPU_ISA': 'SSE41', 'MKL_CBWR': 'COMPATIBLE'}
# also read at import, and would change the numbers: dropped from a parity run's environment
NUMERIC_KNOBS = ('DNNL_MAX_CPU_ISA', 'ONEDNN_DEFAULT_FPMATH_MODE', 'DNNL_DEFAULT_FPMATH_MODE',
                 'MKL_ENABLE_INSTRUCTIONS', 'MKL_DYNAMIC', 'OMP_DYNAMIC')

# What the pinned numbers were recorded with (timm's train.py at aa4b5850 and ours, side by side). Pillow decodes
# and resizes the images: 12.3.0 in place of 13.0.0 gives other numbers for the same flags (torch 2.11.0 in place
# of 2.14.1 gave the same). Elsewhere the parity tests skip, and fail in CI (conftest.py).
RECORDED_BUILD = {'machine': 'x86_64', 'torch': '2.14.1', 'torchvision': '0.29.1', 'timm': '1.0.31',
                  'pillow': '13.0.0'}


def this_build():
    import platform
    import PIL
    import timm
    import torch
    import torchvision
    return {'machine': platform.machine(), 'torch': torch.__version__.split('+')[0],
            'torchvision': torchvision.__version__.split('+')[0], 'timm': timm.__version__,
            'pillow': PIL.__version__}


def parity_skip_reason():
    """Why the pinned numbers cannot hold here (None when they must)."""
    build = this_build()
    if build != RECORDED_BUILD:
        return (f'parity numbers were recorded with {RECORDED_BUILD}; this is {build}: compare timm\'s train.py and '
                f'ours side by side instead (docs/timm-parity.md, "Across machines")')
    return None


def portable_env(**extra):
    """train_env() under PORTABLE_NUMERICS, whatever the outer environment sets."""
    env = train_env(**extra)
    for key in NUMERIC_KNOBS:
        env.pop(key, None)
    env.update(PORTABLE_NUMERICS)
    return env


def parity_run(*args, torchrun=0):
    """Run train.py under PORTABLE_NUMERICS (a torchrun run as its own subprocess, the others in the shared portable
    interpreter); return the per-epoch (train loss, eval loss, eval top-1) of the run named by --output/--experiment."""
    if torchrun:
        run_train(*args, '--no-feature-metrics', torchrun=torchrun, env=portable_env())
    else:
        portable_run(*args, '--no-feature-metrics')
    args = [str(a) for a in args]
    return per_epoch(os.path.join(args[args.index('--output') + 1], args[args.index('--experiment') + 1]))


PORTABLE_TRAINER = os.path.join(ROOT, 'tests', 'portable_trainer.py')


class _PortableTrainer:
    """One interpreter started under PORTABLE_NUMERICS that runs train.py's main(argv) on request
    (tests/portable_trainer.py): the parity runs pay its imports once. Each run seeds every RNG it draws from
    (timm's random_seed: torch, numpy, random) and reads no state an earlier run left: the pinned numbers came out
    the same with the runs in file order, reversed and shuffled, as they do one process per run."""

    def __init__(self):
        self.proc = None
        self.cache = None

    def run(self, argv, timeout=600):
        if self.proc is None or self.proc.poll() is not None:
            self.close()
            # the datasets library reads its cache and offline switches at import: one cache for this interpreter
            self.cache = tempfile.mkdtemp(prefix='portable-hf-')
            self.proc = subprocess.Popen([PYTHON, PORTABLE_TRAINER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         cwd=ROOT, text=True,
                                         env=portable_env(HF_DATASETS_OFFLINE='1', HF_DATASETS_CACHE=self.cache))
        fd, log = tempfile.mkstemp(prefix='portable-run-', suffix='.log')
        os.close(fd)
        try:
            self.proc.stdin.write(json.dumps({'argv': [str(a) for a in argv], 'log': log}) + '\n')
            self.proc.stdin.flush()
            answered = select.select([self.proc.stdout], [], [], timeout)[0]
            reply = self.proc.stdout.readline() if answered else ''
            with open(log) as f:
                output = f.read()
        finally:
            os.unlink(log)
        if not answered:
            self.close(kill=True)
            raise AssertionError(f'the portable trainer did not answer within {timeout} s:\n{output[-6000:]}')
        if not reply:
            raise AssertionError(f'the portable trainer exited ({self.proc.wait()}):\n{output[-6000:]}')
        return json.loads(reply)['code'], output

    def close(self, kill=False):
        if self.proc is not None:
            if kill:
                self.proc.kill()
            self.proc.stdin.close()   # it exits at the end of its input
            self.proc.wait(timeout=60)
            self.proc = None
        if self.cache is not None:
            shutil.rmtree(self.cache, ignore_errors=True)
            self.cache = None


PORTABLE_TRAINER_PROCESS = _PortableTrainer()


def portable_run(*args, check=True):
    """train.py's main(args) in the shared interpreter under PORTABLE_NUMERICS; returns (exit code, output)."""
    code, output = PORTABLE_TRAINER_PROCESS.run(args)
    if check and code != 0:
        raise AssertionError(f'train.py failed ({code}) under PORTABLE_NUMERICS:\n{output[-6000:]}')
    return code, output


def per_epoch(folder):
    _, rows = read_summary(folder)
    return [(float(r['train_loss']), float(r['eval_loss']), float(r['eval_top1'])) for r in rows]


def assert_same_as_timm(ours, timm_numbers):
    """Exactly equal: under PORTABLE_NUMERICS our train.py and timm's run the same ops in the same order, and
    printed the same floats when these were recorded. No tolerance would help where the floats differ: these tiny
    runs grow a rounding difference in one step to 1e-2 or more by epoch 2 (one eval loss went from 0.49 to 0.61
    across five numeric settings)."""
    assert ours == timm_numbers, (f'per-epoch (train loss, eval loss, top-1) departs from timm\'s train.py, '
                                  f'recorded under {PORTABLE_NUMERICS} with {RECORDED_BUILD}:\n'
                                  f'  ours: {ours}\n  timm: {timm_numbers}')


def save_teacher(folder):
    """A test_resnet teacher saved with timm's save_for_hf, its conv and linear weights drawn by numpy (seed 0, normal,
    at the scale of timm's init: sqrt(2 / fan_out) for a conv, 1 / sqrt(3 fan_in) for the head), its biases zero:
    numpy's generator gives the same floats on every machine, where torch's normal_ does not (its AVX2 kernel gives
    other floats than the scalar one, up to 3e-7 apart in this model)."""
    import timm
    import torch
    from timm.models._hub import save_for_hf
    model = timm.create_model('test_resnet', num_classes=3)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                w = module.weight
                std = np.sqrt(2 / w[:, 0].numel()) if w.dim() == 4 else 1 / np.sqrt(3 * w.shape[1])
                w.copy_(torch.from_numpy(rng.standard_normal(tuple(w.shape)) * std))
                if module.bias is not None:
                    module.bias.zero_()
    save_for_hf(model, str(folder), safe_serialization=True)
    return str(folder)


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
    """Output folder of a one-epoch in-process run of `method` (run once per session, per xdist worker: tests that
    share a run are in one xdist_group)."""
    key = (method, tuple(extra))
    if key not in RUNS:
        exp = method + ('-' + '-'.join(a.strip('-') for a in extra) if extra else '')
        # feature metrics (sklearn) cost a few seconds: computed for the SynerMix run only
        metrics = () if method == 'synermix' else ('--no-feature-metrics',)
        proc = run_in_process(data, *COMMON, '--method', method, '--output', out_root, '--experiment', exp, *extra,
                              *metrics)
        RUNS[key] = (os.path.join(out_root, exp), proc)
    return RUNS[key][0]


def load_train_module():
    """The trainer's main module, for in-process main(argv) calls."""
    from timm_synermix.trainer import main
    return main


def main_in_process(*argv):
    """train.py's main(argv) in this process; returns the exit code. What main() sets for the process is put back:
    timm's setup_default_logging adds a root handler bound to this test's stderr and sets the root level to INFO
    (left as it was, later tests' caplog and log output would depend on which in-process run came first)."""
    import logging
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return load_train_module().main([str(a) for a in argv])
    except SystemExit as e:
        return e.code
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def run_in_process(*args, check=True):
    """run_train's result in-process: main(args) with its stdout and stderr captured, as a CompletedProcess."""
    import contextlib
    import io
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main_in_process(*args)
    proc = subprocess.CompletedProcess([str(a) for a in args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f'train.py failed ({code}) in-process:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}')
    return proc
