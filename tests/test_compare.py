""" timm_synermix.compare: the run plan, the beta choice, and the comparison end to end.

The beta protocol runs against a stub train.py (writes a run directory in milliseconds, holdout top-1 peaking
at beta 0.2) so its selection, retraining and table are checked without training; one end-to-end test runs
the real train.py on a tiny real-digit ImageFolder.
"""
import json
import os
import textwrap
import time

import pytest
import yaml

from timm_synermix.experiments.compare import (BETA_GRIDS, CompareError, main, trainer_command, plan_runs, run_compare,
                                   select_best_beta)
from timm_synermix.experiments.digits import write_image_folder

STUB = textwrap.dedent('''
    """Stand-in for train.py: writes the run directory contract; holdout top-1 peaks at beta 0.2."""
    import argparse, csv, json, os, sys
    import numpy as np, yaml
    p = argparse.ArgumentParser()
    p.add_argument('data'); p.add_argument('--method'); p.add_argument('--seed', type=int)
    p.add_argument('--output'); p.add_argument('--experiment'); p.add_argument('--synermix-beta', type=float)
    p.add_argument('--val-holdout', type=float); p.add_argument('--fail', action='store_true')
    a, _ = p.parse_known_args()
    print(f'Train: 0 [   0/1 (100%)]  stub {a.experiment}', flush=True)
    if a.fail:
        print('boom: stub failure', file=sys.stderr); sys.exit(3)
    d = os.path.join(a.output, a.experiment)
    if os.path.isdir(d) and os.listdir(d):
        sys.exit(f'experiment folder {d} exists')
    os.makedirs(d, exist_ok=True)
    synermix = a.method.startswith('synermix')
    beta = a.synermix_beta if a.synermix_beta is not None else ((0.1 if a.method == 'synermix' else 0.5) if synermix else 0.0)
    top1 = 90.0 - 20 * abs(beta - 0.2) + a.seed if synermix else 85.0 + a.seed
    yaml.safe_dump(dict(method=a.method, synermix_beta=beta, seed=a.seed, model='stub', experiment=a.experiment,
                        val_holdout=a.val_holdout), open(os.path.join(d, 'args.yaml'), 'w'))
    with open(os.path.join(d, 'summary.csv'), 'w') as f:
        f.write('epoch,train_loss,eval_loss,eval_top1,eval_top5,lr\\n0,2.0,1.5,%f,99,0.1\\n1,1.0,1.0,%f,99,0.1\\n' % (top1 - 5, top1))
    rng = np.random.default_rng(a.seed)
    labels = np.repeat(np.arange(3), 10)
    np.savez(os.path.join(d, 'features.npz'), features=rng.normal(size=(30, 4)) + labels[:, None], labels=labels)
    json.dump(dict(method=a.method, best_top1=top1, best_epoch=1, last_k=2, last_k_mean_top1=top1 - 2.5,
                   last_k_std_top1=2.5, metrics=dict(intra_distance=0.5, cohesion=0.5, fisher_ratio=2.0,
                                                     silhouette=0.3)), open(os.path.join(d, 'results.json'), 'w'))
''')
FAST_REPORT = dict(max_tsne_points=20, pair_trials=20, threads=1)  # threads: caps t-SNE's pools (torch is imported)


@pytest.fixture
def stub(tmp_path):
    path = tmp_path / 'stub_train.py'
    path.write_text(STUB)
    data = tmp_path / 'data'
    data.mkdir()
    return str(path), str(data)


def test_plan_runs_covers_every_method_for_every_seed():
    plan = plan_runs(['baseline', 'mixup', 'synermix-intra', 'synermix'], [0, 1, 2])
    assert [(r['method'], r['seed']) for r in plan] == [
        (m, s) for s in (0, 1, 2) for m in ('baseline', 'mixup', 'synermix-intra', 'synermix')]
    assert all(r['stage'] == 'final' and r['beta'] is None and r['holdout'] is None for r in plan)
    assert plan[0]['name'] == 'baseline-s0' and plan[-1]['name'] == 'synermix-s2'


def test_plan_runs_beta_protocol_sweeps_the_paper_grids_on_a_holdout():
    plan = plan_runs(['baseline', 'synermix-intra', 'synermix', 'synermix-manifold'], [3, 4], beta_protocol=True)
    sweep = [r for r in plan if r['stage'] == 'sweep']
    grids = {}
    for r in sweep:
        assert r['seed'] == 3 and r['holdout'] == 0.1
        grids.setdefault(r['method'], []).append(r['beta'])
    assert grids == {'synermix-intra': [0.2, 0.4, 0.5, 0.7], 'synermix': [0.05, 0.1, 0.2, 0.4],
                     'synermix-manifold': [0.05, 0.1, 0.2, 0.4]}
    assert BETA_GRIDS['synermix-intra-aug'] == (0.2, 0.4, 0.5, 0.7)
    finals = plan[len(sweep):]
    assert all(r['stage'] == 'final' for r in finals)
    assert [(r['name'], r['beta']) for r in finals if r['seed'] == 3] == [
        ('baseline-s3', None), ('synermix-intra-s3', None), ('synermix-s3', None), ('synermix-manifold-s3', None)]
    assert len(finals) == 8


def test_plan_runs_betas_override_the_grid_or_become_their_own_rows():
    plan = plan_runs(['synermix'], [0], betas=[0.3, 0.6], beta_protocol=True)
    assert [(r['stage'], r['beta']) for r in plan] == [('sweep', 0.3), ('sweep', 0.6), ('final', None)]
    plan = plan_runs(['baseline', 'synermix'], [0, 1], betas=[0.1, 0.2])
    assert [r['name'] for r in plan] == ['baseline-s0', 'synermix-b0.1-s0', 'synermix-b0.2-s0',
                                         'baseline-s1', 'synermix-b0.1-s1', 'synermix-b0.2-s1']


def test_plan_runs_rejects_unknown_methods_and_bad_betas():
    with pytest.raises(CompareError, match='Did you mean "synermix"'):
        plan_runs(['synermx'], [0])
    with pytest.raises(CompareError, match=r'\[0, 1\]'):
        plan_runs(['synermix'], [0], betas=[1.5])
    with pytest.raises(CompareError, match='no seeds'):
        plan_runs(['synermix'], [])


def test_select_best_beta_picks_the_highest_holdout_top1():
    assert select_best_beta({0.05: 91.0, 0.1: 93.5, 0.2: 92.0, 0.4: 90.0}) == 0.1
    assert select_best_beta([(0.7, 80.0), (0.2, 70.0), (0.5, None), (0.4, float('nan'))]) == 0.7


def test_select_best_beta_tie_goes_to_the_smaller_beta():
    # the smaller intra weight is closer to the inter method alone: a tie claims no more effect than measured
    assert select_best_beta({0.4: 92.5, 0.2: 92.5, 0.05: 91.0}) == 0.2


def test_select_best_beta_without_scores_is_an_error():
    with pytest.raises(CompareError, match='no beta'):
        select_best_beta({0.1: None})


def test_runs_train_through_the_installed_trainer_module():
    assert trainer_command('py') == ['py', '-m', 'timm_synermix.trainer']
    assert trainer_command('py', 'stub.py') == ['py', 'stub.py']


def test_missing_train_script_is_a_clear_error(tmp_path, stub, capsys):
    rc = main([stub[1], '--methods', 'baseline', '--seeds', '0', '--out', str(tmp_path / 'out'),
               '--train-script', str(tmp_path / 'nope.py')])
    assert rc == 2
    assert 'train script not found at' in capsys.readouterr().err


def test_flags_compare_sets_are_refused_after_the_separator(tmp_path, stub, capsys):
    rc = main([stub[1], '--methods', 'baseline', '--seeds', '0', '--out', str(tmp_path / 'out'),
               '--train-script', stub[0], '--', '--seed', '5'])
    assert rc == 2
    assert '--seed is set by the comparison' in capsys.readouterr().err


def test_beta_protocol_chooses_on_the_holdout_then_retrains_with_the_choice(tmp_path, stub):
    out = tmp_path / 'out'
    result = run_compare(stub[1], ['baseline', 'synermix-intra', 'synermix'], [0, 1], out, beta_protocol=True,
                         train_script=stub[0], **FAST_REPORT)
    assert result['chosen_betas'] == {'synermix-intra': 0.2, 'synermix': 0.2}  # the stub peaks at 0.2
    for name in ('synermix-intra-b0.2-s0', 'synermix-b0.05-s0', 'synermix-b0.4-s0'):
        args = yaml.safe_load((out / 'sweep' / name / 'args.yaml').read_text())
        assert args['val_holdout'] == 0.1 and args['seed'] == 0
    for method in ('synermix-intra', 'synermix'):
        for seed in (0, 1):
            args = yaml.safe_load((out / 'runs' / f'{method}-s{seed}' / 'args.yaml').read_text())
            assert args['synermix_beta'] == 0.2 and args['val_holdout'] is None
    text = (out / 'results.md').read_text()
    assert '| synermix | w-RA&ER(M) | 0.2 (sweep) | 0, 1 | 90.50 ± 0.71 |' in text
    assert '| baseline | wo-RA&ER | – | 0, 1 | 85.50 ± 0.71 |' in text
    assert '## β sweep' in text and '| synermix | 0.2 | 90.00 | 87.50 | ✓ |' in text
    assert '| synermix-intra | 0.7 | 80.00 | 77.50 |  |' in text
    assert set(result['pictures']) == {'tsne', 'accuracy_curves', 'accuracy_vs_beta', 'pair_probability'}
    assert all(os.path.getsize(p) > 0 for p in result['pictures'].values())


def test_an_interrupted_run_is_restarted_and_finished_runs_are_kept(tmp_path, stub, capsys):
    out = tmp_path / 'out'
    run_compare(stub[1], ['baseline'], [0], out, train_script=stub[0], report=False)
    (out / 'runs' / 'mixup-s0').mkdir()
    (out / 'runs' / 'mixup-s0' / 'last.pth.tar').write_text('partial')  # killed before results.json
    capsys.readouterr()
    run_compare(stub[1], ['baseline', 'mixup'], [0], out, train_script=stub[0], report=False)
    log = capsys.readouterr().out
    assert '[baseline-s0] finished before' in log
    assert '[mixup-s0] ' + str(out / 'runs' / 'mixup-s0') + ' has no results.json (interrupted): restarting' in log
    assert not (out / 'runs' / 'mixup-s0' / 'last.pth.tar').exists()
    assert (out / 'runs' / 'mixup-s0' / 'results.json').is_file()


def test_a_finished_run_made_with_other_arguments_is_an_error(tmp_path, stub):
    out = tmp_path / 'out'
    run_compare(stub[1], ['baseline'], [0], out, train_script=stub[0], report=False, extra_args=['--epochs', '2'])
    with pytest.raises(CompareError, match='finished run made with other arguments'):
        run_compare(stub[1], ['baseline'], [0], out, train_script=stub[0], report=False,
                    extra_args=['--epochs', '3'])


def test_a_failed_run_stops_the_comparison_with_its_last_lines(tmp_path, stub):
    with pytest.raises(CompareError, match=r'(?s)run baseline-s0 failed \(train.py exit code 3\).*boom'):
        run_compare(stub[1], ['baseline'], [0], tmp_path / 'out', train_script=stub[0], report=False,
                    extra_args=['--fail'])


def test_compare_end_to_end_writes_the_table_and_pictures_and_skips_finished_runs(tmp_path, capsys):
    # val_fraction 0.5: 3 eval images per class; train.py's feature metrics need more eval images than classes
    folder = write_image_folder('digits', tmp_path / 'digits', per_class=6, size=16, val_fraction=0.5)
    out = tmp_path / 'out'
    argv = [folder['root'], '--methods', 'baseline', 'synermix', '--seeds', '0', '--out', str(out),
            '--threads', '1', '--max-tsne-points', '20', '--pair-trials', '20', '--',
            '--model', 'test_resnet', '--img-size', '16', '-b', '8', '--epochs', '1', '--device', 'cpu', '-j', '0',
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

    start = time.perf_counter()
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert '[baseline-s0] finished before' in second and '[synermix-s0] finished before' in second
    assert 'Train: 0 [' not in second
    assert {m: p.stat().st_mtime_ns for m, p in results.items()} == stamps
    assert (out / 'results.md').read_text() in second
    assert time.perf_counter() - start < 60
