"""The experiments' runner: one score, plans that own their flags, runs reused only when they match, safe to
interrupt and to share. Runs go through a stub trainer (tests/stub_train.py) except where train.py itself is the
point (test_study.py, test_demo.py)."""
import io
import re
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from timm_synermix.experiments.frontier import main as frontier_main, plan_frontier, run_frontier
from timm_synermix.experiments.runner import Runner, RunnerError, RunSpec, data_identity, user_args
from timm_synermix.experiments.scores import Difference, Score, paired_difference
from timm_synermix.method.presets import get_preset

from train_helpers import ROOT, write_image_folder

STUB = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'stub_train.py')
USER = ('--device', 'cpu', '--checkpoint-hist', '1', '--model', 'test_resnet')


@pytest.fixture
def data(tmp_path):
    return write_image_folder(tmp_path / 'data', n_train=2, n_val=1, classes=3)


def frontier_specs(data, **kwargs):
    kwargs = dict(dict(epochs=2, ladder=(1, 2), variants=['synermix'], seeds=[0, 1], extra=USER, last_k=1), **kwargs)
    return plan_frontier(data, **kwargs)


def stub_runner(out, **kwargs):
    return Runner(out, command='frontier ...', train_script=STUB, stream=io.StringIO(), **kwargs)


def test_every_run_is_scored_on_the_last_k_epochs_the_plan_sets_whatever_its_length(data, tmp_path):
    specs = frontier_specs(data, epochs=3, ladder=(1, 2, 4), last_k=3)
    runner = stub_runner(tmp_path / 'out')
    assert {s.epochs for s in specs} == {3, 6, 12}
    assert all(runner.command_of(s)[runner.command_of(s).index('--report-last-k') + 1] == '3' for s in specs)
    with runner:
        result = run_frontier(runner, specs, 'title')
    assert 'Every run is scored by the mean top-1 of the last 3 epochs on validation/ (3 images: one image = ' \
           '33.33 points)' in result['table']
    baseline12 = [p for p in result['points'] if p['name'] == 'baseline-e12-s0'][0]
    assert baseline12['top1'] == pytest.approx(50 + 20 * sum(math.log2(e) for e in (10, 11, 12)) / 3)


@pytest.mark.parametrize('extra, flag', [
    (['--see', '7'], '--seed'), (['--meth', 'synermix'], '--method'), (['--batch-composition', 'supplemented'],
                                                                       '--batch-composition'),
    (['--epochs', '3'], '--epochs'), (['--report-last-k', '10'], '--report-last-k'), (['--mixup', '0.2'], '--mixup'),
    (['--val-holdout', '0.1'], '--val-holdout')])
def test_a_flag_the_plan_sets_is_refused_after_the_separator_abbreviations_included(data, tmp_path, capsys, extra,
                                                                                       flag):
    assert frontier_main([data, '--epochs', '2', '--out', str(tmp_path / 'o'), '--dry-run', '--'] + extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f'frontier: error: {flag} is set by the plan itself') and '\n' not in err
    assert not (tmp_path / 'o').exists()


def test_a_config_file_key_the_plan_sets_is_refused_and_its_other_keys_pass(data, tmp_path, capsys):
    config = tmp_path / 'x.yaml'
    config.write_text('synermix_batches: paired\n')
    argv = [data, '--epochs', '2', '--last-k', '1', '--out', str(tmp_path / 'o'), '--dry-run', '--', '-c', str(config)]
    assert frontier_main(argv) == 2
    assert f"key 'synermix_batches' of {config} is set by the plan itself" in capsys.readouterr().err
    config.write_text('lr: 0.2\n')
    assert frontier_main(argv) == 0


def test_evaluation_turned_off_is_refused(data, tmp_path, capsys):
    assert frontier_main([data, '--epochs', '2', '--out', str(tmp_path / 'o'), '--dry-run', '--', '--val-split',
                          '']) == 2
    assert '--val-split "" turns evaluation off' in capsys.readouterr().err


@pytest.mark.parametrize('argv, message', [
    (['--seeds', '0', '0'], '--seeds 0 given more than once'),
    (['--variants', 'synermix', 'synermix'], '--variants synermix given more than once'),
    (['--ladder', '1', '1.1'], 'rungs that round to the same epochs'),
    (['--last-k', '3'], 'is scored on the last 3: use --last-k 2 or more epochs')])
def test_repeated_seeds_variants_and_rungs_are_refused(data, tmp_path, capsys, argv, message):
    assert frontier_main([data, '--epochs', '2', '--out', str(tmp_path / 'o'), '--dry-run'] + argv) == 2
    assert message in capsys.readouterr().err


def test_a_finished_run_is_reused_only_when_its_arguments_and_data_match(data, tmp_path):
    specs = frontier_specs(data)
    with stub_runner(tmp_path / 'out') as runner:
        first = runner.run(specs)
        assert not any(r.reused for r in first.values())
        assert all(r.reused for r in runner.run(specs).values())
    os.remove(os.path.join(data, 'train', 'class2', '0.png'))
    with stub_runner(tmp_path / 'out') as runner, pytest.raises(RunnerError, match=r'made with other data \(train: '
                                                                                    r'1 fewer images\)'):
        runner.run(specs)
    os.rename(os.path.join(data, 'validation', 'class1'), os.path.join(data, 'validation', 'class9'))
    with stub_runner(tmp_path / 'out') as runner, pytest.raises(RunnerError, match='val: class class1 removed'):
        runner.run(specs)


def test_a_run_made_with_other_arguments_is_refused_in_one_line_naming_them(data, tmp_path):
    with stub_runner(tmp_path / 'out') as runner:
        runner.run(frontier_specs(data))
    lr = frontier_specs(data, extra=USER + ('--lr', '0.2'))
    with stub_runner(tmp_path / 'out') as runner, pytest.raises(RunnerError, match=r'other arguments \(then: -; '
                                                                                    r'now: --lr 0.2\)'):
        runner.run(lr)


def test_changed_weights_named_in_the_arguments_are_a_change(data, tmp_path):
    weights = tmp_path / 'backbone.safetensors'
    weights.write_bytes(b'one')
    specs = frontier_specs(data, extra=USER + ('--pretrained-path', str(weights)))
    with stub_runner(tmp_path / 'out') as runner:
        runner.run(specs)
    weights.write_bytes(b'two')
    with stub_runner(tmp_path / 'out') as runner, pytest.raises(RunnerError, match='backbone.safetensors changed'):
        runner.run(specs)


def test_a_folder_the_plan_did_not_write_is_refused_and_kept(data, tmp_path):
    stale = tmp_path / 'out' / 'runs' / 'baseline-e2-s0'
    stale.mkdir(parents=True)
    (stale / 'results.json').write_text('{}')  # what an interrupted older comparison left
    with stub_runner(tmp_path / 'out') as runner, pytest.raises(RunnerError, match='holds files this plan did not '
                                                                                    'write'):
        runner.run(frontier_specs(data))
    assert (stale / 'results.json').read_text() == '{}'


def test_an_interrupted_run_continues_from_its_checkpoint_and_is_never_deleted(data, tmp_path, monkeypatch):
    (spec,) = [s for s in frontier_specs(data, epochs=3, ladder=(1,), seeds=[0]) if s.variant == 'synermix']
    folder = tmp_path / 'out' / 'runs' / spec.name
    with stub_runner(tmp_path / 'out') as runner:
        runner._write_record(spec)
    (folder / 'last.pth.tar').write_text('2')  # two epochs done before the interruption
    stream = io.StringIO()
    with Runner(tmp_path / 'out', train_script=STUB, stream=stream) as runner:
        (result,) = runner.run([spec]).values()
    log = stream.getvalue()
    assert f'{spec.name} continues (interrupted before: --resume auto)' in log
    assert f'resuming {folder}/last.pth.tar at epoch 2' in log
    assert result.top1 == pytest.approx(55 + 20 * math.log2(3) - 20 * 0.1)  # the stub's last epoch at β = 0.1


def test_a_second_runner_on_the_same_output_folder_is_refused(tmp_path):
    with stub_runner(tmp_path / 'out', ) as runner:
        with pytest.raises(RunnerError, match=rf'{tmp_path / "out"} is in use by process {os.getpid()}: '
                                              r'frontier \.\.\.'):
            stub_runner(tmp_path / 'out').__enter__()
        assert runner.out.is_dir()
    with stub_runner(tmp_path / 'out'):  # released
        pass


def test_sigterm_stops_the_runs_in_flight_and_prints_the_command_that_continues(data, tmp_path):
    script = textwrap.dedent(f'''
        import sys
        from timm_synermix.experiments.frontier import plan_frontier
        from timm_synermix.experiments.runner import Runner, RunnerError
        specs = plan_frontier({data!r}, 4, (1,), [], [0, 1], extra={USER!r}, last_k=1)
        try:
            with Runner({str(tmp_path / 'out')!r}, command='resume-me', train_script={STUB!r}) as runner:
                runner.run(specs)
        except RunnerError as e:
            print(e, file=sys.stderr)
            sys.exit(e.code)
    ''')
    env = dict(os.environ, STUB_SLEEP='0.5', PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.time() + 60
    while not list((tmp_path / 'out' / 'runs').glob('*/last.pth.tar')) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert 'runner: SIGTERM: stopping the runs in flight at a checkpoint' in out
    assert err.strip().endswith('continue with:\n  resume-me')
    stopped = list((tmp_path / 'out' / 'runs').glob('*/last.pth.tar'))
    assert stopped and not list((tmp_path / 'out' / 'runs').glob('*/results.json'))
    assert subprocess.run(['pgrep', '-f', STUB], capture_output=True).stdout == b''  # no run left training


def test_progress_counts_runs_with_elapsed_and_eta_and_prefixes_every_worker_line(data, tmp_path):
    stream = io.StringIO()
    with Runner(tmp_path / 'out', train_script=STUB, stream=stream, workers=2) as runner:
        runner.run(frontier_specs(data))
    lines = stream.getvalue().splitlines()
    assert lines[0] == f'runner: 10 runs to train (0 finished before), 2 at a time, in {tmp_path / "out"}'
    assert any(line.startswith('runner: run 1 of 10: ') and '(elapsed ' in line for line in lines)
    assert sum('done' in line and ', ETA ' in line for line in lines if line.startswith('runner: run ')) == 10
    assert all(line.startswith(('runner: ', '[')) for line in lines)
    assert sum(line.endswith('stub baseline-e2-s0') for line in lines) == 1


def test_runs_go_seed_by_seed_cheapest_first_so_an_interrupted_plan_holds_whole_seeds(data, tmp_path):
    stream = io.StringIO()
    with Runner(tmp_path / 'out', train_script=STUB, stream=stream, workers=1) as runner:
        runner.run(frontier_specs(data))
    started = [re.search(r': (\S+) starts', line)[1] for line in stream.getvalue().splitlines()
               if line.startswith('runner: run ') and ' starts' in line]
    assert [name[-2:] for name in started] == ['s0'] * 5 + ['s1'] * 5
    assert started[:2] == ['baseline-e2-s0', 'mixup-e2-s0'] and started[5] == 'baseline-e2-s1'


def test_the_device_is_cuda_when_available_else_cpu_and_checkpoints_keep_one(monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert user_args(['--lr', '0.1']) == ('--device', 'cpu', '--checkpoint-hist', '1', '--lr', '0.1')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert user_args([])[:2] == ('--device', 'cuda')
    assert user_args(['--device', 'cpu', '--checkpoint-h', '5']) == ('--device', 'cpu', '--checkpoint-h', '5')


def test_gpu_workers_are_spread_one_per_device(data, monkeypatch, tmp_path):
    import timm_synermix.experiments.runner as runner_module
    monkeypatch.setattr(runner_module, '_cuda_count', lambda: 2)
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    spec = frontier_specs(data, extra=('--device', 'cuda'))[0]
    runner = stub_runner(tmp_path / 'out')
    assert [runner._env(spec, slot)['CUDA_VISIBLE_DEVICES'] for slot in range(3)] == ['0', '1', '0']


def test_the_plan_is_written_one_command_per_line_and_gathered_after(data, tmp_path, capsys):
    argv = [data, '--epochs', '2', '--ladder', '1', '--variants', 'synermix', '--seeds', '0', '--last-k', '1',
            '--out', str(tmp_path / 'out')]
    assert frontier_main(argv + ['--plan-only', '--', '--model', 'test_resnet']) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all('-m timm_synermix.trainer' in line and '--resume auto' in line for line in lines)
    assert (tmp_path / 'out' / 'plan.sh').read_text().splitlines() == lines
    for line in lines:  # a scheduler runs them (here: the stub in place of the trainer)
        command = line.replace('-m timm_synermix.trainer', STUB).split(' ', 2)[2]
        subprocess.run(f'{sys.executable} {STUB} {command.split(STUB, 1)[1]}', shell=True, check=True,
                       capture_output=True)
    assert frontier_main(argv + ['--report-only', '--', '--model', 'test_resnet']) == 0
    printed = capsys.readouterr().out
    assert '| synermix |' in printed and 'Incomplete' not in printed


def test_report_only_refuses_a_folder_without_runs_and_names_unfinished_ones(data, tmp_path, capsys):
    argv = [data, '--epochs', '2', '--ladder', '1', '--variants', 'synermix', '--seeds', '0', '--last-k', '1',
            '--out', str(tmp_path / 'o'), '--report-only', '--', '--model', 'test_resnet']
    assert frontier_main(argv) == 2
    assert 'holds no frontier runs' in capsys.readouterr().err and not (tmp_path / 'o').exists()
    specs = frontier_specs(data, epochs=2, ladder=(1,), seeds=[0], extra=USER[:4] + ('--model', 'test_resnet'))
    with stub_runner(tmp_path / 'o') as runner:
        runner.run([s for s in specs if s.role == 'ladder'])
    assert frontier_main(argv) == 0
    assert '**Incomplete: 1 planned runs have not finished** (synermix-e2-s0)' in capsys.readouterr().out


def test_a_failed_run_stops_the_plan_with_its_last_lines(data, tmp_path, monkeypatch):
    monkeypatch.setenv('STUB_FAIL', 'mixup-e2-s0')
    with stub_runner(tmp_path / 'out', workers=1) as runner:
        with pytest.raises(RunnerError, match=r'(?s)run mixup-e2-s0 failed \(train.py exit code 3; log .*boom'):
            runner.run(frontier_specs(data, seeds=[0]))


def test_train_py_checks_every_command_before_anything_runs(data, tmp_path):
    specs = frontier_specs(data, extra=USER + ('--smoothing', '2'))
    refused = r'train.py refuses its arguments: --smoothing 2.0 must be in \[0, 1\)'
    with stub_runner(tmp_path / 'out') as runner, pytest.raises(RunnerError, match=refused):
        runner.run(specs)
    assert not (tmp_path / 'out' / 'runs').exists()


def test_cost_and_the_intra_term_come_from_the_preset():
    spec = RunSpec('x', get_preset('synermix'), 0, 10, 'data', 3)
    assert spec.intra and not RunSpec('x', get_preset('synermix'), 0, 10, 'data', 3, beta=0.0).intra
    args = type('A', (), dict(synermix_every=1, synermix_batches='supplemented', batch_size=32))()
    assert spec.estimated_passes(args, 1000, 124) == pytest.approx(10 * 1000 * (1 + (123 / 124) ** 31) * 2)
    aug = RunSpec('x', get_preset('synermix-intra-aug'), 0, 10, 'data', 3)
    args.synermix_batches = 'paired-distinct'
    assert aug.estimated_passes(args, 1000, 124) == 10 * 1000


def test_the_data_fingerprint_counts_classes_and_images_per_split(data):
    identity = data_identity(data)
    assert identity['train']['classes'] == {'class0': 2, 'class1': 2, 'class2': 2}
    assert identity['val']['folder'] == 'validation' and sum(identity['val']['classes'].values()) == 3


def test_a_difference_is_paired_by_seed_with_its_95_percent_interval():
    d = paired_difference({0: 10.0, 1: 12.0, 2: 14.0}, {0: 9.0, 1: 10.0, 2: 11.0, 3: 50.0})
    assert (d.mean, d.std, d.n) == (2.0, 1.0, 3)
    assert d.half_width == pytest.approx(4.303 / 3 ** 0.5)
    assert d.text() == '+2.00 ± 1.00 [-0.48, +4.48]'


def test_the_verdict_cannot_separate_within_one_image_at_the_ceiling_or_with_zero_in_the_interval():
    score = Score(last_k=3, val_images=200)
    assert Difference(2.0, 0.1, 3).verdict(score) == 'above'
    assert Difference(-2.0, 0.1, 3).verdict(score) == 'below'
    assert Difference(0.4, 0.01, 3).verdict(score) == 'cannot separate: within one validation image (0.50 points)'
    assert Difference(0.4, 1.0, 3).verdict(score) == 'cannot separate: the 95% interval holds 0'
    assert Difference(2.0, 3.0, 3).verdict(score) == 'cannot separate: the 95% interval holds 0'
    assert Difference(-2.0, 0.1, 3).verdict(score, ceiling=99.6) == 'cannot separate: the frontier is at 100%'
    assert Difference(2.0, float('nan'), 1).verdict(score) == 'cannot separate: one seed, no interval'
