""" timm_synermix.demo --quick: the whole demo (data, pretraining, fine-tuning, report) on tiny settings. """
import contextlib
import os
import re

import pytest

from timm_synermix.experiments.demo import FULL, QUICK, finetune_args, main


@pytest.fixture(scope='module')
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp('demo') / 'demo_output'
    capture = tmp_path_factory.mktemp('demo_log') / 'stdout.txt'
    with open(capture, 'w') as f, contextlib.redirect_stdout(f):
        rc = main(['--quick', '--out', str(out)])
    return dict(out=out, rc=rc, text=capture.read_text())


def test_demo_quick_runs_end_to_end_and_prints_table_and_pictures(quick_demo):
    out, text = quick_demo['out'], quick_demo['text']
    assert quick_demo['rc'] == 0, text[-3000:]
    # real data written as ImageFolders, a checkpoint pretrained here, fine-tuned from it
    assert (out / 'data' / 'mnist5k' / 'train' / '3').is_dir() and (out / 'data' / 'digits' / 'val' / '9').is_dir()
    checkpoint = out / 'runs' / 'pretrain-mnist5k-test_resnet' / 'model_best.safetensors'
    assert checkpoint.is_file()
    assert f'--pretrained-path {checkpoint}' in text
    assert re.search(r'\[pretrain-mnist5k-test_resnet\] Train: 0 \[', text)  # timm-style progress streams
    assert re.search(r'\[synermix-s0\] Train: 0 \[', text)
    header = ('| method | paper name | β | seeds | best top-1 | last-1 top-1 | intra distance | cohesion | '
              'fisher ratio | silhouette | training time / run |')
    assert header in text
    for method in ('baseline', 'synermix'):
        row = re.search(rf'^\| {method} \| .* \| 0 \| (\d+\.\d\d) \| (\d+\.\d\d) ± \d+\.\d\d \| .* \| (\d+) s \|$',
                        text, re.M)
        assert row, f'no table row for {method}'
    for name in ('tsne', 'accuracy_curves', 'pair_probability'):
        path = out / f'{name}.png'
        assert f'{name}: {path}' in text and path.stat().st_size > 0
    assert f'table: {out / "results.md"}' in text
    assert re.search(r'demo wall time: \d+ s', text)


def test_demo_rerun_reuses_data_checkpoint_and_runs(quick_demo, capsys):
    assert quick_demo['rc'] == 0
    assert main(['--quick', '--out', str(quick_demo['out'])]) == 0
    text = capsys.readouterr().out
    assert 'mnist5k: 100 train / 20 val images, 10 classes (reused)' in text
    assert 'runs to train' not in text and 'Train: 0 [' not in text and 'pretraining: reused' in text


def test_demo_finetunes_with_the_papers_recipe_scaled_down():
    args = finetune_args(FULL, 'cpu', 'ckpt.safetensors')
    flags = dict(zip(args, args[1:]))
    assert flags['--opt'] == 'sgd' and flags['--momentum'] == '0.9' and flags['--weight-decay'] == '5e-4'
    assert flags['--sched'] == 'step' and flags['--decay-rate'] == '0.5' and flags['--smoothing'] == '0'
    assert flags['--lr'] == '0.01' and flags['--pretrained-path'] == 'ckpt.safetensors'
    assert set(FULL['methods']) == {'baseline', 'mixup', 'synermix'}
    assert set(QUICK['methods']) <= set(FULL['methods'])
    assert os.path.basename(flags['--pretrained-path']) == 'ckpt.safetensors'
