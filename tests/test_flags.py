""" What a flag says is what runs: an explicit flag is honoured and recorded, or refused in one line naming the
preset or the setting it contradicts; a flag with no effect is refused (a -c key: warned about) before data is
read; the messages name flags a user can type and the real limit.

Refusals run train.py in-process on a data folder that does not exist, unless the check needs the data: a line
about the flag, not about the data, shows that it was checked first.
"""
import json
import logging
import os
import sys

import pytest
import yaml

from train_helpers import COMMON, ROOT, main_in_process, run_train, tiny_imagefolder  # noqa: F401

BASE = [*COMMON, '--no-feature-metrics']
PETS = os.path.join(ROOT, 'configs', 'pets_resnet34.yaml')


def _refused(capsys, tmp_path, *argv, data=None):
    """train.py in-process: exit code 2, one error line and nothing written; returns the line."""
    out = tmp_path / 'out'
    code = main_in_process(data or tmp_path / 'no-data', *BASE, '--output', out, '--experiment', 'x', *argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith('train.py: error:')]
    assert code == 2 and len(lines) == 1 and 'Traceback' not in err, err[-3000:]
    assert not (out / 'x').exists() or not [f for f in os.listdir(out / 'x') if f != '.lock']
    return lines[0]


def _resolved(*argv):
    """(namespace, given) as train.py resolves them, without training."""
    from timm_synermix.trainer.args import given_options, parse_args
    from timm_synermix.trainer.config import apply_method
    args, _ = parse_args([str(a) for a in argv])
    given = given_options([str(a) for a in argv])
    return apply_method(args, given), given


# ---------------------------------------------------------------------------------------------------------------
# a preset never overrides an explicit flag
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('method, instead', [('synermix', 'synermix-intra'), ('synermix-manifold', 'synermix-intra'),
                                             ('clean-view-mixup', 'clean-view'), ('mixup', 'baseline'),
                                             ('manifold-mixup', 'baseline')])
def test_mixup_0_given_with_a_mixing_preset_is_refused_naming_the_preset_without_mixing(method, instead, capsys,
                                                                                        tmp_path):
    line = _refused(capsys, tmp_path, '--method', method, '--mixup', '0')
    assert f'--method {method} mixes with' in line and 'but --mixup 0 turns it off' in line
    assert line.endswith(f'drop --mixup 0 (alpha 1.0), or use --method {instead}')


def test_a_command_line_method_overrides_a_config_files_mixup_0_as_any_flag_does(tmp_path):
    config = tmp_path / 'timm_args.yaml'
    config.write_text(yaml.safe_dump({'mixup': 0.0, 'model': 'test_resnet'}))
    args, _ = _resolved('-c', config, '--method', 'synermix')
    assert (args.method, args.mixup) == ('synermix', 1.0)


def test_a_config_file_naming_the_method_and_mixup_0_is_refused(tmp_path):
    from timm_synermix.trainer.errors import InputError
    config = tmp_path / 'mine.yaml'
    config.write_text(yaml.safe_dump({'mixup': 0.0, 'method': 'synermix'}))
    with pytest.raises(InputError, match='--method synermix mixes with MixUp but --mixup 0 turns it off'):
        _resolved('-c', config)


@pytest.mark.parametrize('flags, recorded', [
    (['--method', 'synermix', '--cutmix', '1'], ('synermix-cutmix', 0.0)),
    (['--method', 'synermix', '--mixup', '0', '--cutmix', '1'], ('synermix-cutmix', 0.0)),
    (['--method', 'synermix', '--mixup', '0.1', '--cutmix', '1'], ('synermix-mixup-cutmix', 0.1)),
    (['--method', 'mixup', '--cutmix', '1'], ('cutmix', 0.0)),
    (['--method', 'synermix', '--synermix-beta', '0', '--cutmix', '1'], ('cutmix', 0.0)),
])
def test_cutmix_with_a_mixup_preset_is_honoured_and_recorded_as_cutmix(flags, recorded):
    args, _ = _resolved('data', *flags)
    assert (args.method, args.mixup, args.cutmix) == (*recorded, 1.0)


@pytest.mark.parametrize('method, why', [('clean-view-mixup', 'is the control of SynerMix with MixUp alone'),
                                         ('synermix-manifold', 'mixes hidden states, where CutMix boxes have no '
                                                               'meaning')])
def test_cutmix_with_a_preset_it_cannot_join_is_refused(method, why, capsys, tmp_path):
    assert _refused(capsys, tmp_path, '--method', method, '--cutmix', '1').endswith(f'--method {method} {why}: '
                                                                                     f'drop --cutmix 1')


@pytest.mark.parametrize('flags, needle', [
    (['--method', 'synermix', '--mixup-prob', '0'], '--mixup-prob 0 never mixes, so --method synermix would train '
                                                    'without its MixUp: use --method synermix-intra'),
    (['--synermix', '--mixup', '1', '--mixup-prob', '0'], '--mixup-prob 0 never mixes, so --mixup/--cutmix would '
                                                          'have no effect'),
    (['--manifold-mixup', '--mixup', '0'], '--manifold-mixup mixes with --mixup as its alpha, and --mixup 0 never '
                                           'mixes: drop --mixup 0 (alpha 1.0), or drop --manifold-mixup'),
])
def test_flags_that_never_mix_are_refused_rather_than_recorded_as_mixing(flags, needle, capsys, tmp_path):
    assert needle in _refused(capsys, tmp_path, *flags)


def test_a_cutmix_run_is_recorded_and_logged_as_cutmix(tiny_imagefolder, tmp_path, capsys):
    code = main_in_process(tiny_imagefolder, *BASE, '--method', 'synermix', '--cutmix', '1', '--output', tmp_path,
                           '--experiment', 'cut')
    err = capsys.readouterr().err
    assert code == 0 and 'Method synermix-cutmix: synermix=True beta=0.1 source=original inter=cutmix' in err
    with open(tmp_path / 'cut' / 'args.yaml') as f:
        recorded = yaml.safe_load(f)
    with open(tmp_path / 'cut' / 'results.json') as f:
        results = json.load(f)
    assert (recorded['method'], recorded['mixup'], recorded['cutmix']) == ('synermix-cutmix', 0.0, 1.0)
    assert results['method'] == results['settings']['method'] == 'synermix-cutmix'
    # the recorded name loads back: args.yaml as a config trains the same method
    args, _ = _resolved('-c', tmp_path / 'cut' / 'args.yaml')
    assert (args.method, args.synermix, args.cutmix, args.mixup) == ('synermix-cutmix', True, 1.0, 0.0)


# ---------------------------------------------------------------------------------------------------------------
# a flag with no effect
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('flags, needle', [
    (['--synermix-every', '4'], '--synermix-every 4 has no effect: it spaces out the intra term, which this run '
                                'does not have; add --synermix (or a synermix --method), or drop it'),
    (['--method', 'synermix', '--synermix-beta', '0', '--synermix-every', '2'], '--synermix-every 2 has no effect'),
    (['--method', 'synermix', '--synermix-fixed-size', '16'], '--synermix-fixed-size 16 has no effect: it sizes '
                                                              'fixed batches, which this run does not have; add '
                                                              '--batch-composition fixed, or drop it'),
    (['--method', 'synermix', '--batch-composition', 'paired', '--synermix-fixed-size', '16'],
     '--synermix-fixed-size 16 has no effect'),
    (['--pretrained-keep-head'], '--pretrained-keep-head has no effect: it keeps the classifier of a '
                                 '--pretrained-path file; add --pretrained-path FILE, or drop it'),
    (['--manifold-layers', 'layer1'], '--manifold-layers layer1 has no effect'),
])
def test_a_flag_with_no_effect_is_refused_before_data_is_read(flags, needle, capsys, tmp_path):
    assert needle in _refused(capsys, tmp_path, *flags)


@pytest.mark.parametrize('flags, line', [
    (['--method', 'baseline', '--mixup-mode', 'elem'], '--mixup-mode elem has no effect in this run: it sets how '
                                                       'mixup or cutmix mixes, and this run does not mix'),
    (['--method', 'synermix', '--mixup-switch-prob', '0.3'], '--mixup-switch-prob 0.3 has no effect in this run: it '
                                                             'switches between mixup and cutmix, and this run does '
                                                             'not have both'),
    (['--mixup-prob', '0'], '--mixup-prob 0 has no effect in this run: it sets how often mixup or cutmix mixes, and '
                            'this run does not mix'),
])
def test_timms_mixup_settings_without_mixing_are_warned_about_in_one_line(flags, line, caplog):
    # one recipe serves every method of a comparison, as timm's train.py takes them silently
    from timm_synermix.trainer.args import option_defaults
    from timm_synermix.trainer.validation import check_no_effect
    args, given = _resolved('data', *flags)
    with caplog.at_level(logging.WARNING, logger='train'):
        check_no_effect(args, given, option_defaults())
    assert [r.getMessage() for r in caplog.records] == [line]


def test_a_flag_at_its_default_is_never_refused_for_having_no_effect(caplog):
    from timm_synermix.trainer.args import option_defaults
    from timm_synermix.trainer.validation import check_no_effect
    args, given = _resolved('data', '--synermix-every', '1', '--mixup-mode', 'batch')
    assert (args.synermix_every, args.mixup_mode) == (option_defaults()['synermix_every'], 'batch')
    with caplog.at_level(logging.WARNING, logger='train'):
        assert check_no_effect(args, given, option_defaults()) is None   # refusing would raise
    assert caplog.records == []


def test_a_config_key_with_no_effect_is_warned_about_in_one_line(caplog):
    from timm_synermix.trainer.args import option_defaults
    from timm_synermix.trainer.validation import check_no_effect
    args, given = _resolved('-c', PETS, '--method', 'baseline')   # its mixup_mode: elem serves MixUp
    with caplog.at_level(logging.WARNING, logger='train'):
        check_no_effect(args, given, option_defaults())
    assert [r.getMessage() for r in caplog.records] == [
        f'mixup_mode: elem in {PETS} has no effect in this run: it sets how mixup or cutmix mixes, and this run does '
        f'not mix']


# ---------------------------------------------------------------------------------------------------------------
# messages: flags a user can type, the real limit
# ---------------------------------------------------------------------------------------------------------------

def test_a_fixed_size_below_the_batch_names_the_smallest_that_fits(capsys, tmp_path):
    line = _refused(capsys, tmp_path, '--method', 'synermix', '--batch-composition', 'fixed',
                    '--synermix-fixed-size', '3')
    assert line == ('train.py: error: --synermix-fixed-size 3 is below -b 4: a fixed batch holds the -b images and '
                    'tops them up to that size; use --synermix-fixed-size 4 or more, or leave it out (the 95th '
                    'percentile of this data\'s supplemented sizes)')


def test_paired_distinct_with_more_pairs_than_classes_names_the_largest_batch_that_fits(tiny_imagefolder, capsys,
                                                                                         tmp_path):
    line = _refused(capsys, tmp_path, '--batch-composition', 'paired-distinct', '-b', '8', data=tiny_imagefolder)
    assert line == ('train.py: error: --batch-composition paired-distinct with --batch-size 8: a batch holds 4 '
                    'different classes, one per pair, and the data has 3; use --batch-size 6 or less, or '
                    '--batch-composition paired (pairs of one class may then share a batch).')


def test_paired_distinct_on_several_ranks_names_the_limit_of_a_rank():
    from timm_synermix.method.sampler import PairedBatchSampler
    from timm_synermix.trainer.errors import to_flags
    labels = [0] * 6 + [1] * 6 + [2] * 6 + [3] * 6   # 3 pairs a class, 6 pairs a rank of 2
    with pytest.raises(ValueError) as e:
        PairedBatchSampler(labels, 8, distinct_classes=True, num_replicas=2, rank=1)
    assert to_flags(str(e.value)) == (
        '--batch-composition paired-distinct with --batch-size 8: the largest class has 3 pairs, each in a batch of '
        'its own, and an epoch has 1 batch per rank; use --batch-size 4 or less, or --batch-composition paired '
        '(pairs of one class may then share a batch).')


def test_a_one_line_error_is_torchruns_root_cause(tmp_path, monkeypatch):
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure
    from timm_synermix.trainer.distributed import report_to_torchrun
    monkeypatch.setenv('TORCHELASTIC_ERROR_FILE', str(tmp_path / 'error.json'))
    report_to_torchrun('train.py: error: --batch-size 8: use 4')
    failure = ProcessFailure(local_rank=0, pid=1, exitcode=2, error_file=str(tmp_path / 'error.json'))
    assert failure.message['extraInfo']['py_callstack'] == 'train.py: error: --batch-size 8: use 4'


@pytest.mark.parametrize('what, make, needle', [
    ('a folder', lambda p: p.mkdir(), "is a folder: pass the weights file in it (e.g. model.safetensors)"),
    ('a text file', lambda p: p.write_text('weights\n'), 'is not a weights file (neither safetensors nor torch.save '
                                                          'data): pass a .safetensors, .pth or timm .pth.tar file'),
])
def test_a_pretrained_path_that_is_no_weights_file_says_what_it_is(what, make, needle, tmp_path):
    from timm_synermix.trainer.errors import InputError
    from timm_synermix.trainer.models import create_train_model
    path = tmp_path / 'weights'
    make(path)
    with pytest.raises(InputError) as e:
        create_train_model('test_resnet', 3, pretrained_path=str(path))
    assert f"--pretrained-path '{path}' {needle}" in str(e.value)


# ---------------------------------------------------------------------------------------------------------------
# a shipped config offline
# ---------------------------------------------------------------------------------------------------------------

def test_a_shipped_config_offline_ends_in_one_line_naming_pretrained_path_and_no_pretrained(tiny_imagefolder,
                                                                                            tmp_path):
    # a subprocess: HF_HUB_OFFLINE (train_env) is read when huggingface_hub is imported
    proc = run_train('-c', PETS, tiny_imagefolder, '--model', 'test_resnet', '--num-classes', '3', '--img-size', '32',
                     '--device', 'cpu', '-j', '0', '--output', tmp_path, '--experiment', 'offline', check=False)
    lines = [line for line in proc.stderr.splitlines() if line.startswith('train.py: error:')]
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith('train.py: error: --pretrained: no weights for --model test_resnet (')
    assert lines[0].endswith('pass a local weights file with --pretrained-path FILE, or train from scratch with '
                             '--no-pretrained (it also turns a config file\'s pretrained: true off)')


def test_no_pretrained_turns_a_config_files_pretrained_off():
    from timm_synermix.trainer.args import parse_args
    assert parse_args(['-c', PETS])[0].pretrained is True
    assert parse_args(['-c', PETS, '--no-pretrained'])[0].pretrained is False


# ---------------------------------------------------------------------------------------------------------------
# without scikit-learn (the base install)
# ---------------------------------------------------------------------------------------------------------------

def test_without_scikit_learn_a_run_skips_the_feature_metrics_in_one_line_and_resumes(tiny_imagefolder, tmp_path,
                                                                                      monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'sklearn', None)   # import sklearn then raises ImportError
    monkeypatch.setitem(sys.modules, 'sklearn.metrics', None)
    argv = [tiny_imagefolder, *COMMON, '--method', 'synermix', '--epochs', '2', '--output', tmp_path,
            '--experiment', 'nosk']
    assert main_in_process(*argv, '--stop-epoch', '1') == 0
    assert main_in_process(*argv, '--resume', tmp_path / 'nosk' / 'last.pth.tar') == 0
    skipped = [line for line in capsys.readouterr().err.splitlines() if 'Feature metrics skipped' in line]
    assert len(skipped) == 2 and 'scikit-learn is not installed' in skipped[0]
    assert 'pip install "timm-synermix[demo]"' in skipped[0]
    with open(tmp_path / 'nosk' / 'results.json') as f:
        results = json.load(f)
    assert results['finished'] is True and results['metrics'] == {} and results['cost']['epochs'] == 2
