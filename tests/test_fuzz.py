"""A seeded fuzzer over train.py's flags and YAML values: every case either trains and reports a sane result, or
stops with exit code 2 and one line, no traceback, and the output folder untouched (docs/reliability.md).

A second axis fires faults and events at seeded points of real runs: Ctrl-C, SIGTERM, two signals, or
a full disk, inside a training step, an evaluation, a checkpoint, summary or results write or the safetensors
export. Each run finishes, or stops with its code (2, 130, 143) and one line whose advice, followed, finishes it;
the folder is never left with a temp file, a lock, results.json or a summary.csv ahead of last.pth.tar."""
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


# ---------------------------------------------------------------------------------------------------------------
# faults and events: a signal (one or two) or a full disk at a seeded random point of a real run
# ---------------------------------------------------------------------------------------------------------------

EVENT_ARGV = [*BASE, '--epochs', '2', '--recovery-interval', '2']
# where an event fires: (module path, attribute); each is looked up at call time by the trainer
EVENT_HOOKS = {'train step': ('timm_synermix.trainer.loop', 'train_step'),
               'evaluation': ('timm_synermix.trainer.loop', 'evaluate'),
               'summary or results write': ('timm_synermix.trainer.outputs', 'atomic_write'),
               'safetensors export': ('timm_synermix.trainer.checkpoint', 'export_safetensors'),
               'checkpoint write': ('torch', 'save')}


def _event(rng):
    kind = rng.choice(['SIGINT', 'SIGTERM', 'two signals', 'full disk'])
    writes = ['summary or results write', 'safetensors export', 'checkpoint write']
    hook = rng.choice(writes if kind == 'full disk' else sorted(EVENT_HOOKS))
    return kind, hook, rng.randint(1, {'train step': 6, 'evaluation': 2}.get(hook, 3))


def _fire(monkeypatch, kind, hook, on_call):
    import errno
    import importlib
    import os
    import signal
    module, name = EVENT_HOOKS[hook]
    module = importlib.import_module(module)
    original, calls = getattr(module, name), []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == on_call:
            if kind == 'full disk':
                raise OSError(errno.ENOSPC, 'No space left on device')
            sig = signal.SIGTERM if kind == 'SIGTERM' else signal.SIGINT
            for _ in range(2 if kind == 'two signals' else 1):
                os.kill(os.getpid(), sig)
        return original(*args, **kwargs)
    monkeypatch.setattr(module, name, wrapped)


def _run(argv, capsys):
    import logging
    handlers = list(logging.getLogger().handlers)
    try:
        code = load_train_module().main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    finally:
        logging.getLogger().handlers[:] = handlers
    return code, capsys.readouterr().err


def _check_stopped_folder(folder, case):
    import os
    from train_helpers import load_ckpt, read_summary
    if not folder.is_dir():
        return
    assert not [n for n in os.listdir(folder) if n.endswith('.tmp') or n == '.lock'], case
    assert not (folder / 'results.json').exists(), case
    if (folder / 'summary.csv').exists():   # never ahead of the checkpoint a resume starts from
        assert (folder / 'last.pth.tar').exists(), case
        assert len(read_summary(folder)[1]) <= load_ckpt(folder / 'last.pth.tar')['epoch'] + 1, case


@pytest.mark.parametrize('chunk', range(3))
def test_fuzzed_faults_and_signals_stop_in_one_line_and_the_advice_finishes_the_run(chunk, small_data, tmp_path,
                                                                                    monkeypatch, capsys):
    rng = random.Random(f'events-{chunk}')
    seen = set()
    for i in range(8):
        kind, hook, on_call = _event(rng)
        folder = tmp_path / f'case{i}' / 'run'
        argv = [small_data, *EVENT_ARGV, '--output', folder.parent, '--experiment', 'run']
        with monkeypatch.context() as m:
            _fire(m, kind, hook, on_call)
            code, err = _run(argv, capsys)
        case = f'case {chunk}.{i}: {kind} in {hook} (call {on_call}): exit {code}\n{err[-2000:]}'
        assert 'Traceback' not in err, case
        seen.add(code)
        if code != 0:
            expected = {'full disk': 2, 'SIGTERM': 143}.get(kind, 130)
            prefix = 'train.py: error:' if code == 2 else 'train.py: stopped '
            lines = [x for x in err.splitlines() if x.startswith(prefix)]
            assert code == expected and len(lines) == 1, case
            _check_stopped_folder(folder, case)
            # the advice: a resume command, or the same command again
            resume = lines[0].split('--resume ')[1].split()[0] if '--resume ' in lines[0] else None
            code, err = _run([*argv, '--resume', resume] if resume else argv, capsys)
            assert code == 0, case + '\nthen:\n' + err[-2000:]
        results = json.loads((folder / 'results.json').read_text())
        assert results['finished'] is True and results['cost']['epochs'] == 2, case
        assert math.isfinite(results['best_top1']), case
    assert len(seen) >= 2, seen   # the events reach more than one outcome
