"""Batch composition without the intra term (--batch-composition), and the names runs are recorded under.

train.py's main(argv) in-process (train_helpers.run_in_process)."""
import json
import os

import torch

from train_helpers import COMMON, load_ckpt, out_root, run_in_process, tiny_imagefolder  # noqa: F401


def _results(out, name):
    with open(os.path.join(out, name, 'results.json')) as f:
        return json.load(f)


def test_a_plain_run_on_paired_distinct_batches_trains_and_is_recorded_as_what_ran(tiny_imagefolder, out_root):
    run_in_process(tiny_imagefolder, *COMMON, '--method', 'mixup', '--batch-composition', 'paired-distinct',
                   '--output', out_root, '--experiment', 'mixup-paired-distinct')
    results = _results(out_root, 'mixup-paired-distinct')
    assert results['method'] == 'mixup' and results['settings']['synermix_batches'] == 'paired-distinct'
    assert results['settings']['synermix_beta'] == 0.0
    # 18 images: 9 pairs, -b 4 holds 2 pairs of 2 distinct classes: 4 batches of 4, one pass each
    assert results['cost']['image_passes'] == 16


def test_a_plain_run_on_supplemented_batches_costs_its_supplements_and_no_originals_pass(tiny_imagefolder, out_root):
    run_in_process(tiny_imagefolder, *COMMON, '--method', 'baseline', '--batch-composition', 'supplemented',
                   '--output', out_root, '--experiment', 'baseline-supplemented')
    intra = 'synermix-intra-supp'
    run_in_process(tiny_imagefolder, *COMMON, '--method', 'synermix-intra', '--output', out_root, '--experiment', intra)
    plain, with_intra = (_results(out_root, n)['cost']['image_passes'] for n in ('baseline-supplemented', intra))
    assert 16 < plain <= 32 and with_intra == 2 * plain   # the same seeded batches, then the originals' pass


def test_synermix_at_beta_zero_is_recorded_as_its_inter_method(tiny_imagefolder, out_root):
    run_in_process(tiny_imagefolder, *COMMON, '--method', 'synermix', '--synermix-beta', '0', '--output', out_root,
                   '--experiment', 'synermix-beta0')
    results = _results(out_root, 'synermix-beta0')
    assert results['method'] == 'mixup' and results['settings']['synermix_batches'] == 'supplemented'


def test_a_composition_run_resumed_from_its_epoch_checkpoint_equals_the_uninterrupted_run(tiny_imagefolder,
                                                                                           out_root):
    flags = ['--method', 'mixup', '--batch-composition', 'paired', '--output', out_root]
    run_in_process(tiny_imagefolder, *COMMON, *flags, '--epochs', '2', '--experiment', 'paired-full')
    run_in_process(tiny_imagefolder, *COMMON, *flags, '--epochs', '2', '--stop-epoch', '1', '--experiment', 'paired-cut')
    run_in_process(tiny_imagefolder, *COMMON, *flags, '--epochs', '2', '--experiment', 'paired-cut', '--resume',
                   os.path.join(out_root, 'paired-cut', 'last.pth.tar'))
    full = load_ckpt(os.path.join(out_root, 'paired-full', 'last.pth.tar'))['state_dict']
    resumed = load_ckpt(os.path.join(out_root, 'paired-cut', 'last.pth.tar'))['state_dict']
    assert all(torch.equal(full[k], resumed[k]) for k in full)
