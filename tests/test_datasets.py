""" timm's dataset types beyond ImageFolder: Hugging Face map-style (hfds/) and streaming (hfids/) datasets.

Both are read offline from the tiny ImageFolder (the `datasets` library builds them from local files). The pinned
numbers come from timm's own train.py (aa4b5850, timm 1.0.31 installed), run once on the same data and flags.
"""
import os

import numpy as np

from train_helpers import (ROOT, read_summary, run_train, tiny_imagefolder, train_env)  # noqa: F401

PLAIN = ['--model', 'test_resnet', '--num-classes', '3', '--img-size', '32', '-b', '4', '--epochs', '2', '--device',
         'cpu', '-j', '0', '--sched', 'cosine', '--warmup-epochs', '0', '--lr', '0.05', '--seed', '7',
         '--no-feature-metrics']


def hf_run(kind, data, tmp_path, *extra, check=True):
    env = train_env(HF_DATASETS_OFFLINE='1', HF_DATASETS_CACHE=str(tmp_path / 'cache'))
    return run_train('--dataset', f'{kind}/{data}', '--data-dir', tmp_path / 'cache', *PLAIN, *extra, '--output',
                     tmp_path, '--experiment', kind, env=env, check=check)


def per_epoch(folder):
    _, rows = read_summary(folder)
    return [(float(r['train_loss']), float(r['eval_loss']), float(r['eval_top1'])) for r in rows]


def test_hfds_labels_come_from_the_label_column_and_match_the_image_folder(tiny_imagefolder, tmp_path):
    from timm.data import create_dataset
    from timm_synermix import dataset_labels
    hf = create_dataset(f'hfds/{tiny_imagefolder}', root=str(tmp_path), split='train')
    folder = create_dataset('', root=str(tiny_imagefolder), split='train')
    assert np.array_equal(dataset_labels(hf), dataset_labels(folder))
    assert hf.reader.class_to_idx == {'class0': 0, 'class1': 1, 'class2': 2}


def test_hfds_without_synermix_reproduces_timms_train_py(tiny_imagefolder, tmp_path):
    hf_run('hfds', tiny_imagefolder, tmp_path)
    timm_numbers = [(0.9993695318698883, 0.7611895799636841, 66.66666666666667),
                    (0.9673071354627609, 0.49695785840352374, 100.0)]
    np.testing.assert_allclose(per_epoch(tmp_path / 'hfds'), timm_numbers, rtol=1e-5)


def test_streaming_hfids_without_synermix_reproduces_timms_train_py(tiny_imagefolder, tmp_path):
    # A fresh cache knows no stream length: given as timm's train.py takes it (18 training, 6 validation images).
    hf_run('hfids', tiny_imagefolder, tmp_path, '--train-num-samples', '18', '--val-num-samples', '6')
    timm_numbers = [(1.229233407974243, 0.7469640175501505, 66.66666666666667),
                    (1.2125957012176514, 0.7246298293272654, 100.0)]
    np.testing.assert_allclose(per_epoch(tmp_path / 'hfids'), timm_numbers, rtol=1e-5)


def test_synermix_trains_on_map_style_hfds(tiny_imagefolder, tmp_path):
    hf_run('hfds', tiny_imagefolder, tmp_path, '--method', 'synermix', '--epochs', '1')
    _, rows = read_summary(tmp_path / 'hfds')
    assert float(rows[0]['train_loss_intra']) > 0


def test_synermix_on_a_stream_is_refused_in_one_line(tiny_imagefolder, tmp_path):
    proc = hf_run('hfids', tiny_imagefolder, tmp_path, '--method', 'synermix', check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("train.py: error: --synermix on the streaming dataset")
    assert not os.path.exists(tmp_path / 'hfids')
