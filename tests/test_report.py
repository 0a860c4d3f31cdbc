import csv
import itertools
import json
import os

import numpy as np
import pytest
import yaml

from timm_synermix.experiments.report import main, make_report, pair_probability_curves
from timm_synermix.experiments.runs import load_run
from timm_synermix.method.presets import PRESETS


def _write_run(root, name, method, beta, seed, top1, metrics=None, features=None, extra_columns=False):
    run_dir = root / name
    run_dir.mkdir()
    args = dict(method=method, synermix=PRESETS[method].intra and bool(beta), synermix_beta=beta, seed=seed,
                model='resnet18', experiment=name, lr=0.1)
    (run_dir / 'args.yaml').write_text(yaml.safe_dump(args))
    with open(run_dir / 'summary.csv', 'w', newline='') as f:
        columns = ['epoch', 'train_loss', 'eval_loss', 'eval_top1', 'eval_top5', 'lr']
        if extra_columns:
            columns[2:2] = ['train_loss_intra', 'train_loss_inter']
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for epoch, acc in enumerate(top1):
            row = dict(epoch=epoch, train_loss=2. - 0.1 * epoch, eval_loss=1.5, eval_top1=acc, eval_top5=acc + 10,
                       lr=0.1, train_loss_intra=1., train_loss_inter=1.)
            writer.writerow({k: row[k] for k in columns})
    last = top1[-2:]
    (run_dir / 'results.json').write_text(json.dumps(dict(
        method=method, best_top1=max(top1), last_k=2, last_k_mean_top1=float(np.mean(last)),
        last_k_std_top1=float(np.std(last)), metrics=metrics or {})))
    if features is not None:
        np.savez(run_dir / 'features.npz', features=features[0], labels=features[1])
    return str(run_dir)


def _features(std, seed):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), 20)
    centers = np.array([[0., 0., 0., 0.], [6., 0., 0., 0.], [0., 6., 0., 0.]])
    return (centers[labels] + rng.normal(scale=std, size=(60, 4))).astype(np.float32), labels


def test_load_run_reads_the_run_dir_contract(tmp_path):
    run = load_run(_write_run(tmp_path, 'a', 'synermix', 0.1, 3, [10., 20., 30.], extra_columns=True))
    assert (run['method'], run['beta'], run['seed'], run['model']) == ('synermix', 0.1, 3, 'resnet18')
    assert run['summary']['epoch'].tolist() == [0, 1, 2]
    assert run['summary']['eval_top1'].tolist() == [10., 20., 30.]
    assert run['summary']['train_loss_intra'].tolist() == [1., 1., 1.]
    assert run['results']['last_k_mean_top1'] == 25. and run['features'] is None


def test_load_run_keeps_last_row_of_a_resumed_epoch(tmp_path):
    run_dir = _write_run(tmp_path, 'a', 'baseline', 0.1, 0, [10., 20.])
    with open(os.path.join(run_dir, 'summary.csv'), 'a') as f:
        f.write('epoch,train_loss,eval_loss,eval_top1,eval_top5,lr\n1,1.0,1.0,21.0,31.0,0.1\n2,1.0,1.0,22.0,32.0,0.1\n')
    assert load_run(run_dir)['summary']['eval_top1'].tolist() == [10., 21., 22.]


def test_load_run_without_args_says_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match='no args.yaml'):
        load_run(str(tmp_path))


def test_report_builds_pictures_from_tiny_runs(tmp_path):
    runs = tmp_path / 'runs'
    runs.mkdir()
    good = dict(cohesion=0.8, fisher_ratio=9.0, silhouette=0.6)
    dirs = [
        _write_run(runs, 'base-s0', 'baseline', 0.1, 0, [30., 50., 70.], dict(cohesion=0.5, fisher_ratio=2.0, silhouette=0.2),
                   features=_features(2.0, 0)),
        _write_run(runs, 'base-s1', 'baseline', 0.1, 1, [34., 54., 72.], dict(cohesion=0.4, fisher_ratio=3.0, silhouette=0.4)),
        _write_run(runs, 'syn-b01', 'synermix', 0.1, 0, [40., 60., 80.], good, features=_features(0.5, 1),
                   extra_columns=True),
        _write_run(runs, 'syn-b02', 'synermix', 0.2, 0, [40., 60., 76.], good, extra_columns=True),
    ]
    out = tmp_path / 'report'
    built = make_report(dirs, str(out), max_tsne_points=50, pair_trials=50)
    assert sorted(built) == ['accuracy_curves', 'accuracy_vs_beta', 'pair_probability', 'results', 'tsne']
    for name in ('tsne', 'accuracy_curves', 'accuracy_vs_beta', 'pair_probability'):
        assert built[name] == str(out / f'{name}.png')
        with open(built[name], 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'
        assert os.path.getsize(built[name]) > 20_000, name

    table = [line for line in (out / 'results.md').read_text().splitlines() if line.startswith('|')]
    assert table[0].startswith('| method | paper name | β | seeds | best top-1 | last-2 top-1 |')
    rows = {tuple(line.split(' | ')[i].lstrip('| ') for i in (0, 2)): line for line in table[2:]}
    assert sorted(rows) == [('baseline', '–'), ('synermix', '0.1'), ('synermix', '0.2')]
    # baseline: best 70 and 72, last-2 means 60 and 63; metrics over the two seeds
    assert '| wo-RA&ER | – | 0, 1 | 71.00 ± 1.41 | 61.50 ± 2.12 | – | 0.450 ± 0.071 | 2.500 ± 0.707 | 0.300 ± 0.141 |' \
        in rows[('baseline', '–')]
    # one seed: the spread is over the run's last 2 epochs (60, 80)
    assert '| w-RA&ER(M) | 0.1 | 0 | 80.00 | 70.00 ± 10.00 | – | 0.800 | 9.000 | 0.600 |' in rows[('synermix', '0.1')]


def test_report_skips_pictures_it_has_no_data_for(tmp_path, caplog):
    run = _write_run(tmp_path, 'only', 'synermix-intra', 0.4, 0, [10., 20.])
    built = make_report([run], str(tmp_path / 'report'), pair_trials=0)
    assert sorted(built) == ['accuracy_curves', 'pair_probability', 'results']
    assert 'features.npz' in caplog.text and 'two or more synermix_beta' in caplog.text


def test_report_cli_accepts_a_folder_of_runs(tmp_path, capsys):
    runs = tmp_path / 'runs'
    runs.mkdir()
    _write_run(runs, 'a', 'mixup', 0.1, 0, [10., 20.])
    _write_run(runs, 'b', 'synermix', 0.1, 0, [12., 22.])
    main([str(runs), '--out', str(tmp_path / 'report'), '--pair-trials', '0'])
    assert 'results: ' in capsys.readouterr().out
    text = (tmp_path / 'report' / 'results.md').read_text()
    assert '| mixup | w-ER(M) |' in text and '| synermix | w-RA&ER(M) |' in text


def test_pair_probability_analytic_matches_simulation():
    trials, batch_sizes = 3000, np.array([16, 32, 33, 128])
    curves = pair_probability_curves(batch_sizes, [10, 16, 128], trials=trials, seed=0)
    # within 4 standard errors; per-sample quantities average over about N/2 independent pairs per batch
    samples_per_batch = {'any_singleton_class': 1}
    for key in ('intra_pair_shuffle', 'intra_pair_flip', 'any_singleton_class', 'singleton_fraction'):
        analytic, simulated = curves[key]['analytic'], curves[key]['simulated']
        assert analytic.shape == simulated.shape == (3, 4)
        n = trials * samples_per_batch.get(key, batch_sizes // 2)
        tolerance = 4 * np.sqrt(analytic * (1 - analytic) / n) + 1e-3
        assert (np.abs(simulated - analytic) <= tolerance).all(), (key, simulated - analytic, tolerance)
    shuffle = curves['intra_pair_shuffle']['analytic']
    assert shuffle[1, 1] == pytest.approx(1 / 32 + 31 / 32 / 16)  # the paper's "about 9%" (C=16, N=32)
    assert 0.09 < shuffle[1, 1] < 0.095 and shuffle[2, 3] < 0.02  # "below 2%" at C=N=128
    flip = curves['intra_pair_flip']['analytic']
    assert flip[:, [0, 1, 3]] == pytest.approx(np.array([[1 / 10], [1 / 16], [1 / 128]]) * np.ones((1, 3)))
    assert flip[0, 2] == pytest.approx(1 / 33 + 32 / 33 / 10)
    assert curves['singleton_fraction']['analytic'][0, 0] == pytest.approx(0.9 ** 15)


def test_singleton_probabilities_match_enumeration():
    # every one of the 3^4 label sequences of a 4-sample batch over 3 classes, equally likely
    batches = np.array(list(itertools.product(range(3), repeat=4)))
    counts = np.stack([np.bincount(b, minlength=3) for b in batches])
    curves = pair_probability_curves([4], [3], trials=0)
    assert curves['any_singleton_class']['simulated'] is None
    assert curves['any_singleton_class']['analytic'][0, 0] == pytest.approx((counts == 1).any(1).mean())
    assert curves['singleton_fraction']['analytic'][0, 0] == pytest.approx((counts == 1).sum(1).mean() / 4)
    with pytest.raises(ValueError, match='batch sizes >= 2'):
        pair_probability_curves([1], [3])
