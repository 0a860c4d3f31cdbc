""" timm's dataset types beyond ImageFolder: Hugging Face map-style (hfds/) and streaming (hfids/) datasets.

Both are read offline from the tiny ImageFolder (the `datasets` library builds them from local files). The pinned
numbers (marker `parity`) come from timm's own train.py (aa4b5850, with train_helpers.RECORDED_BUILD), run on the
same data with the same flags under the same portable numeric setting (train_helpers.PORTABLE_NUMERICS), where it
printed exactly the floats that our train.py prints under it (docs/timm-parity.md, "Across machines").
"""
import os

import numpy as np
import pytest

from train_helpers import (assert_same_as_timm, per_epoch, portable_run, read_summary, run_in_process,  # noqa: F401
                           tiny_imagefolder)

PLAIN = ['--model', 'test_resnet', '--num-classes', '3', '--img-size', '32', '-b', '4', '--epochs', '2', '--device',
         'cpu', '-j', '0', '--sched', 'cosine', '--warmup-epochs', '0', '--lr', '0.05', '--seed', '7',
         '--no-feature-metrics']


def hf_run(kind, data, tmp_path, *extra, check=True, portable=False):
    """In-process, or under the parity tests' portable setting (train_helpers.portable_run); the data set's cache in
    --data-dir."""
    argv = ['--dataset', f'{kind}/{data}', '--data-dir', tmp_path / 'cache', *PLAIN, *extra, '--output', tmp_path,
            '--experiment', kind]
    return portable_run(*argv, check=check) if portable else run_in_process(*argv, check=check)


def test_hfds_labels_come_from_the_label_column_and_match_the_image_folder(tiny_imagefolder, tmp_path):
    from timm.data import create_dataset
    from timm_synermix import dataset_labels
    hf = create_dataset(f'hfds/{tiny_imagefolder}', root=str(tmp_path), split='train')
    folder = create_dataset('', root=str(tiny_imagefolder), split='train')
    assert np.array_equal(dataset_labels(hf), dataset_labels(folder))
    assert hf.reader.class_to_idx == {'class0': 0, 'class1': 1, 'class2': 2}


@pytest.mark.parity
def test_hfds_without_synermix_reproduces_timms_train_py(tiny_imagefolder, tmp_path):
    """The same images in the same order as the ImageFolder: exactly timm's numbers, which are also those of the
    plain ImageFolder run in test_train.py (assert_same_as_timm)."""
    hf_run('hfds', tiny_imagefolder, tmp_path, portable=True)
    timm_numbers = [(0.999367892742157, 0.7610521713892618, 66.66666666666667),
                    (0.9706045687198639, 0.5607398152351379, 100.0)]
    assert_same_as_timm(per_epoch(tmp_path / 'hfds'), timm_numbers)


@pytest.mark.parity
def test_streaming_hfids_without_synermix_reproduces_timms_train_py(tiny_imagefolder, tmp_path):
    """A fresh cache knows no stream length: given as timm's train.py takes it (18 training, 6 validation images).
    Exactly timm's numbers (assert_same_as_timm)."""
    hf_run('hfids', tiny_imagefolder, tmp_path, '--train-num-samples', '18', '--val-num-samples', '6', portable=True)
    timm_numbers = [(1.2275397777557373, 0.7395870884259542, 66.66666666666667),
                    (1.1813212275505065, 1.100455363591512, 66.66666666666667)]
    assert_same_as_timm(per_epoch(tmp_path / 'hfids'), timm_numbers)


def test_synermix_trains_on_map_style_hfds(tiny_imagefolder, tmp_path):
    hf_run('hfds', tiny_imagefolder, tmp_path, '--method', 'synermix', '--epochs', '1')
    _, rows = read_summary(tmp_path / 'hfds')
    assert float(rows[0]['train_loss_intra']) > 0


def test_synermix_on_a_stream_is_refused_in_one_line(tiny_imagefolder, tmp_path):
    proc = hf_run('hfids', tiny_imagefolder, tmp_path, '--method', 'synermix', check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("train.py: error: --synermix on the streaming dataset")
    assert not os.path.exists(tmp_path / 'hfids')
