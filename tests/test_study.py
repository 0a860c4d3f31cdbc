"""The regime map: the plain-training frontier, each variant's distance to it, the plans, and the commands end to end."""
import json
import math
import os
import pathlib

import pytest

from timm_synermix.experiments.frontier import (VARIANTS, flattening, frontier_at, judge, main as frontier_main,
                                               plan_frontier, _rungs)
from timm_synermix.experiments.scores import Score
from timm_synermix.experiments.study import STUDIES, regime_plans, run_study

from train_helpers import write_image_folder


def ladder_point(method, epochs, seed, cost, top1):
    return dict(role='ladder', method=method, variant=method, epochs=epochs, seed=seed, cost=cost, top1=top1)


def variant_point(variant, epochs, seed, cost, top1):
    return dict(role='variant', variant=variant, label=f'{variant} ({epochs} ep)', method='synermix', epochs=epochs,
                seed=seed, cost=cost, top1=top1, seconds=1.0)


LADDER = [ladder_point('baseline', 10, 0, 1000, 50), ladder_point('baseline', 20, 0, 2000, 60),
          ladder_point('baseline', 40, 0, 4000, 64), ladder_point('mixup', 10, 0, 1000, 45),
          ladder_point('mixup', 20, 0, 2000, 61), ladder_point('mixup', 40, 0, 4000, 61)]


def test_the_frontier_joins_the_rungs_in_log_cost_and_holds_past_the_top_rung():
    rungs = _rungs(LADDER)
    assert frontier_at(rungs, 1000) == 50 and frontier_at(rungs, 2000) == 61
    assert frontier_at(rungs, 2000 * math.sqrt(2)) == pytest.approx(62)   # halfway in log cost, baseline 60 -> 64
    assert frontier_at(rungs, 16000) == 64
    assert frontier_at(rungs, 500) is None   # cheaper than any plain run trained


def test_a_variant_is_judged_per_seed_against_its_seeds_frontier_at_its_own_cost():
    seed1 = [dict(p, seed=1, top1=p['top1'] + 1) for p in LADDER]
    points = LADDER + seed1 + [variant_point('synermix', 10, 0, 2000, 63), variant_point('synermix', 10, 1, 4000, 60)]
    (row,) = judge(points, Score(last_k=3, val_images=1000))
    assert row['seeds'] == 2 and row['cost'] == 3000
    assert (row['distance'].mean, row['distance'].n) == (pytest.approx(((63 - 61) + (60 - 65)) / 2), 2)
    assert row['distance'].std == pytest.approx(7 / math.sqrt(2))
    assert row['verdict'] == 'cannot separate: the 95% interval holds 0'


def test_the_last_doubling_is_compared_with_the_seed_noise():
    points = LADDER + [ladder_point('baseline', 40, 1, 4000, 61), ladder_point('baseline', 20, 1, 2000, 59)]
    flat = flattening(points)
    assert flat['baseline']['gain'] == pytest.approx(62.5 - 59.5)
    assert flat['baseline']['noise'] == pytest.approx(math.sqrt(4.5)) and not flat['baseline']['flat']


def test_the_plan_runs_the_ladder_and_every_variant_over_every_seed():
    specs = plan_frontier('data', 10, (1, 2, 4), ['synermix', 'mixup-supplemented'], [0, 1, 2],
                          betas={'synermix': 0.4, 'mixup-supplemented': 0.4})
    ladder = [s for s in specs if s.role == 'ladder']
    assert sorted({(s.preset.name, s.epochs) for s in ladder}) == [
        ('baseline', 10), ('baseline', 20), ('baseline', 40), ('mixup', 10), ('mixup', 20), ('mixup', 40)]
    variants = [s for s in specs if s.role == 'variant']
    assert len(variants) == 6 and {s.seed for s in variants} == {0, 1, 2}
    assert {(s.variant, s.beta) for s in variants} == {('synermix', 0.4), ('mixup-supplemented', None)}
    assert all(s.composition == 'supplemented' and '--batch-composition' in s.own_args() for s in variants
               if s.variant == 'mixup-supplemented')


def test_the_three_regimes_share_what_they_can_and_each_variant_has_its_controls():
    study = STUDIES['glyphs']
    plans = regime_plans(study, {'scratch': 'data/scratch', 'finetune': 'data/finetune'}, pathlib.Path('out'))
    assert set(plans) == {'scratch-short', 'scratch-long', 'finetune'}
    short, long = plans['scratch-short'], plans['scratch-long']
    assert {s.epochs for s in long if s.role == 'variant'} == {6 * 3}
    assert {s.name for s in short if s.role == 'ladder'} <= {s.name for s in long if s.role == 'ladder'}
    assert all(s.extra[-2:] == ('--pretrained-path', 'out/runs/pretrain-latin/model_best.safetensors')
               for s in plans['finetune'])
    for regime, specs in plans.items():
        data = next(r.data for r in study.regimes if r.name == regime)
        assert all(s.name.startswith(f'{data}-resnet10t-') and s.data.endswith(data) for s in specs)
        names = {s.variant for s in specs if s.role == 'variant'}
        assert 'clean-view' in names and 'baseline-supplemented' in names, regime
        for paired in ('paired', 'paired-distinct'):
            if f'synermix-{paired}' in names:
                assert {f'baseline-{paired}', f'mixup-{paired}'} <= names, (regime, paired)
        assert all(len([s for s in specs if s.variant == v and s.epochs == e]) == 3
                   for v in names for e in {s.epochs for s in specs if s.variant == v})


def test_every_variant_names_an_existing_method():
    from timm_synermix import PRESETS
    assert all(kind.method in PRESETS for kind in VARIANTS.values())


def test_the_compute_matched_command_runs_end_to_end_resumes_and_fine_tunes(tmp_path, capsys):
    data = write_image_folder(tmp_path / 'data', n_train=6, n_val=2, classes=3)
    common = ['--model', 'test_resnet', '--img-size', '32', '-b', '4', '--device', 'cpu', '-j', '0', '--lr', '0.05',
              '--sched', 'cosine', '--warmup-epochs', '0']
    out = tmp_path / 'out'
    argv = [str(data), '--epochs', '1', '--ladder', '1', '2', '--variants', 'synermix-intra', '--seeds', '0',
            '--last-k', '1', '--out', str(out), '--workers', '2']
    assert frontier_main(argv + ['--'] + common) == 0
    printed = capsys.readouterr().out
    assert '| synermix-intra |' in printed and 'vs frontier at equal cost' in printed
    assert (out / 'frontier.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    points = json.loads((out / 'frontier.json').read_text())
    assert len(points) == 5 and all(p['cost'] > 0 for p in points)
    intra = [p for p in points if p['role'] == 'variant'][0]
    plain = [p for p in points if p['role'] == 'ladder' and p['epochs'] == 1][0]
    assert intra['cost'] > 2 * plain['cost']   # the originals' pass over supplemented batches
    assert frontier_main(argv + ['--'] + common) == 0   # a second call reuses every finished run
    assert 'runs to train' not in capsys.readouterr().out
    backbone = out / 'runs' / 'baseline-e1-s0' / 'model_best.safetensors'
    tuned = tmp_path / 'tuned'
    assert frontier_main([str(data), '--epochs', '1', '--ladder', '1', '--variants', 'mixup-supplemented', '--seeds',
                          '0', '--last-k', '1', '--out', str(tuned), '--'] + common + ['--pretrained-path',
                                                                                      str(backbone)]) == 0
    assert 'Loaded pretrained weights' in (tuned / 'logs' / 'mixup-supplemented-e1-s0.log').read_text()


def test_the_frontier_command_refuses_flags_it_sets_itself(tmp_path, capsys):
    assert frontier_main([str(tmp_path), '--epochs', '1', '--out', str(tmp_path / 'o'), '--', '--epochs', '3']) == 2
    assert '--epochs is set by the plan itself' in capsys.readouterr().err


@pytest.fixture(scope='module')
def quick_study(tmp_path_factory):
    import matplotlib
    fonts = os.path.join(os.path.dirname(matplotlib.__file__), 'mpl-data', 'fonts', 'ttf')
    out = tmp_path_factory.mktemp('study')
    return out, run_study(out, study='quick', sources={'fonts': [fonts]})


def test_study_quick_runs_every_regime_end_to_end(quick_study):
    out, result = quick_study
    text = (out / 'results.md').read_text()
    for regime in ('scratch-short', 'scratch-long', 'finetune'):
        assert f'(`{regime}`)' in text and (out / f'frontier_{regime}.png').read_bytes()[:4] == b'\x89PNG'
        assert result['verdicts'][regime]
    runs = json.loads((out / 'study.json').read_text())
    assert {'regime', 'method', 'variant', 'epochs', 'seed', 'cost', 'top1'} <= set(runs[0])
    assert {r['regime'] for r in runs} == {'scratch-short', 'scratch-long', 'finetune'}


def test_the_decomposition_splits_a_variant_into_its_batches_and_its_intra_term():
    from timm_synermix.experiments.study import decomposition_table
    points = [ladder_point('mixup', 6, s, 100, 50 + s) for s in (0, 1)]
    points += [variant_point('mixup-supplemented', 6, s, 180, 53 + s) for s in (0, 1)]
    points += [variant_point('synermix', 6, s, 360, 54 + 2 * s) for s in (0, 1)]
    row = [line for line in decomposition_table(points, 6).splitlines() if line.startswith('| synermix |')][0]
    assert row == '| synermix | mixup-supplemented | +3.00 ± 0.00 [+3.00, +3.00] | +1.50 ± 0.71 [-4.85, +7.85] |'


def test_study_report_only_writes_no_data_and_refuses_a_folder_without_its_study(quick_study, tmp_path):
    from timm_synermix.experiments.runner import RunnerError
    out, _ = quick_study
    with pytest.raises(RunnerError, match='holds no study runs'):
        run_study(tmp_path / 'empty', report_only=True)
    assert not (tmp_path / 'empty').exists()
    with pytest.raises(RunnerError, match=r'holds a study made with other settings \(.*: pass the --study'):
        run_study(out, report_only=True)
    data = {p: p.stat().st_mtime_ns for p in (out / 'data').rglob('*')}
    before = (out / 'results.md').read_text()
    run_study(out, study='quick', report_only=True)
    assert {p: p.stat().st_mtime_ns for p in (out / 'data').rglob('*')} == data
    assert (out / 'results.md').read_text().split('\n', 3)[3] == before.split('\n', 3)[3]


def test_the_gpu_study_plan_checks_on_a_cpu_and_fits_eight_minutes_on_one_gpu(tmp_path, capsys):
    from timm_synermix.experiments.study import dry_run
    serial = dry_run('gpu', tmp_path / 'gpu')
    lines = capsys.readouterr().out.splitlines()
    commands = [line for line in lines if not line.startswith('#')]
    assert len(commands) == 30 and all('--device cuda' in c and '--img-size 64' in c for c in commands)
    assert {m for c in commands for m in ('resnet10t', 'mobilenetv3_small_100', 'swin_tiny_patch4_window7_224')
            if f'--model {m}' in c} == {'resnet10t', 'mobilenetv3_small_100', 'swin_tiny_patch4_window7_224'}
    assert serial / STUDIES['gpu'].workers <= 8 * 60 and lines[-1].startswith('# 30 runs, ')
    assert not (tmp_path / 'gpu').exists()


def test_the_families_train_each_model_at_a_size_it_learns_at_from_its_own_glyph_backbone():
    study = STUDIES['families']
    sizes = {r.recipe.model: (r.recipe.size, r.recipe.opt, r.backbone) for r in study.regimes}
    assert sizes == {'resnet10t': (32, 'sgd', 'latin-resnet10t'),
                     'mobilenetv3_small_100': (48, 'sgd', 'latin-mobilenetv3_small_100'),
                     'swin_tiny_patch4_window7_224': (32, 'adamw', 'latin-swin_tiny_patch4_window7_224')}
    assert {p.name for p in study.pretraining} == {r.backbone for r in study.regimes}


def test_two_different_runs_under_one_name_are_a_study_mistake():
    from dataclasses import replace
    from timm_synermix.experiments.runner import RunnerError
    from timm_synermix.experiments.study import _union
    plans = regime_plans(STUDIES['glyphs'], {'scratch': 'a', 'finetune': 'b'}, pathlib.Path('out'))
    clash = replace(plans['finetune'][0], name=plans['scratch-short'][0].name)
    with pytest.raises(RunnerError, match='two different runs of the study are named scratch-resnet10t-baseline'):
        _union({'x': plans['scratch-short'], 'y': [clash]})


def test_a_variant_within_two_std_of_the_frontier_trains_two_more_seeds_with_its_ladder():
    from dataclasses import replace
    from timm_synermix.experiments.study import close_variants, five_seed_plans, five_seed_rule
    points = [dict(p, seed=s) for s in (0, 1, 2) for p in LADDER]   # the frontier at cost 1000: 50
    points += [variant_point('synermix', 10, s, 1000, 50 - s) for s in (0, 1, 2)]            # -1 ± 1: close
    points += [variant_point('synermix-intra', 10, s, 1000, 41 - s) for s in (0, 1, 2)]      # -10 ± 1: apart
    points += [variant_point('synermix-intra', 10, 3, 1000, 50)]   # a later seed does not change who is close
    assert close_variants(points, (0, 1, 2)) == ('synermix',)
    study = STUDIES['icons']
    close = five_seed_rule(study, {'icons-finetune': (points, []), 'icons-scratch': (points, ['unfinished-s2'])})
    assert close == {'icons-finetune': ('synermix',), 'icons-scratch': None}
    one_seed = replace(study, seeds=(2,))   # no std to be within: the rule needs two base seeds
    assert five_seed_rule(one_seed, {'icons-finetune': (points, []), 'icons-scratch': (points, [])}) == {}
    (specs,) = five_seed_plans(study, {'icons': 'icons', 'glyphs': 'glyphs'}, pathlib.Path('out'), close).values()
    assert {s.seed for s in specs} == {3, 4} and {s.variant for s in specs if s.role == 'variant'} == {'synermix'}
    assert len([s for s in specs if s.role == 'ladder']) == 12 and len(specs) == 14


def test_a_picture_of_unfinished_runs_without_a_plain_run_draws_no_frontier(tmp_path):
    from timm_synermix.experiments.frontier import plot_frontier
    for name, points in (('variant-only.png', [variant_point('synermix', 10, 0, 2000, 63)]), ('empty.png', [])):
        assert pathlib.Path(plot_frontier(points, tmp_path / name, 'unfinished')).read_bytes()[:4] == b'\x89PNG'


def test_the_report_says_which_rows_the_five_seed_rule_chose_or_that_it_waits():
    from timm_synermix.experiments.study import _five_seed_note
    study = STUDIES['icons']
    assert 'decided once seeds 0, 1, 2 have finished' in _five_seed_note(study, None)
    assert _five_seed_note(study, ()).endswith('trains seeds 3, 4 too; no variant is.\n\n')
    assert _five_seed_note(study, ('clean-view',)).endswith('with the ladder: clean-view.\n\n')
    assert _five_seed_note(STUDIES['families'], ('clean-view',)) == ''   # a study without the rule
