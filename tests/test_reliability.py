""" Reliability of train.py: crash-safe checkpoints, exact resume, one-line input errors, no hangs.

- SIGKILL a real training run (a subprocess) at a seeded random point (mid-epoch, or while a checkpoint is being
  written), resume it from the newest good checkpoint, and compare the final weights with an uninterrupted run's
  (both in-process: one torch thread, as the subprocess).
- Bad input: one parametrised matrix, each row asserting the one-line message, the exit code and that the
  output folder's files are unchanged (hashed before and after). Most rows call train.py's main(argv)
  in-process (seconds saved on imports); rows marked 'subprocess' also check the exit code and that no
  traceback is printed.
- A rank that dies under a 2-process CPU (gloo) run makes the other exit non-zero within --dist-timeout.
"""
import os
import random
import shutil
import signal
import socket
import subprocess
import time

import pytest
import torch
import torch.nn as nn
import yaml

from train_helpers import (COMMON, ROOT, hash_tree, load_ckpt, max_diff, out_root, read_summary,  # noqa: F401
                           run_in_process, run_train, tiny_imagefolder, train_cmd, train_env, write_image_folder)
from train_helpers import main_in_process as _main
from timm_synermix.trainer.checkpoint import SAVE_DELAY_ENV, newest_good_checkpoint

CRASH_ARGS = [*COMMON, '--method', 'synermix', '--epochs', '3', '--no-feature-metrics', '--checkpoint-hist', '2',
              '--model-ema', '--model-ema-decay', '0.9']


# ---------------------------------------------------------------------------------------------------------------
# SIGKILL and resume
# ---------------------------------------------------------------------------------------------------------------

def _wait_then_kill(proc, folder, ready, timeout=300):
    """Poll `folder` until ready(names) holds, then SIGKILL the run. Returns False if the run ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        names = os.listdir(folder) if os.path.isdir(folder) else []
        if ready(names):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    proc.kill()
    raise AssertionError('the run never reached the kill point')


KILL_CASES = {
    # mid-epoch, recovery checkpoint after every step: exact with -j 0 and no prefetcher (see README)
    'mid-epoch': dict(extra=['--recovery-interval', '1', '--no-prefetcher', '-j', '0'], env={}),
    # while a checkpoint's temp file exists (the save is slowed), with a worker process and the prefetcher
    'during-save': dict(extra=['-j', '1'], env={SAVE_DELAY_ENV: '0.4'}),
}


@pytest.mark.parametrize('case', list(KILL_CASES))
def test_sigkill_then_resume_matches_uninterrupted_run(case, tiny_imagefolder, out_root):
    extra, env = KILL_CASES[case]['extra'], KILL_CASES[case]['env']
    ref_dir = os.path.join(out_root, f'kill-{case}-ref')
    run_in_process(tiny_imagefolder, *CRASH_ARGS, *extra, '--output', out_root, '--experiment', f'kill-{case}-ref')

    # the kill point: seeded, so a failure reproduces; SYNERMIX_KILL_SEED=n tries other points
    rng = random.Random(f'{case}-{os.environ.get("SYNERMIX_KILL_SEED", "0")}')
    exp_dir = os.path.join(out_root, f'kill-{case}')
    if case == 'mid-epoch':
        epoch, step = rng.randrange(3), rng.randrange(3)  # 4 steps per epoch: recovery after steps 0..2
        target = f'recovery-{epoch}-{step}.pth.tar'

        def ready(names):
            return target in names
    else:
        epoch = rng.randrange(1, 3)  # the checkpoint write of epoch 1 or 2: last.pth.tar of the one before exists
        seen = set()

        def ready(names):
            seen.update(n for n in names if n.startswith('.tmp.pth.tar.') and n.endswith('.tmp'))
            return len(seen) == epoch + 1 and any(n.startswith('.tmp.pth.tar.') for n in names)
    proc = subprocess.Popen(train_cmd(tiny_imagefolder, *CRASH_ARGS, *extra, '--output', out_root,
                                      '--experiment', f'kill-{case}'),
                            cwd=ROOT, env=train_env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed = _wait_then_kill(proc, exp_dir, ready)
    assert killed, proc.stderr.read().decode()[-3000:]

    last = os.path.join(exp_dir, 'last.pth.tar')
    if case == 'during-save':
        assert load_ckpt(last)['epoch'] == epoch - 1  # the interrupted write left the previous one whole
    resume = newest_good_checkpoint(exp_dir)
    assert resume is not None
    # a different --seed on the resume command: the sampler and RNG states come from the checkpoint
    run_in_process(tiny_imagefolder, *CRASH_ARGS, *extra, '--output', out_root, '--experiment', f'kill-{case}',
                   '--resume', resume, '--seed', '8')
    a, b = load_ckpt(os.path.join(ref_dir, 'last.pth.tar')), load_ckpt(last)
    assert max_diff(a['state_dict'], b['state_dict']) == 0.0, f'resumed from {resume}'
    assert max_diff(a['state_dict_ema'], b['state_dict_ema']) == 0.0
    assert a['optimizer']['state'].keys() == b['optimizer']['state'].keys()
    assert all(torch.equal(a['optimizer']['state'][k]['momentum_buffer'], b['optimizer']['state'][k]['momentum_buffer'])
               for k in a['optimizer']['state'])
    assert a['task_state'] == b['task_state'] and a['epoch'] == b['epoch'] == 2
    assert read_summary(ref_dir) == read_summary(exp_dir)
    assert not [n for n in os.listdir(exp_dir) if n.endswith('.tmp')]  # the killed write's temp file is gone


# ---------------------------------------------------------------------------------------------------------------
# bad input: one line, exit code 2, output folder untouched
# ---------------------------------------------------------------------------------------------------------------

class _NoPreLogits(nn.Module):
    """A model whose forward_head has no pre_logits argument."""

    def __init__(self, num_classes=1000, in_chans=3, **kwargs):
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2d(in_chans, 8, 3)
        self.fc = nn.Linear(8, num_classes)

    def forward_features(self, x):
        return self.conv(x)

    def forward_head(self, x):
        return self.fc(x.mean((2, 3)))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def _register_no_pre_logits():
    from timm.models import register_model
    from timm.models._registry import is_model
    if not is_model('synermix_test_no_pre_logits'):
        def synermix_test_no_pre_logits(pretrained=False, **kwargs):
            return _NoPreLogits(**kwargs)
        register_model(synermix_test_no_pre_logits)


@pytest.fixture(scope='module')
def trained(tiny_imagefolder, tmp_path_factory):
    """One finished 1-epoch run (in-process), copied (hard links) into each row's output folder."""
    root = str(tmp_path_factory.mktemp('reliability_src'))
    _main(tiny_imagefolder, *COMMON, '--method', 'baseline', '--no-feature-metrics', '--output', root,
          '--experiment', 'run')
    return os.path.join(root, 'run')


@pytest.fixture(scope='module')
def bad_data(tiny_imagefolder, tmp_path_factory):
    root = tmp_path_factory.mktemp('bad_data')
    singleton = write_image_folder(str(root / 'singleton'))
    for name in os.listdir(os.path.join(singleton, 'train', 'class2'))[1:]:
        os.unlink(os.path.join(singleton, 'train', 'class2', name))
    broken = str(root / 'broken')
    shutil.copytree(tiny_imagefolder, broken)
    with open(os.path.join(broken, 'train', 'class1', 'broken.png'), 'wb') as f:
        f.write(b'this is not a png')
    os.makedirs(root / 'empty')
    with open(root / 'typo.yaml', 'w') as f:
        yaml.safe_dump({'model': 'test_resnet', 'smothing': 0.0}, f)
    with open(root / 'types.yaml', 'w') as f:   # a boolean as a string would turn EMA on; a list is no epoch count
        yaml.safe_dump({'model_ema': 'false', 'epochs': [1], 'lr': '1e-2'}, f)
    val_extra = str(root / 'val_extra')
    shutil.copytree(tiny_imagefolder, val_extra)
    shutil.copytree(os.path.join(val_extra, 'validation', 'class1'), os.path.join(val_extra, 'validation', 'class9'))
    import timm
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in timm.create_model('resnet18', num_classes=3).state_dict().items()},
              str(root / 'resnet18.safetensors'))
    torch.save({'fc.weight': torch.zeros(3, 8)}, root / 'weights.pth')
    return dict(singleton=singleton, broken=broken, empty=str(root / 'empty'), missing=str(root / 'missing'),
                typo=str(root / 'typo.yaml'), types=str(root / 'types.yaml'), val_extra=val_extra,
                resnet18=str(root / 'resnet18.safetensors'), foreign=str(root / 'weights.pth'))


BASE = [*COMMON, '--no-feature-metrics']

# id: (argv after DIR, DIR key (None: the tiny ImageFolder), needle in the message, how it is run)
# '{out}' is the guarded experiment folder (a finished run), '{new}' a fresh experiment name under the same root.
BAD_INPUT = {
    'beta-outside-0-1': (['--method', 'synermix', '--synermix-beta', '1.5'], None, 'outside [0, 1]', 'in-process'),
    'unknown-method': (['--method', 'synermx'], None, 'Did you mean "synermix"', 'subprocess'),
    'singleton-class': (['--method', 'synermix'], 'singleton', 'single training image cannot be supplemented: class2', 'in-process'),
    'num-classes-vs-data': (['--method', 'synermix', '--num-classes', '2'], None, 'outside [0, 2)', 'in-process'),
    'no-pre-logits': (['--method', 'synermix', '--model', 'synermix_test_no_pre_logits'], None,
                      'pre_logits=True', 'in-process'),
    'manifold-layer': (['--method', 'manifold-mixup', '--manifold-layers', 'layer9'], None,
                       'layer "layer9" is not a module', 'in-process'),
    'batch-size-1': (['--method', 'synermix', '-b', '1'], None, '--batch-size 1: SynerMix needs', 'in-process'),
    'yaml-unknown-key': (['-c', '{typo}'], None, "unknown key 'smothing' (did you mean 'smoothing'?)", 'in-process'),
    'missing-data': ([], 'missing', 'does not exist', 'in-process'),
    'empty-data': ([], 'empty', 'is empty', 'in-process'),
    'undecodable-image': (['--method', 'baseline'], 'broken', 'broken.png', 'in-process (skips, warns)'),
    'truncated-resume': (['--resume', '{out}/last.pth.tar', '--experiment', '{out_name}', '--epochs', '2'], None,
                         'last.pth.tar\' is truncated', 'subprocess'),
    'foreign-resume': (['--resume', '{foreign}', '--epochs', '2'], None, 'not a training checkpoint', 'in-process'),
    'pretrained-shapes': (['--method', 'synermix', '--pretrained-path', '{resnet18}'], None, 'mismatched keys',
                          'in-process'),
    'nan-loss': (['--resume', '{out}/last.pth.tar', '--experiment', '{out_name}', '--epochs', '2', '--no-resume-opt',
                  '--lr', 'inf'], None, 'training stopped and the last good checkpoint', 'in-process'),
    'existing-experiment': (['--experiment', '{out_name}'], None, 'pass --resume', 'in-process'),
    'val-class-unknown-to-train': ([], 'val_extra', "classes the 'train' split lacks: class9", 'in-process'),
    'yaml-types': (['-c', '{types}'], None, "epochs: [1] must be an integer; model_ema: 'false' must be true or "
                                           'false', 'in-process'),
    'epochs-zero': (['--epochs', '0'], None, '--epochs 0 must be at least 1', 'in-process'),
    'negative-lr-and-workers': (['--lr', '-1', '-j', '-2'], None,
                                '-j/--workers -2 must be 0 or more; --lr -1.0 must be 0 or more', 'in-process'),
    'unknown-names': (['--model', 'resnet1O', '--opt', 'sdg', '--sched', 'cosin'], None,
                      '--model resnet1O is not a timm model (did you mean', 'subprocess'),
    'mean-length': (['--mean', '0.5', '0.5'], None, '--mean has 2 values: give 1 or 3', 'in-process'),
    'start-past-epochs': (['--start-epoch', '3', '--epochs', '2'], None, 'a later start trains nothing', 'in-process'),
    'resume-into-another-run': (['--resume', '{out}/last.pth.tar', '--experiment', 'other'], None,
                                'holds another run: resume with --experiment guarded', 'in-process'),
    'resume-changes-the-method': (['--resume', '{out}/last.pth.tar', '--experiment', '{out_name}', '--epochs', '2',
                                   '--method', 'synermix', '-b', '6'], None,
                                  'changes what it is (--batch-size 4 -> 6, --method baseline -> synermix', 'in-process'),
    # What the run is beyond the headline settings: the loss, a teacher, the augmentation.
    'resume-changes-the-loss': (['--resume', '{out}/last.pth.tar', '--experiment', '{out_name}', '--epochs', '2',
                                 '--smoothing', '0.1'], None, 'changes what it is (--smoothing 0.0 -> 0.1)',
                                'in-process'),
    'resume-adds-a-teacher': (['--resume', '{out}/last.pth.tar', '--experiment', '{out_name}', '--epochs', '2',
                               '--kd-model-name', 'local-dir:{missing}'], None,
                              'changes what it is (--kd-model-name None -> local-dir:', 'in-process'),
    'resume-changes-the-augmentation': (['--resume', '{out}/last.pth.tar', '--experiment', '{out_name}', '--epochs',
                                         '2', '--reprob', '0.25'], None, '--reprob 0.0 -> 0.25', 'in-process'),
    'scheduled-sizes-with-synermix': (['--method', 'synermix', '--train-img-sizes', '32', '48'], None,
                                      '--train-img-sizes with SynerMix', 'in-process'),
    'scheduled-companion-alone': (['--variable-batch-loss-scale', 'sqrt'], None, 'add --train-img-sizes',
                                  'in-process'),
    'task-multilabel': (['--task', 'multilabel'], None, '--task: only single-label classification', 'in-process'),
    'resplit-with-synermix-no-splits': (['--method', 'synermix', '--resplit'], None,
                                        '--resplit with --aug-splits 0', 'in-process'),
    'multi-epochs-loader-with-scheduled-sizes': (['--use-multi-epochs-loader', '--train-img-sizes', '32', '48'], None,
                                                 '--use-multi-epochs-loader with --train-img-sizes', 'in-process'),
    'fixed-batches-with-repeats': (['--method', 'synermix', '--synermix-batches', 'fixed', '--aug-repeats', '3'],
                                   None, '--synermix-batches fixed with --aug-repeats 3', 'in-process'),
    'multi-label-loss': (['--loss', 'zlpr'], None, "--loss zlpr: Loss type 'zlpr' requires multi-label targets",
                         'in-process'),
    'two-losses': (['--loss', 'ce', '--bce-loss'], None, '--loss ce and --bce-loss both choose', 'in-process'),
    'device-module-missing': (['--device-modules', 'no_such_backend_module'], None,
                              '--device-modules no_such_backend_module: cannot import it', 'in-process'),
    'jsd-without-splits': (['--jsd-loss'], None, '--jsd-loss compares AugMix splits: add --aug-splits', 'in-process'),
    'augmix-with-mixup': (['--aug-splits', '3', '--jsd-loss', '--mixup', '0.8'], None,
                          '--aug-splits 3 with mixup/cutmix', 'in-process'),
    'repeats-with-paired-batches': (['--method', 'synermix', '--synermix-batches', 'paired', '--aug-repeats', '3'],
                                    None, '--aug-repeats 3 with paired', 'in-process'),
    'model-dtype-with-amp': (['--model-dtype', 'bfloat16', '--amp'], None, 'AMP needs float32 weights', 'in-process'),
    'feature-distillation-with-synermix': (['--method', 'synermix', '--kd-model-name', 'local-dir:{missing}',
                                            '--kd-distill-type', 'feature'], None,
                                           '--kd-distill-type feature with SynerMix', 'in-process'),
    'distillation-without-teacher': (['--kd-model-name', 'local-dir:{missing}'], None,
                                     '--kd-model-name local-dir:', 'in-process'),
    'truncated-initial-checkpoint': (['--initial-checkpoint', '{out}/last.pth.tar'], None, 'could not be loaded',
                                     'in-process'),
    'output-is-a-file': (['--output', '{out}/args.yaml'], None, 'is a file, not a folder', 'in-process'),
    'folder-in-use': (['--resume', '{out}/last.pth.tar', '--experiment', '{out_name}', '--epochs', '2'], None,
                      'is in use by process', 'in-process'),
}


@pytest.mark.parametrize('row', list(BAD_INPUT))
def test_bad_input_one_line_exit_2_folder_untouched(row, trained, bad_data, tiny_imagefolder, tmp_path, capsys,
                                                     caplog):
    argv, data_key, needle, how = BAD_INPUT[row]
    _register_no_pre_logits()
    out_root = str(tmp_path / 'out')
    guarded = os.path.join(out_root, 'guarded')
    shutil.copytree(trained, guarded, copy_function=os.link)
    if row == 'resume-into-another-run':  # a second finished run, which the resume must not overwrite
        shutil.copytree(trained, os.path.join(out_root, 'other'), copy_function=os.link)
    if row == 'folder-in-use':   # another live process holds the folder
        with open(os.path.join(guarded, '.lock'), 'w') as f:
            f.write(f'{os.getppid()} {socket.gethostname()}\n')
    if row in ('truncated-resume', 'truncated-initial-checkpoint'):  # cut short, as a non-atomic writer could leave it
        data = open(os.path.join(guarded, 'last.pth.tar'), 'rb').read()
        os.unlink(os.path.join(guarded, 'last.pth.tar'))
        with open(os.path.join(guarded, 'last.pth.tar'), 'wb') as f:
            f.write(data[:len(data) // 3])
    before = hash_tree(out_root)
    fields = dict(bad_data, out=guarded, out_name='guarded')
    argv = [a.format(**fields) for a in argv]
    if '--experiment' not in argv:
        argv += ['--experiment', 'new']
    full = [bad_data[data_key] if data_key else tiny_imagefolder, *BASE, *argv]
    if '--output' not in argv:
        full += ['--output', out_root]

    if how == 'subprocess':
        proc = run_train(*full, check=False)
        code, err = proc.returncode, proc.stderr
        assert 'Traceback' not in err, err[-3000:]
    else:
        code = _main(*full)
        err = capsys.readouterr().err

    if row == 'undecodable-image':  # skipped with a warning naming the file; the run goes on
        assert code == 0
        assert any('Skipped sample' in r.getMessage() and needle in r.getMessage() for r in caplog.records)
        assert os.path.isfile(os.path.join(out_root, 'new', 'last.pth.tar'))
        after = hash_tree(out_root)
        assert {k: v for k, v in after.items() if not k.startswith('new')} == before
        return
    assert code == 2, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith('train.py: error:')]
    assert len(lines) == 1 and needle in lines[0], err[-3000:]
    assert hash_tree(out_root) == before
    assert not os.path.exists(os.path.join(out_root, 'new')) or not os.listdir(os.path.join(out_root, 'new'))
    if row == 'truncated-resume':
        assert 'checkpoint-0.pth.tar' in lines[0]  # names the newest good checkpoint
    if row == 'nan-loss':
        assert 'at epoch 1, step 1' in lines[0] or 'at epoch 1, step 0' in lines[0]


# ---------------------------------------------------------------------------------------------------------------
# a dead rank never hangs the others
# ---------------------------------------------------------------------------------------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.parametrize('fault', ['killed', 'hung'])
def test_dead_rank_makes_the_other_exit_within_timeout(fault, tiny_imagefolder, tmp_path):
    """Rank 1 is SIGKILLed (its sockets close: rank 0 fails at once) or SIGSTOPped (a hung rank: nothing
    closes, rank 0 fails when --dist-timeout expires)."""
    timeout = 10
    port = _free_port()
    argv = train_cmd(tiny_imagefolder, *COMMON, '--method', 'synermix', '--epochs', '200', '--no-feature-metrics',
                     '--dist-timeout', timeout, '--output', tmp_path, '--experiment', 'ddp')
    procs, logs = [], []
    for rank in range(2):
        env = train_env(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                        WORLD_SIZE='2')
        log = open(tmp_path / f'rank{rank}.log', 'w+')
        logs.append(log)
        procs.append(subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        deadline = time.time() + 240
        while 'Train: 1 ' not in (tmp_path / 'rank0.log').read_text():  # both ranks are in the training loop
            assert time.time() < deadline and procs[0].poll() is None and procs[1].poll() is None, \
                (tmp_path / 'rank0.log').read_text()[-3000:]
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGKILL if fault == 'killed' else signal.SIGSTOP)
        killed_at = time.time()
        code = procs[0].wait(timeout=timeout + 60)
        elapsed = time.time() - killed_at
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
    print(f'rank 0 exited with {code} {elapsed:.1f}s after rank 1 was {fault}')
    assert code != 0
    assert elapsed < timeout + 30, elapsed
    if fault == 'hung':
        assert elapsed > timeout / 2, elapsed  # it was the timeout, not a closed socket, that ended it


# ---------------------------------------------------------------------------------------------------------------
# no silent wrong numbers; folders; interrupts
# ---------------------------------------------------------------------------------------------------------------

def test_eval_classes_keep_training_indices_when_validation_lacks_one(tiny_imagefolder, tmp_path):
    data = str(tmp_path / 'data')
    shutil.copytree(tiny_imagefolder, data)
    shutil.rmtree(os.path.join(data, 'validation', 'class1'))   # timm alone would relabel class2 as 1
    assert _main(data, *BASE, '--output', tmp_path, '--experiment', 'run') == 0
    import numpy as np
    labels = np.load(tmp_path / 'run' / 'features.npz')['labels']
    assert sorted(set(labels.tolist())) == [0, 2]


def test_a_run_that_failed_before_its_first_checkpoint_can_be_rerun(tiny_imagefolder, tmp_path):
    folder = tmp_path / 'run'
    folder.mkdir()
    (folder / 'args.yaml').write_text('model: test_resnet\n')   # what a start that failed could leave
    assert _main(tiny_imagefolder, *BASE, '--output', tmp_path, '--experiment', 'run') == 0
    assert (folder / 'results.json').is_file()


def test_a_dead_processs_lock_is_taken_over(tiny_imagefolder, tmp_path):
    dead = subprocess.Popen(['true'])
    dead.wait()
    folder = tmp_path / 'run'
    folder.mkdir()
    (folder / '.lock').write_text(f'{dead.pid} {socket.gethostname()}\n')
    assert _main(tiny_imagefolder, *BASE, '--output', tmp_path, '--experiment', 'run') == 0
    assert not (folder / '.lock').exists()


def test_wsd_schedule_with_the_default_decay_epochs_trains(tiny_imagefolder, tmp_path):
    i = BASE.index('--decay-epochs')
    base = BASE[:i] + BASE[i + 2:]
    assert _main(tiny_imagefolder, *base, '--sched', 'wsd', '--epochs', '5', '--output', tmp_path,
                 '--experiment', 'wsd') == 0


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_at_a_safe_point_with_a_resumable_checkpoint(sig, tiny_imagefolder, tmp_path):
    argv = [tiny_imagefolder, *BASE, '--epochs', '50', '--output', tmp_path, '--experiment', 'run']
    proc = subprocess.Popen(train_cmd(*argv), cwd=ROOT, env=train_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    folder = tmp_path / 'run'
    deadline = time.time() + 240
    while not (folder / 'checkpoint-1.pth.tar').exists():   # two epochs done: mid-training
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.05)
    proc.send_signal(sig)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 128 + sig, err[-3000:]
    line = [x for x in err.splitlines() if x.startswith('train.py: stopped by')]
    assert len(line) == 1 and 'no final results written; continue with: python train.py' in line[0]
    assert not (folder / 'results.json').exists() and not (folder / '.lock').exists()
    command = line[0].split('continue with: ')[1].split()
    resume = command[command.index('--resume') + 1]
    assert os.path.basename(resume).startswith('recovery-') and os.path.isfile(resume)
    ckpt = load_ckpt(resume)
    assert ckpt['synermix']['next_batch'] is not None   # mid-epoch: the step after the signal
    run_in_process(*command[2:command.index('--epochs')], '--epochs', '3', *command[command.index('--epochs') + 2:])
    assert (folder / 'results.json').is_file()


def test_a_non_finite_loss_stops_every_rank_naming_the_step(tiny_imagefolder, tmp_path):
    if not os.path.exists(os.path.join(os.path.dirname(train_cmd()[0]), 'torchrun')):
        pytest.skip('torchrun not installed next to the interpreter')
    proc = run_train(tiny_imagefolder, *BASE, '--lr', 'inf', '-b', '2', '--output', tmp_path, '--experiment', 'nan',
                     '--dist-timeout', '60', check=False, torchrun=2)
    output = proc.stdout + proc.stderr
    lines = [x for x in output.splitlines() if x.startswith('train.py: error: loss is not finite')]   # one per rank
    assert proc.returncode != 0 and len(lines) == 2, output[-3000:]
    assert all('at epoch 0, step 1' in x for x in lines)   # the first step's update makes the second step's loss inf
    # torchrun's own failure report gives the line as the root cause (distributed.report_to_torchrun)
    assert f'traceback : {lines[0]}' in output.partition('Root Cause')[2], output[-3000:]


def test_a_run_of_unreadable_images_stops_in_one_line_and_the_command_reruns(tiny_imagefolder, tmp_path):
    # timm's dataset skips an unreadable image with a warning, but raises after several in a row: every training
    # image here is broken, so the first batch ends the run, with one line and no checkpoint to trip a rerun.
    data = tmp_path / 'data'
    shutil.copytree(tiny_imagefolder, data)
    for path in (data / 'train').glob('*/*'):
        path.write_bytes(b'not an image')
    argv = [data, *BASE, '--output', tmp_path / 'out', '--experiment', 'unreadable']
    for _ in range(2):   # the printed advice, "rerun the same command", gets the same answer, not a refusal
        proc = run_in_process(*argv, check=False)
        lines = [x for x in proc.stderr.splitlines() if x.startswith('train.py: error:')]
        assert proc.returncode == 2 and 'Traceback' not in proc.stderr and len(lines) == 1, proc.stderr[-2000:]
        assert 'images could not be read in epoch 0 (Failed to load 10 consecutive samples)' in lines[0]
        assert not [f for f in os.listdir(tmp_path / 'out' / 'unreadable') if f.endswith('.pth.tar')]
