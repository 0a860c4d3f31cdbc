""" Reliability of train.py: the numbers a user reads, the output folder, late signals.

Each test holds one promise. Bad input gets the contract of tests/test_reliability.py: one line naming the
problem and the fix, exit code 2, and nothing written (the output root hashed before and after).
"""
import os

import pytest

from train_helpers import COMMON, hash_tree, read_summary, tiny_imagefolder  # noqa: F401
from train_helpers import main_in_process as _main

BASE = [*COMMON, '--no-feature-metrics']


def _refused(capsys, root, *argv):
    """Run train.py in-process; assert one error line, exit code 2 and `root` unchanged; return the line."""
    before = hash_tree(root) if os.path.isdir(root) else None
    code = _main(*argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith('train.py: error:')]
    assert code == 2 and len(lines) == 1, err[-3000:]
    assert (hash_tree(root) if os.path.isdir(root) else None) == before
    return lines[0]


def test_grad_accum_logs_the_train_loss_timm_logs(tiny_imagefolder, tmp_path):
    # --lr 0: the weights never move, so every step sees the same model and the mean loss cannot depend on how
    # the steps are grouped into updates; timm logs the batch's loss, not accum_steps times it.
    losses = {}
    for accum in (1, 2):
        assert _main(tiny_imagefolder, *BASE, '--lr', '0', '--grad-accum-steps', accum, '--output', tmp_path,
                     '--experiment', f'accum{accum}') == 0
        losses[accum] = float(read_summary(tmp_path / f'accum{accum}')[1][0]['train_loss'])
    assert losses[2] == pytest.approx(losses[1], rel=1e-5), losses


def test_stop_epoch_at_epochs_is_unfinished_when_cooldown_extends_the_schedule(tiny_imagefolder, tmp_path):
    import json
    argv = [tiny_imagefolder, *BASE, '--sched', 'cosine', '--cooldown-epochs', '1', '--output', tmp_path,
            '--experiment', 'run']   # --epochs 1: two scheduled epochs
    assert _main(*argv, '--stop-epoch', '1') == 0
    results = json.loads((tmp_path / 'run' / 'results.json').read_text())
    assert results['finished'] is False and results['cost']['epochs'] == 1
    assert _main(*argv, '--resume', tmp_path / 'run' / 'last.pth.tar') == 0   # the cooldown epoch is still due
    results = json.loads((tmp_path / 'run' / 'results.json').read_text())
    assert results['finished'] is True and results['cost']['epochs'] == 2


def test_a_yaml_config_key_given_twice_is_refused_naming_it(tiny_imagefolder, tmp_path, capsys):
    config = tmp_path / 'twice.yaml'
    config.write_text('model: test_resnet\nsmoothing: 0.1\nepochs: 2\nsmoothing: 0.0\n')
    out = tmp_path / 'out'
    line = _refused(capsys, out, tiny_imagefolder, *BASE, '-c', config, '--output', out, '--experiment', 'run')
    assert "key 'smoothing' is given twice (line 4): keep one of the two values" in line
    config.write_text('lr-base: 0.1\nlr_base: 0.2\n')
    line = _refused(capsys, out, tiny_imagefolder, *BASE, '-c', config, '--output', out, '--experiment', 'run')
    assert "keys 'lr-base' and 'lr_base' set the same option" in line
    assert not out.exists()


@pytest.mark.parametrize('experiment', ['../escaped', '/tmp/synermix-escaped', 'a/../../escaped'])
def test_an_experiment_name_leading_outside_output_is_refused(experiment, tiny_imagefolder, tmp_path, capsys):
    out = tmp_path / 'out'
    out.mkdir()
    line = _refused(capsys, tmp_path, tiny_imagefolder, *BASE, '--output', out, '--experiment', experiment)
    assert f'--experiment {experiment!r} leads outside --output' in line and 'without .. or a leading /' in line
    assert not os.path.exists('/tmp/synermix-escaped')


@pytest.mark.parametrize('where', ['output-below-a-file', 'experiment-below-results-json'])
def test_an_output_path_below_a_file_is_one_line(where, tiny_imagefolder, tmp_path, capsys):
    (tmp_path / 'afile').write_text('x')
    (tmp_path / 'a').mkdir()
    (tmp_path / 'a' / 'results.json').write_text('{}')
    output, experiment = ((tmp_path / 'afile' / 'sub', 'run') if where == 'output-below-a-file' else
                          (tmp_path, 'a/results.json/x'))
    file = tmp_path / ('afile' if where == 'output-below-a-file' else 'a/results.json')
    # a data folder that does not exist: the output path is checked before the data is read
    line = _refused(capsys, tmp_path, tmp_path / 'no-data', *BASE, '--output', output, '--experiment', experiment)
    assert f"output path '{file}' is a file, not a folder" in line


def _tmpfs(folder, options, why_skipped):
    """A tmpfs mounted on `folder` with `options` for the test's length (a fixture's body), or the test skipped."""
    import subprocess
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip(why_skipped)
    try:
        yield folder
    finally:
        subprocess.run(['umount', str(folder)], check=True)


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder this process cannot write: a read-only tmpfs as root (who ignores modes), else mode 555."""
    folder = tmp_path / 'ro'
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    yield from _tmpfs(folder, 'ro,size=1m', 'root cannot mount a read-only tmpfs here')


def test_a_read_only_output_folder_is_refused_before_data_and_model_loading(read_only_folder, tmp_path, capsys):
    line = _refused(capsys, tmp_path, tmp_path / 'no-data', *BASE, '--output', read_only_folder,
                    '--experiment', 'run')
    assert f"output folder '{read_only_folder}' is not writable" in line


def test_a_held_lock_refuses_the_second_run_before_it_reads_the_folder_or_the_data(tiny_imagefolder, tmp_path,
                                                                                   capsys):
    import socket
    assert _main(tiny_imagefolder, *BASE, '--output', tmp_path, '--experiment', 'run') == 0
    (tmp_path / 'run' / '.lock').write_text(f'{os.getppid()} {socket.gethostname()}\n')   # a live holder
    # missing data and a folder that holds a run: the lock is what the second run meets first
    line = _refused(capsys, tmp_path, tmp_path / 'no-data', *BASE, '--output', tmp_path, '--experiment', 'run')
    assert 'is in use by process' in line


def test_two_runs_started_together_into_one_folder_never_overwrite_each_other(tiny_imagefolder, tmp_path):
    import subprocess
    from train_helpers import ROOT, train_cmd, train_env
    argv = train_cmd(tiny_imagefolder, *BASE, '--output', tmp_path, '--experiment', 'run')
    procs = [subprocess.Popen(argv, cwd=ROOT, env=train_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], errs
    loser = errs[[p.returncode for p in procs].index(2)]
    lines = [x for x in loser.splitlines() if x.startswith('train.py: error:')]
    assert len(lines) == 1 and ('is in use by process' in lines[0] or 'holds a run' in lines[0]), loser[-3000:]
    assert 'Traceback' not in loser
    assert (tmp_path / 'run' / 'results.json').is_file() and not (tmp_path / 'run' / '.lock').exists()


@pytest.mark.parametrize('flags, needle', [
    (['--momentum', '-0.5'], '--momentum -0.5 must be in [0, 1)'),
    (['--opt', 'adamw', '--opt-betas', '0.9', '1.5'], '--opt-betas 0.9 1.5 must be each in [0, 1)'),
    (['--weight-decay', '-1'], '--weight-decay -1.0 must be 0 (off) or more'),
    (['--clip-grad', '0'], '--clip-grad 0.0 must be above 0'),
], ids=['momentum', 'betas', 'weight-decay', 'clip-grad'])
def test_out_of_range_optimizer_values_are_refused_in_one_line(flags, needle, tiny_imagefolder, tmp_path, capsys):
    line = _refused(capsys, tmp_path, tiny_imagefolder, *BASE, *flags, '--output', tmp_path, '--experiment', 'run')
    assert needle in line
    assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('flags, needle', [
    (['--method', 'synermix', '--kd-model-name', 'local-dir:/nonexistent', '--kd-temperature', '0'],
     '--kd-temperature 0.0 must be above 0'),
    (['--method', 'synermix', '--model-dtype', 'bfloat16', '--synermix-orig-scale', '0.5'],
     '--model-dtype bfloat16 with --synermix-orig-scale 0.5 on CPU: torch has no bfloat16 CPU kernel'),
], ids=['kd-temperature-0', 'bfloat16-orig-scale-on-cpu'])
def test_synermix_values_torch_would_fail_on_are_refused_in_one_line(flags, needle, tiny_imagefolder, tmp_path,
                                                                      capsys):
    line = _refused(capsys, tmp_path, tiny_imagefolder, *BASE, *flags, '--output', tmp_path, '--experiment', 'run')
    assert needle in line
    assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('source', ['class-map', 'hfds'])
def test_a_class_only_in_validation_is_refused_with_a_shared_class_map(source, tiny_imagefolder, tmp_path, capsys):
    # One class map for both splits (a --class-map file, or the class names hfds/ reads from all splits) gives
    # class9 a head output that no training image targets.
    import shutil
    data = tmp_path / 'data'
    shutil.copytree(tiny_imagefolder, data)
    shutil.copytree(data / 'validation' / 'class1', data / 'validation' / 'class9')
    if source == 'class-map':
        class_map = tmp_path / 'classes.txt'
        class_map.write_text('class0\nclass1\nclass2\nclass9\n')
        flags = [data, '--class-map', class_map]
    else:
        flags = ['--dataset', f'hfds/{data}', '--data-dir', tmp_path / 'cache']
    out = tmp_path / 'out'
    line = _refused(capsys, out, *flags, *BASE, '--output', out, '--experiment', 'run')
    assert "the 'validation' split has classes the 'train' split lacks: class9" in line
    assert 'remove their validation images, or add training images of them' in line
    assert not out.exists()


@pytest.mark.parametrize('method', ['synermix', 'baseline'])
def test_a_teacher_whose_head_does_not_fit_the_data_is_refused(method, tiny_imagefolder, tmp_path, capsys):
    import timm
    from timm.models._hub import save_for_hf
    save_for_hf(timm.create_model('test_resnet', num_classes=5), str(tmp_path / 'teacher'), safe_serialization=True)
    out = tmp_path / 'out'
    line = _refused(capsys, out, tiny_imagefolder, *BASE, '--method', method, '--kd-model-name',
                    f'local-dir:{tmp_path / "teacher"}', '--output', out, '--experiment', 'run')
    assert "the teacher's head has 5 classes and this run 3, so timm would replace it with an untrained one" in line
    assert not out.exists()


def _stopped_line(err):
    lines = [x for x in err.splitlines() if x.startswith('train.py: stopped ')]
    assert len(lines) == 1 and 'Traceback' not in err, err[-3000:]
    return lines[0]


def _signal_inside(monkeypatch, module, name, sig, on_call=1):
    """Send `sig` to this process from inside call number `on_call` of module.name (then let the call run)."""
    original, calls = getattr(module, name), []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == on_call:
            os.kill(os.getpid(), sig)
        return original(*args, **kwargs)
    monkeypatch.setattr(module, name, wrapped)


def _resume_finishes(argv, line, folder):
    import json
    command = line.split('with: ')[1].split()
    resume = command[command.index('--resume') + 1]
    assert resume == str(folder / 'last.pth.tar'), line
    assert _main(*argv, '--resume', resume) == 0
    results = json.loads((folder / 'results.json').read_text())
    assert results['finished'] is True and results['cost']['epochs'] == 2
    assert len(read_summary(folder)[1]) == 2 and (folder / 'model_best.safetensors').is_file()


def test_ctrl_c_while_the_final_outputs_are_written_stops_with_a_resume_command(tiny_imagefolder, tmp_path,
                                                                               monkeypatch, capsys):
    import signal
    from timm_synermix.trainer import checkpoint
    _signal_inside(monkeypatch, checkpoint, 'export_safetensors', signal.SIGINT)
    argv = [tiny_imagefolder, *BASE, '--epochs', '2', '--output', tmp_path, '--experiment', 'run']
    assert _main(*argv) == 130
    line = _stopped_line(capsys.readouterr().err)
    folder = tmp_path / 'run'
    assert 'stopped by SIGINT' in line and not (folder / 'results.json').exists()
    assert not (folder / '.lock').exists() and not [n for n in os.listdir(folder) if n.endswith('.tmp')]
    monkeypatch.undo()
    _resume_finishes(argv, line, folder)


def test_sigterm_during_the_last_epochs_evaluation_exits_143_with_a_resume_command(tiny_imagefolder, tmp_path,
                                                                                   monkeypatch, capsys):
    import signal
    from timm_synermix.trainer import loop
    _signal_inside(monkeypatch, loop, 'evaluate', signal.SIGTERM, on_call=2)   # epoch 1 of 2
    argv = [tiny_imagefolder, *BASE, '--epochs', '2', '--output', tmp_path, '--experiment', 'run']
    assert _main(*argv) == 143
    line = _stopped_line(capsys.readouterr().err)
    folder = tmp_path / 'run'
    assert 'stopped by SIGTERM' in line and not (folder / 'results.json').exists()
    assert len(read_summary(folder)[1]) == 2   # the evaluation finished and was saved with its epoch
    monkeypatch.undo()
    _resume_finishes(argv, line, folder)


@pytest.mark.parametrize('flags, needle', [
    (['--sched', 'cosine', '--cooldown-epochs', '-1'], '--cooldown-epochs -1 must be 0 or more'),
    (['--decay-epochs', '0'], '--decay-epochs 0.0 must be above 0'),
    (['--min-lr', '-1'], '--min-lr -1.0 must be 0 or more'),
], ids=['cooldown', 'decay-epochs', 'min-lr'])
def test_out_of_range_schedule_values_are_refused_in_one_line(flags, needle, tiny_imagefolder, tmp_path, capsys):
    # a negative cooldown shortened the schedule to 0 epochs: exit 0, results.json with no numbers
    line = _refused(capsys, tmp_path, tiny_imagefolder, *BASE, *flags, '--output', tmp_path, '--experiment', 'run')
    assert needle in line


def test_an_optimizer_torch_refuses_is_one_line(tiny_imagefolder, tmp_path, capsys):
    # timm's sgd is Nesterov SGD, which torch refuses without a momentum
    line = _refused(capsys, tmp_path, tiny_imagefolder, *BASE, '--momentum', '0', '--output', tmp_path,
                    '--experiment', 'run')
    assert '--opt sgd: Nesterov momentum requires a momentum and zero dampening' in line
    assert not (tmp_path / 'run').exists()


def test_a_second_ctrl_c_stops_at_once_naming_the_last_good_checkpoint(tiny_imagefolder, tmp_path, monkeypatch,
                                                                        capsys):
    import signal
    from timm_synermix.trainer import loop
    original = loop.train_step
    calls = []

    def twice(*args, **kwargs):   # both signals inside step 2 of epoch 1: no safe point in between
        calls.append(1)
        if len(calls) == 6:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)
    monkeypatch.setattr(loop, 'train_step', twice)
    argv = [tiny_imagefolder, *BASE, '--epochs', '2', '--output', tmp_path, '--experiment', 'run']
    assert _main(*argv) == 130
    line = _stopped_line(capsys.readouterr().err)
    assert 'stopped at once by a second SIGINT, no final results written; continue from the last good ' \
           'checkpoint with: ' in line
    monkeypatch.undo()
    _resume_finishes(argv, line, tmp_path / 'run')


def test_ctrl_c_before_training_is_one_line_and_leaves_nothing(tiny_imagefolder, tmp_path, monkeypatch, capsys):
    from timm_synermix.trainer import main

    def interrupted(args):
        raise KeyboardInterrupt   # as Ctrl-C while the data set is read
    monkeypatch.setattr(main, 'create_datasets', interrupted)
    assert _main(tiny_imagefolder, *BASE, '--output', tmp_path, '--experiment', 'run') == 130
    err = capsys.readouterr().err
    assert 'train.py: interrupted before training started, nothing to resume: rerun the same command' in err
    assert 'Traceback' not in err and not (tmp_path / 'run').exists()


@pytest.mark.parametrize('where', ['epoch-checkpoint', 'final-outputs'])
def test_a_full_disk_stops_in_one_line_keeping_the_last_good_checkpoint(where, tiny_imagefolder, tmp_path,
                                                                         monkeypatch, capsys):
    import errno
    import torch
    from timm_synermix.trainer import checkpoint
    full, calls = OSError(errno.ENOSPC, 'No space left on device'), []
    if where == 'epoch-checkpoint':   # the second epoch's checkpoint does not fit
        original = torch.save

        def save(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise full
            return original(*args, **kwargs)
        monkeypatch.setattr(torch, 'save', save)
    else:
        def export(*args, **kwargs):
            raise full
        monkeypatch.setattr(checkpoint, 'export_safetensors', export)
    argv = [tiny_imagefolder, *BASE, '--epochs', '2', '--output', tmp_path, '--experiment', 'run']
    assert _main(*argv) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith('train.py: error:')]
    assert len(lines) == 1 and 'Traceback' not in err, err[-3000:]
    folder = tmp_path / 'run'
    what = 'the checkpoint of epoch 1' if where == 'epoch-checkpoint' else 'the final outputs'
    assert f'could not write {what}' in lines[0] and '(No space left on device)' in lines[0]
    assert f"the last good checkpoint, '{folder / 'last.pth.tar'}', is kept" in lines[0]
    from train_helpers import load_ckpt
    saved_epoch = load_ckpt(folder / 'last.pth.tar')['epoch']
    assert saved_epoch == (0 if where == 'epoch-checkpoint' else 1)
    assert len(read_summary(folder)[1]) == saved_epoch + 1   # summary.csv never ahead of last.pth.tar
    assert not (folder / 'results.json').exists() and not [n for n in os.listdir(folder) if n.endswith('.tmp')]
    monkeypatch.undo()   # space freed: the advised resume completes the run
    _resume_finishes(argv, f'with: python train.py --resume {folder / "last.pth.tar"}', folder)


def test_a_full_disk_before_the_first_epoch_is_one_line(tiny_imagefolder, tmp_path, monkeypatch, capsys):
    import errno
    from timm_synermix.trainer import checkpoint

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(checkpoint, 'atomic_write', full)
    line = _refused(capsys, tmp_path, tiny_imagefolder, *BASE, '--output', tmp_path, '--experiment', 'run')
    assert 'could not write args.yaml' in line and '(No space left on device)' in line
    assert not (tmp_path / 'run').exists()


def test_a_mid_epoch_resume_after_the_training_set_shrank_is_one_line(tiny_imagefolder, tmp_path, monkeypatch,
                                                                       capsys):
    import shutil
    import signal
    from timm_synermix.trainer import loop
    data = tmp_path / 'data'
    shutil.copytree(tiny_imagefolder, data)
    _signal_inside(monkeypatch, loop, 'train_step', signal.SIGINT, on_call=3)   # stops after batch 2 of epoch 0
    argv = [data, *BASE, '--epochs', '2', '--output', tmp_path / 'out', '--experiment', 'run']
    assert _main(*argv) == 130
    line = _stopped_line(capsys.readouterr().err)
    resume = line.split('--resume ')[1].split()[0]
    monkeypatch.undo()
    for path in sorted((data / 'train').glob('*/*'))[::2]:   # half the images: 2 batches per epoch, not 4
        path.unlink()
    line = _refused(capsys, tmp_path / 'out', *argv, '--resume', resume)
    assert 'stopped at batch 3 of an epoch, and the training set now gives 2 batches per epoch' in line


def test_a_symlink_loop_in_the_training_folder_is_refused(tiny_imagefolder, tmp_path, capsys):
    import shutil
    data = tmp_path / 'data'
    shutil.copytree(tiny_imagefolder, data)
    (data / 'train' / 'class1' / 'again').symlink_to(data / 'train')   # timm would read train/ ~40 times over
    out = tmp_path / 'out'
    line = _refused(capsys, out, data, *BASE, '--output', out, '--experiment', 'run')
    assert f"'{data / 'train' / 'class1' / 'again'}' links to '{os.path.realpath(data / 'train')}', a folder " \
           f"above it" in line
    assert not out.exists()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 5 MB tmpfs (root only): room for one checkpoint of test_resnet (~3 MB) but not for the next one's temp file
    beside it."""
    folder = tmp_path / 'small'
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip('needs root and mount to make a small tmpfs')
    yield from _tmpfs(folder, 'size=5m', 'needs root and mount to make a small tmpfs')


def test_a_really_full_disk_stops_in_one_line_and_summary_is_never_ahead(small_tmpfs, tiny_imagefolder, capsys):
    from train_helpers import load_ckpt
    argv = [tiny_imagefolder, *BASE, '--epochs', '3', '--output', small_tmpfs, '--experiment', 'run']
    assert _main(*argv) == 2
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith('train.py: error:')]
    assert len(lines) == 1 and 'Traceback' not in err, err[-3000:]
    assert '(No space left on device)' in lines[0] and 'the last good checkpoint' in lines[0], lines[0]
    folder = small_tmpfs / 'run'
    saved = load_ckpt(folder / 'last.pth.tar')['epoch']
    assert len(read_summary(folder)[1]) == saved + 1
    assert not [n for n in os.listdir(folder) if n.endswith('.tmp')] and not (folder / '.lock').exists()
