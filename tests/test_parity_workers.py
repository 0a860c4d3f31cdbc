""" Parity with timm's train.py beyond `-j 0`: loader workers, timm's MultiEpochsDataLoader, gradient
accumulation, a bfloat16 model and one input channel; and an exact resume with loader workers.

The parity tests follow test_train.py's (marker `parity`, docs/timm-parity.md): our train.py runs in a subprocess
under train_helpers.PORTABLE_NUMERICS (the one the parity runs share), and its per-epoch (train loss, eval loss, top-1) must equal what timm's own
train.py (pytorch-image-models aa4b5850 with train_helpers.RECORDED_BUILD) printed for the same flags on the same
tiny ImageFolder, recorded once side by side.
"""
import math
import types

import pytest
import timm
from timm.data import resolve_data_config

from test_train import PARITY_FLAGS
from train_helpers import (assert_same_as_timm, load_ckpt, max_diff, parity_run, read_summary,  # noqa: F401
                           run_in_process, tiny_imagefolder)
from timm_synermix.trainer.loaders import channel_data_config


# ---------------------------------------------------------------------------------------------------------------
# loader workers and timm's MultiEpochsDataLoader
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parity
@pytest.mark.parametrize('flags, timm_numbers', [
    (('-j', '1'), [(0.9506586790084839, 0.577364961306254, 100.0), (0.8380336314439774, 0.5368317365646362, 100.0)]),
    (('-j', '2'), [(1.0244114696979523, 0.40220217282573384, 66.66666666666667),
                   (0.7470544725656509, 0.30252905935049057, 100.0)]),
    (('-j', '1', '--no-prefetcher'), [(0.9506559520959854, 0.5773057043552399, 100.0),
                                      (0.8350711613893509, 0.5814492503801981, 100.0)]),
    (('-j', '2', '--no-prefetcher'), [(1.0244096517562866, 0.40220650595923263, 66.66666666666667),
                                      (0.7513801604509354, 0.3284643242756526, 100.0)]),
], ids=['j1', 'j2', 'j1-no-prefetcher', 'j2-no-prefetcher'])
def test_loader_workers_without_synermix_reproduce_timms_train_py(flags, timm_numbers, tiny_imagefolder, tmp_path):
    """timm's workers persist across epochs (create_loader's default): seeded once from the global RNG, their
    augmentation streams run on into epoch 2, and the global RNG draws no second seed before epoch 2's order.
    Workers started afresh each epoch gave epoch 1's numbers and other ones for epoch 2."""
    ours = parity_run(tiny_imagefolder, *PARITY_FLAGS, *flags, '--output', tmp_path, '--experiment', 'workers')
    assert_same_as_timm(ours, timm_numbers)


@pytest.mark.parity
@pytest.mark.parametrize('flags, timm_numbers', [
    (('-j', '2'), [(1.0244114696979523, 0.40220217282573384, 66.66666666666667),
                   (1.0505400896072388, 0.35721809417009354, 66.66666666666667)]),
    (('-j', '2', '--no-prefetcher'), [(1.0244096517562866, 0.40220650595923263, 66.66666666666667),
                                      (1.0505349040031433, 0.3572959651549657, 66.66666666666667)]),
    (('-j', '0',), [(0.999367892742157, 0.7610521713892618, 66.66666666666667),
                    (0.7078090012073517, 0.5212911367416382, 100.0)]),
], ids=['j2', 'j2-no-prefetcher', 'j0'])
def test_multi_epochs_loader_without_synermix_reproduces_timms_train_py(flags, timm_numbers, tiny_imagefolder,
                                                                        tmp_path):
    """--use-multi-epochs-loader is timm's MultiEpochsDataLoader: with workers, epoch 2's order is drawn while epoch
    1 still trains, before the evaluation's worker seed, so epoch 2 departs from the run without the flag (above);
    with -j 0 its one iterator draws one seed for the whole run."""
    ours = parity_run(tiny_imagefolder, *PARITY_FLAGS, '--use-multi-epochs-loader', *flags, '--output', tmp_path,
                      '--experiment', 'multi-epochs')
    assert_same_as_timm(ours, timm_numbers)


def test_a_mid_epoch_resume_with_the_multi_epochs_loader_is_refused_in_one_line(tiny_imagefolder, tmp_path):
    """timm's MultiEpochsDataLoader starts each epoch at its first batch and reads its length before a resumed epoch
    could be shortened: the resume would train more than an epoch."""
    flags = [tiny_imagefolder, *PARITY_FLAGS, '--use-multi-epochs-loader', '--no-feature-metrics', '--output',
             tmp_path, '--experiment', 'mel']
    run_in_process(*flags, '--recovery-interval', '1', '--stop-epoch', '1')
    proc = run_in_process(*flags, '--resume', tmp_path / 'mel' / 'recovery-0-1.pth.tar', check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'timm\'s MultiEpochsDataLoader starts each epoch at its first batch, and the checkpoint stopped at batch ' \
           '2 of epoch 0: resume from an epoch checkpoint' in proc.stderr
    assert 'Traceback' not in proc.stderr


# ---------------------------------------------------------------------------------------------------------------
# gradient accumulation, a bfloat16 model, one input channel
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parity
def test_grad_accumulation_train_loss_reproduces_timms_train_py(tiny_imagefolder, tmp_path):
    """timm's meter records each batch's loss / accum_steps times accum_steps again: summary.csv's train loss
    too (train_step's 'loss_logged')."""
    timm_numbers = [(1.0152969062328339, 1.0048640569051106, 66.66666666666667),
                    (0.8221390247344971, 0.9003690481185913, 100.0)]
    ours = parity_run(tiny_imagefolder, *PARITY_FLAGS, '--grad-accum-steps', '2', '--output', tmp_path,
                      '--experiment', 'accum')
    assert_same_as_timm(ours, timm_numbers)


@pytest.mark.parity
def test_model_dtype_bfloat16_eval_loss_reproduces_timms_train_py(tiny_imagefolder, tmp_path):
    """timm's validate takes the loss of the bfloat16 output in bfloat16; in float32 the eval losses were
    0.7891 and 0.5127 against timm's 0.7884 and 0.5150."""
    timm_numbers = [(1.0654296875, 0.7884114583333334, 66.66666666666667),
                    (0.87109375, 0.5149739583333334, 100.0)]
    ours = parity_run(tiny_imagefolder, *PARITY_FLAGS, '--model-dtype', 'bfloat16', '--output', tmp_path,
                      '--experiment', 'bf16')
    assert_same_as_timm(ours, timm_numbers)


def test_one_input_channel_gets_one_mean_and_std():
    """test_resnet's pretrained config has RGB's three means: averaged, as timm's prefetcher does."""
    model = timm.create_model('test_resnet', in_chans=1, num_classes=3)
    data_config = resolve_data_config({'in_chans': 1, 'img_size': 32}, model=model)
    assert len(data_config['mean']) == 3  # timm's, which its transforms without the prefetcher cannot use
    adapted = channel_data_config(types.SimpleNamespace(in_chans=1, input_size=None), data_config)
    assert adapted['input_size'] == (1, 32, 32)
    assert adapted['mean'] == pytest.approx((sum(data_config['mean']) / 3,))
    assert adapted['std'] == pytest.approx((sum(data_config['std']) / 3,))


def test_one_input_channel_trains_without_the_prefetcher(tiny_imagefolder, tmp_path):
    """timm's train.py stops at its first batch here: Normalize with three means on a one-channel image."""
    run_in_process(tiny_imagefolder, *PARITY_FLAGS, '--in-chans', '1', '--input-img-mode', 'L', '--no-prefetcher',
                   '--no-feature-metrics', '--output', tmp_path, '--experiment', 'grey')
    _, rows = read_summary(tmp_path / 'grey')
    assert len(rows) == 2 and all(math.isfinite(float(r['eval_loss'])) for r in rows)


@pytest.mark.parity
def test_one_input_channel_reproduces_timms_train_py(tiny_imagefolder, tmp_path):
    """Without --input-img-mode, timm reads a model of one input channel greyscale images ('L'); its prefetcher
    averages the three means and stds."""
    timm_numbers = [(0.9912577569484711, 0.6951566537221273, 100.0),
                    (0.5218075141310692, 0.45881907145182294, 100.0)]
    ours = parity_run(tiny_imagefolder, *PARITY_FLAGS, '--in-chans', '1', '--output', tmp_path, '--experiment', 'grey')
    assert_same_as_timm(ours, timm_numbers)


# ---------------------------------------------------------------------------------------------------------------
# exact resume with loader workers
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('flags', [('--method', 'baseline'), ('--method', 'synermix', '--no-prefetcher')],
                         ids=['baseline-prefetcher', 'synermix-no-prefetcher'])
def test_resuming_an_epoch_checkpoint_with_workers_continues_bit_identically(flags, tiny_imagefolder, tmp_path):
    """Two epochs after the resume: the workers' RNG streams come back from the checkpoint, and neither loader
    draws its worker seed from the global RNG again (the evaluation's draw would shift the order of the epoch
    after the first resumed one, in timm's batch order)."""
    common = [tiny_imagefolder, *PARITY_FLAGS, '-j', '2', '--epochs', '3', *flags, '--no-feature-metrics',
              '--output', tmp_path]
    run_in_process(*common, '--experiment', 'whole')
    run_in_process(*common, '--experiment', 'resumed', '--stop-epoch', '1')
    run_in_process(*common, '--experiment', 'resumed', '--resume', tmp_path / 'resumed' / 'last.pth.tar')
    assert read_summary(tmp_path / 'whole') == read_summary(tmp_path / 'resumed')
    whole, resumed = (load_ckpt(tmp_path / name / 'last.pth.tar') for name in ('whole', 'resumed'))
    assert max_diff(whole['state_dict'], resumed['state_dict']) == 0.0
