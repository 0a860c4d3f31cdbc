""" Reliability of train.py, round 3 (issue 19): the numbers a user reads, the output folder, late signals.

Each test holds one promise. Bad input gets the contract of tests/test_reliability.py: one line naming the
problem and the fix, exit code 2, and nothing written (the output root hashed before and after).
"""
import logging
import os

import pytest

from train_helpers import COMMON, hash_tree, load_train_module, read_summary, tiny_imagefolder  # noqa: F401

BASE = [*COMMON, '--no-feature-metrics']


def _main(*argv):
    """train.py's main(argv) in this process; returns the exit code."""
    handlers = list(logging.getLogger().handlers)
    try:
        return load_train_module().main([str(a) for a in argv])
    except SystemExit as e:
        return e.code
    finally:  # main() adds a stream handler bound to this test's captured stderr
        logging.getLogger().handlers[:] = handlers


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
