"""`make gpu-check` in CI: bench/gpu_check.py --dry-run runs the whole GPU plan on CPU with tiny sizes.

It checks the plan and the output file (every row a number and the command that made it), never the numbers.
"""
import math
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r'^BENCH (\S+) (\w+)=(\S+) \((.+)\)$')


def test_gpu_check_dry_run_writes_every_row(tmp_path):
    out = tmp_path / 'results_gpu.txt'
    result = subprocess.run([sys.executable, str(ROOT / 'bench' / 'gpu_check.py'), '--dry-run', '--out', str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = out.read_text().splitlines()
    assert lines[0].startswith('# python bench/gpu_check.py --dry-run') and 'torch ' in lines[0], lines[0]
    assert 'timm ' in lines[0] and 'no GPU' in lines[0], lines[0]

    rows = {}
    for line in lines:
        if line.startswith('BENCH '):
            match = ROW.match(line)
            assert match, f'malformed row: {line}'
            name, unit, value, details = match.groups()
            assert math.isfinite(float(value)), line
            assert 'cmd: python ' in details and 'n=' in details, line
            rows[name] = (unit, float(value))
        elif line.startswith('NOTE '):
            assert '(cmd: python bench/gpu_check.py --dry-run --only ' in line, line

    cases = ['plain'] + [f'{method}_{mode}' for mode in ('paired', 'fixed', 'supplemented')
                         for method in ('synermix', 'mixup')]
    for case in cases:
        assert rows[f'step.{case}'][0] == 'ms' and rows[f'step.{case}'][1] > 0
        assert rows[f'img_per_s.{case}'][0] == 'img_s' and rows[f'img_per_s.{case}'][1] > 0
        assert rows[f'memory.{case}'][0] == 'GiB' and rows[f'memory.{case}'][1] > 0
    for mode in ('paired', 'fixed', 'supplemented'):
        for row in (f'ratio.synermix_vs_plain.{mode}', f'ratio.synermix_vs_mixup_same_batch.{mode}',
                    f'memory.synermix_vs_plain.{mode}'):
            assert rows[row][0] == 'ratio' and rows[row][1] > 0, row
    for mode in ('plain', 'paired', 'fixed', 'supplemented'):
        assert rows[f'shapes.{mode}.distinct_batch_sizes'][0] == 'count'
        assert rows[f'compile.{mode}.recompiles'][0] == 'count'
    assert rows['shapes.fixed.distinct_batch_sizes'][1] == rows['shapes.paired.distinct_batch_sizes'][1] == 1
    assert rows['compile.fixed.recompiles'][1] == rows['compile.paired.recompiles'][1] == 0
    assert any(line.startswith('NOTE syncs skipped') for line in lines)   # no CUDA: set_sync_debug_mode
    for method in ('baseline', 'synermix'):
        assert rows[f'glyphs.{method}.top1'][0] == 'top1' and 0 <= rows[f'glyphs.{method}.top1'][1] <= 100
        assert rows[f'glyphs.{method}.wall'][0] == 's'
    assert 'glyphs.synermix_vs_baseline.wall' in rows

    summary = lines[lines.index('| row | value | unit |'):]
    for name in rows:
        assert any(line.startswith(f'| {name} |') for line in summary), name
