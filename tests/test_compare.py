""" timm_synermix.compare: the run plan, the beta choice, and the comparison end to end.

The beta protocol runs against the stub trainer (tests/stub_train.py: writes a run directory in milliseconds,
holdout top-1 peaking at beta 0.2) so its selection, retraining and table are checked without training; one
end-to-end test runs the real train.py on a tiny real-digit ImageFolder.
"""
import io
import json
import os

import pytest
import yaml

from timm_synermix.experiments.compare import BETA_GRIDS, main, plan_runs, run_compare, select_best_beta
from timm_synermix.experiments.digits import write_image_folder
from timm_synermix.experiments.runner import Runner, RunnerError

STUB = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'stub_train.py')
USER = ('--device', 'cpu', '--checkpoint-hist', '1')
FAST_REPORT = dict(max_tsne_points=20, pair_trials=20)


@pytest.fixture
def stub(tmp_path):
    data = tmp_path / 'data'
    for split in ('train', 'validation'):
        for c in range(3):
            (data / split / f'class{c}').mkdir(parents=True)
            (data / split / f'class{c}' / '0.png').write_bytes(b'not read by the stub')
    return STUB, str(data)


def compare(stub, out, methods, seeds, stream=None, **kwargs):
    plan_kwargs = {k: kwargs.pop(k) for k in ('betas', 'beta_protocol', 'extra') if k in kwargs}
    plan = plan_runs(stub[1], methods, seeds, 2, last_k=2, **dict(dict(extra=USER), **plan_kwargs))
    with Runner(out, command='compare ...', threads=1, train_script=stub[0], stream=stream or io.StringIO()) as r:
        return run_compare(r, plan, **kwargs)


def test_plan_runs_covers_every_method_for_every_seed():
    plan = plan_runs('data', ['baseline', 'mixup', 'synermix-intra', 'synermix'], [0, 1, 2], 5)
    assert [(r.preset.name, r.seed) for r in plan] == [
        (m, s) for s in (0, 1, 2) for m in ('baseline', 'mixup', 'synermix-intra', 'synermix')]
    assert all(r.role == 'final' and r.beta is None and r.options == () and r.epochs == 5 for r in plan)
    assert plan[0].name == 'baseline-s0' and plan[-1].name == 'synermix-s2'


def test_plan_runs_beta_protocol_sweeps_the_paper_grids_on_a_holdout():
    plan = plan_runs('data', ['baseline', 'synermix-intra', 'synermix', 'synermix-manifold'], [3, 4], 5,
                     beta_protocol=True)
    sweep = [r for r in plan if r.role == 'sweep']
    grids = {}
    for r in sweep:
        assert r.seed == 3 and r.options == ('--val-holdout', '0.1')
        grids.setdefault(r.preset.name, []).append(r.beta)
    assert grids == {'synermix-intra': [0.2, 0.4, 0.5, 0.7], 'synermix': [0.05, 0.1, 0.2, 0.4],
                     'synermix-manifold': [0.05, 0.1, 0.2, 0.4]}
    assert BETA_GRIDS['synermix-intra-aug'] == (0.2, 0.4, 0.5, 0.7)
    finals = plan[len(sweep):]
    assert all(r.role == 'final' for r in finals)
    assert [(r.name, r.beta) for r in finals if r.seed == 3] == [
        ('baseline-s3', None), ('synermix-intra-s3', None), ('synermix-s3', None), ('synermix-manifold-s3', None)]
    assert len(finals) == 8


def test_plan_runs_betas_override_the_grid_or_become_their_own_rows():
    plan = plan_runs('data', ['synermix'], [0], 5, betas=[0.3, 0.6], beta_protocol=True)
    assert [(r.role, r.beta) for r in plan] == [('sweep', 0.3), ('sweep', 0.6), ('final', None)]
    plan = plan_runs('data', ['baseline', 'synermix'], [0, 1], 5, betas=[0.1, 0.2])
    assert [r.name for r in plan] == ['baseline-s0', 'synermix-b0.1-s0', 'synermix-b0.2-s0',
                                      'baseline-s1', 'synermix-b0.1-s1', 'synermix-b0.2-s1']


def test_plan_runs_rejects_unknown_methods_and_bad_betas():
    with pytest.raises(RunnerError, match='Did you mean "synermix"'):
        plan_runs('data', ['synermx'], [0], 5)
    with pytest.raises(RunnerError, match=r'\[0, 1\]'):
        plan_runs('data', ['synermix'], [0], 5, betas=[1.5])
    with pytest.raises(RunnerError, match='no seeds'):
        plan_runs('data', ['synermix'], [], 5)


def test_select_best_beta_picks_the_highest_holdout_top1():
    assert select_best_beta({0.05: 91.0, 0.1: 93.5, 0.2: 92.0, 0.4: 90.0}) == 0.1
    assert select_best_beta([(0.7, 80.0), (0.2, 70.0), (0.5, None), (0.4, float('nan'))]) == 0.7


def test_select_best_beta_tie_goes_to_the_smaller_beta():
    # the smaller intra weight is closer to the inter method alone: a tie claims no more effect than measured
    assert select_best_beta({0.4: 92.5, 0.2: 92.5, 0.05: 91.0}) == 0.2


def test_select_best_beta_without_scores_is_an_error():
    with pytest.raises(RunnerError, match='no beta'):
        select_best_beta({0.1: None})


def test_runs_train_through_the_installed_trainer_module(tmp_path):
    (spec,) = plan_runs('data', ['baseline'], [0], 1, last_k=1)
    assert Runner(tmp_path, python='py').command_of(spec)[:3] == ['py', '-m', 'timm_synermix.trainer']
    assert Runner(tmp_path, python='py', train_script='stub.py').command_of(spec)[:2] == ['py', 'stub.py']


def test_missing_train_script_is_a_clear_error(tmp_path, stub, capsys):
    rc = main([stub[1], '--methods', 'baseline', '--seeds', '0', '--epochs', '1', '--out', str(tmp_path / 'out'),
               '--train-script', str(tmp_path / 'nope.py')])
    assert rc == 2
    assert 'train script not found at' in capsys.readouterr().err


def test_flags_compare_sets_are_refused_after_the_separator(tmp_path, stub, capsys):
    rc = main([stub[1], '--methods', 'baseline', '--seeds', '0', '--epochs', '1', '--out', str(tmp_path / 'out'),
               '--train-script', stub[0], '--', '--seed', '5'])
    assert rc == 2
    assert '--seed is set by the plan itself' in capsys.readouterr().err


def test_beta_protocol_chooses_on_the_holdout_then_retrains_with_the_choice(tmp_path, stub):
    out = tmp_path / 'out'
    result = compare(stub, out, ['baseline', 'synermix-intra', 'synermix'], [0, 1], beta_protocol=True,
                     **FAST_REPORT)
    assert result['chosen_betas'] == {'synermix-intra': 0.2, 'synermix': 0.2}  # the stub peaks at 0.2
    for name in ('sweep-synermix-intra-b0.2-s0', 'sweep-synermix-b0.05-s0', 'sweep-synermix-b0.4-s0'):
        args = yaml.safe_load((out / 'runs' / name / 'args.yaml').read_text())
        assert args['val_holdout'] == 0.1 and args['seed'] == 0
    for method in ('synermix-intra', 'synermix'):
        for seed in (0, 1):
            args = yaml.safe_load((out / 'runs' / f'{method}-b0.2-s{seed}' / 'args.yaml').read_text())
            assert args['synermix_beta'] == 0.2 and args['val_holdout'] is None
    text = (out / 'results.md').read_text()
    assert '| synermix | w-RA&ER(M) | 0.2 (sweep) | 0, 1 | 75.50 ± 0.71 | 65.50 ± 0.71 |' in text
    assert '| baseline | wo-RA&ER | – | 0, 1 | 70.50 ± 0.71 | 60.50 ± 0.71 |' in text
    assert '## β sweep' in text and '| synermix | 0.2 | 75.00 | 65.00 | ✓ |' in text
    assert '| synermix-intra | 0.7 | 65.00 | 55.00 |  |' in text
    assert set(result['pictures']) == {'tsne', 'accuracy_curves', 'accuracy_vs_beta', 'pair_probability'}
    assert all(os.path.getsize(p) > 0 for p in result['pictures'].values())


def test_an_interrupted_run_continues_and_finished_runs_are_kept(tmp_path, stub):
    out, stream = tmp_path / 'out', io.StringIO()
    compare(stub, out, ['baseline'], [0], report=False)
    stamp = (out / 'runs' / 'baseline-s0' / 'results.json').stat().st_mtime_ns
    (out / 'runs' / 'mixup-s0').mkdir()
    (out / 'runs' / 'mixup-s0' / 'run.json').write_text(json.dumps(
        Runner(out).record(plan_runs(stub[1], ['mixup'], [0], 2, last_k=2, extra=USER)[0])))
    (out / 'runs' / 'mixup-s0' / 'last.pth.tar').write_text('1')  # killed after its first epoch
    compare(stub, out, ['baseline', 'mixup'], [0], report=False, stream=stream)
    log = stream.getvalue()
    assert 'runner: 1 runs to train (1 finished before)' in log
    assert 'mixup-s0 continues (interrupted before: --resume auto)' in log
    assert (out / 'runs' / 'baseline-s0' / 'results.json').stat().st_mtime_ns == stamp
    assert (out / 'runs' / 'mixup-s0' / 'results.json').is_file()


def test_a_finished_run_made_with_other_arguments_is_an_error(tmp_path, stub):
    out = tmp_path / 'out'
    compare(stub, out, ['baseline'], [0], report=False, extra=USER + ('--lr', '0.1'))
    with pytest.raises(RunnerError, match='made with other arguments'):
        compare(stub, out, ['baseline'], [0], report=False, extra=USER + ('--lr', '0.2'))


def test_a_failed_run_stops_the_comparison_with_its_last_lines(tmp_path, stub, monkeypatch):
    monkeypatch.setenv('STUB_FAIL', 'baseline')
    with pytest.raises(RunnerError, match=r'(?s)run baseline-s0 failed \(train.py exit code 3; log .*boom'):
        compare(stub, tmp_path / 'out', ['baseline'], [0], report=False)


def test_compare_end_to_end_writes_the_table_and_pictures_and_skips_finished_runs(tmp_path, capsys):
    # val_fraction 0.5: 3 eval images per class; train.py's feature metrics need more eval images than classes
    folder = write_image_folder('digits', tmp_path / 'digits', per_class=6, size=16, val_fraction=0.5)
    out = tmp_path / 'out'
    argv = [folder['root'], '--methods', 'baseline', 'synermix', '--seeds', '0', '--epochs', '1', '--last-k', '1',
            '--out', str(out), '--threads', '1', '--max-tsne-points', '20', '--pair-trials', '20', '--',
            '--model', 'test_resnet', '--img-size', '16', '-b', '8', '--device', 'cpu', '-j', '0',
            '--lr', '0.05', '--sched', 'step', '--warmup-epochs', '0', '--smoothing', '0', '--log-interval', '2']
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert '[synermix-s0] Train: 0 [' in first  # timm's progress lines stream through, prefixed
    assert '| baseline | wo-RA&ER | – | 0 |' in first and '| synermix | w-RA&ER(M) | 0.1 | 0 |' in first
    for name in ('results.md', 'tsne.png', 'accuracy_curves.png', 'pair_probability.png'):
        assert (out / name).stat().st_size > 0
        assert str(out / name) in first
    results = {m: out / 'runs' / f'{m}-s0' / 'results.json' for m in ('baseline', 'synermix')}
    stamps = {m: p.stat().st_mtime_ns for m, p in results.items()}
    assert json.loads(results['synermix'].read_text())['method'] == 'synermix'

    assert main(argv) == 0
    second = capsys.readouterr().out
    assert 'runs to train' not in second and 'Train: 0 [' not in second
    assert {m: p.stat().st_mtime_ns for m, p in results.items()} == stamps
    assert (out / 'results.md').read_text() in second
