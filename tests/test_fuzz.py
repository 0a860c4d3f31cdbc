"""A seeded fuzzer over train.py's flags and YAML values: every case either trains and reports a sane result, or
stops with exit code 2 and one line, no traceback, and the output folder untouched (issue 13's contract)."""
import json
import math
import random

import pytest
import yaml

from train_helpers import hash_tree, load_train_module, write_image_folder

BASE = ['--model', 'test_resnet', '--img-size', '16', '-b', '4', '--epochs', '1', '--device', 'cpu', '-j', '0',
        '--sched', 'step', '--warmup-epochs', '0', '--lr', '0.05', '--log-interval', '1', '--no-feature-metrics']
# flag: (values the contract must accept, values it must refuse or may accept); None: the flag alone
FLAGS = {
    '--epochs': ([1], [0, -1, 'x', 1.5]),
    '-b': ([2, 4], [0, -3, 'four', 1]),
    '--lr': ([0.01, 0], [-1, 'fast']),
    '--img-size': ([16], [0, -16, 'big']),
    '-j': ([0], [-1]),
    '--smoothing': ([0.0, 0.1], [1.0, -0.5]),
    '--method': (['baseline', 'mixup', 'synermix', 'synermix-intra', 'manifold-mixup'], ['synermx', '']),
    '--synermix-beta': ([0.1, 0.5], [1.5, -0.1, 'half']),
    '--synermix-batches': (['supplemented', 'paired'], ['pairs']),
    '--mixup': ([0.0, 1.0], [-1.0]),
    '--cutmix': ([0.0], [-2.0]),
    '--reprob': ([0.0, 0.5], [2.0]),
    '--model': (['test_resnet'], ['resnet_nope', '']),
    '--opt': (['sgd', 'adamw'], ['sdg']),
    '--sched': (['step', 'cosine'], ['cos']),
    '--mean': ([[0.5, 0.5, 0.5]], [[0.5, 0.5]]),
    '--start-epoch': ([0], [5, -1]),
    '--report-last-k': ([1], [0]),
    '--log-interval': ([1], [0]),
    '--val-holdout': ([0.3], [1.5, 0]),
    '--synermix-every': ([1, 2], [0]),
    '--model-ema': ([True, False], ['false', 'yes']),
    '--no-prefetcher': ([True], ['true']),
    '--momentum': ([0.9], [-0.5, 1.5, 0.0]),
    '--weight-decay': ([0.0, 1e-4], [-1.0]),
    '--opt-betas': ([[0.9, 0.999]], [[0.9, 1.5]]),
    '--grad-accum-steps': ([2], [0]),
    '--cooldown-epochs': ([1], [-1]),
}
DEST = {'-b': 'batch_size', '-j': 'workers'}


def _case(rng):
    flags = rng.sample(sorted(FLAGS), rng.randint(1, 3))
    chosen = {}
    for flag in flags:
        good, bad = FLAGS[flag]
        chosen[flag] = rng.choice(bad if rng.random() < 0.6 else good)
    return chosen, rng.random() < 0.4


def _argv(chosen, as_yaml, tmp_path):
    if as_yaml:
        cfg = {DEST.get(f, f.lstrip('-').replace('-', '_')): v for f, v in chosen.items()}
        path = tmp_path / 'cfg.yaml'
        path.write_text(yaml.safe_dump(cfg))
        return ['-c', str(path)]
    argv = []
    for flag, value in chosen.items():
        if isinstance(value, bool):
            argv += [flag] if value else []
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


@pytest.fixture(scope='module')
def small_data(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp('fuzz_data'), n_train=4, n_val=2)


@pytest.mark.parametrize('chunk', range(4))
def test_fuzzed_flags_and_yaml_train_or_fail_in_one_line(chunk, small_data, tmp_path, capsys):
    import logging
    rng = random.Random(f'fuzz-{chunk}')
    handlers = list(logging.getLogger().handlers)
    outcomes = []
    for i in range(40):
        chosen, as_yaml = _case(rng)
        out = tmp_path / f'case{i}'
        out.mkdir()
        argv = [small_data, *BASE, *_argv(chosen, as_yaml, out), '--output', str(out), '--experiment', 'run']
        before = hash_tree(str(out))
        try:
            code = load_train_module().main(argv)
        except SystemExit as e:
            code = e.code
        finally:
            logging.getLogger().handlers[:] = handlers
        err = capsys.readouterr().err
        case = f'case {chunk}.{i}: {chosen} ({"yaml" if as_yaml else "flags"})\n{err[-2000:]}'
        assert 'Traceback' not in err, case
        assert code in (0, 2), case
        outcomes.append(code)
        if code == 2:
            lines = [x for x in err.splitlines() if x.startswith('train.py: error:')]
            assert len(lines) == 1, case
            assert hash_tree(str(out)) == before, case
            continue
        with open(out / 'run' / 'results.json') as f:
            results = json.load(f)
        assert math.isfinite(results['best_top1']) and 0 <= results['best_top1'] <= 100, case
        assert results['method'] == yaml.safe_load((out / 'run' / 'args.yaml').read_text())['method'], case
    assert outcomes.count(0) >= 3 and outcomes.count(2) >= 10, outcomes   # the fuzzer reaches both sides
