"""Smoke test of the benchmark (bench/run.py --smoke): every row prints a usable ratio; the bench/ package's size.

No timing assertion anywhere: ratios depend on the machine and its load; the goals are checked
by reading `make bench`, not by tests.
"""
import ast
import math
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r'^BENCH (\S+) ratio=(\S+) \((.+)\)$')


def test_bench_smoke_prints_every_row(tmp_path):
    out_file = tmp_path / 'bench.md'
    result = subprocess.run(
        [sys.executable, str(ROOT / 'bench' / 'run.py'), '--smoke', '--out', str(out_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    rows = {}
    for line in result.stdout.splitlines():
        if line.startswith('BENCH '):
            match = LINE.match(line)
            assert match, f'malformed BENCH line: {line}'
            name, ratio, details = match.groups()
            value = float(ratio)
            assert math.isfinite(value) and (value > 0 or name.startswith('syncs.')), line
            assert 'n=' in details, line     # the spread over repeats is reported
            rows[name] = value
    assert rows, result.stdout[-3000:]

    sections = {name.split('.')[0] for name in rows}
    assert sections == {'step', 'intra', 'memory', 'sampler', 'loader', 'shapes', 'syncs', 'mixup'}, sections
    for model in ('resnet10t', 'mobilenetv3_small', 'swin_micro'):
        for row in ('synermix_vs_plain', 'synermix_vs_unsupplemented', 'intra_every_2', 'beta0_vs_timm',
                    'synermix_vs_handwritten'):
            assert f'step.{model}.{row}' in rows
        assert f'memory.{model}' in rows and f'memory.{model}.paired_vs_plain_run' in rows
        assert f'step.{model}.paired_vs_plain_run' in rows and f'step.{model}.supplemented_vs_plain_run' in rows
        assert f'intra.share_of_step.{model}' in rows
    assert 'step.swin_micro.joint_vs_two_pass' in rows   # exact for LayerNorm models only
    assert 'step.resnet10t.joint_vs_two_pass' not in rows
    for mode in ('supplemented', 'fixed', 'paired'):
        assert f'shapes.{mode}.batch_sizes_per_epoch' in rows
    assert rows['shapes.fixed.batch_sizes_per_epoch'] == rows['shapes.paired.batch_sizes_per_epoch'] == 1
    assert {'syncs.per_step', 'mixup.elem_vectorised_vs_timm'} <= set(rows)
    assert 'step.resnet10t.original_scale_0.5' in rows
    for classes in (10, 100, 257):
        assert f'intra.vs_loop.{classes}_classes' in rows
    assert {'sampler.vs_naive', 'sampler.vs_plain_batches'} <= set(rows)
    for ext in ('png', 'jpg'):
        assert {f'loader.{ext}.two_views_vs_one_view', f'loader.{ext}.two_views_vs_decode_twice'} <= set(rows)

    # The summary table comes after the BENCH lines and lists every row; --out writes it too.
    summary = result.stdout[result.stdout.index('## Summary'):]
    assert '| row | ratio | goal | met? |' in summary
    for name in rows:
        assert f'| {name} |' in summary
    written = out_file.read_text()
    assert '| row | ratio | goal | met? |' in written and 'BENCH step.' in written


def test_bench_only_selects_sections():
    result = subprocess.run(
        [sys.executable, str(ROOT / 'bench' / 'run.py'), '--smoke', '--only', 'sampler'],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    names = [line.split()[1] for line in result.stdout.splitlines() if line.startswith('BENCH ')]
    assert names and all(name.startswith('sampler.') for name in names)


def _bench_package():
    """bench/ imported as the package it is, from the repository root (it is not installed)."""
    sys.path.insert(0, str(ROOT))
    try:
        import bench.harness
    finally:
        sys.path.remove(str(ROOT))
    return bench


def test_host_sync_counter_counts_reads_of_device_values():
    import torch
    HostSyncCounter = _bench_package().harness.HostSyncCounter
    x = torch.arange(6.)
    with HostSyncCounter() as counter:
        (x * 2).sum()
        x.sum().item()
        torch.unique(x)
        bool(x[0] > 1)
    assert sorted(counter.calls) == ['__bool__', 'item', 'unique']


def test_every_bench_module_is_at_most_400_lines_and_every_function_at_most_80():
    modules = sorted((ROOT / 'bench').rglob('*.py'))
    assert ROOT / 'bench' / 'harness.py' in modules and ROOT / 'bench' / '__init__.py' in modules
    long_modules, long_functions = [], []
    for path in modules:
        text = path.read_text()
        name = path.relative_to(ROOT).as_posix()
        if len(text.splitlines()) > 400:
            long_modules.append(f'{name} ({len(text.splitlines())} lines)')
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long_functions.append(f'{name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)')
    assert not long_modules and not long_functions, long_modules + long_functions
