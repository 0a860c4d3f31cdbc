"""The study: compute-matched epochs, the Pareto front, and `make study-quick` end to end on matplotlib's fonts."""
import os

import numpy as np
import pytest

from timm_synermix.experiments.study import ROWS, _pareto, matched_epochs, plan_study, run_study


def test_compute_matched_epochs_spend_synermixs_image_passes():
    ten_classes = np.repeat(np.arange(10), 100)   # a batch of 32 over 10 classes rarely has a class once
    epochs, factor = matched_epochs(ten_classes, 32, 8)
    assert 2.0 <= factor < 2.1 and epochs == round(8 * factor)
    many = np.repeat(np.arange(138), 40)           # 138 classes: most classes in a batch of 32 are seen once
    epochs, factor = matched_epochs(many, 32, 8)
    assert 3.3 < factor < 4.0 and epochs == round(8 * factor)


def test_pareto_front_keeps_the_runs_nothing_beats():
    points = [(1, 50), (2, 49), (2, 60), (3, 55), (4, 70), (4, 65)]
    assert _pareto(points) == [0, 2, 4]


def test_every_row_runs_over_every_seed_and_swept_rows_wait_for_beta():
    sweep, finals = plan_study(dict(seeds=(0, 1, 2), epochs=8, betas=None), matched=27)
    assert len(sweep) == 8 and {s['seed'] for s in sweep} == {0}
    assert len(finals) == 3 * len(ROWS)
    matched = [s for s in finals if 'compute-matched' in s['label']]
    assert {s['epochs'] for s in matched} == {27} and len(matched) == 6
    assert {s['label'] for s in finals if s['beta_from']} == {'synermix-intra', 'synermix', 'synermix (paired batches)'}


@pytest.fixture(scope='module')
def quick_study(tmp_path_factory):
    import matplotlib
    fonts = os.path.join(os.path.dirname(matplotlib.__file__), 'mpl-data', 'fonts', 'ttf')
    out = tmp_path_factory.mktemp('study')
    return out, run_study(out, quick=True, fonts_dirs=[fonts])


def test_study_quick_runs_end_to_end(quick_study):
    out, result = quick_study
    text = (out / 'results.md').read_text()
    for label, _, _, _ in ROWS:
        assert f'| {label} |' in text
    assert '## β sweep' in text and '## Cost' in text
    assert set(result['chosen_betas']) == {'synermix-intra', 'synermix'}
    for name in ('cost_vs_accuracy', 'accuracy_curves', 'accuracy_vs_beta'):
        assert (out / f'{name}.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert (out / 'data_manifest.json').is_file()
