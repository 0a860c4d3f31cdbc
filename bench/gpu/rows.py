"""The rows of `make gpu-check`: bench/harness.py's BENCH ratios plus absolute values, each with its command."""
import shlex
from pathlib import Path

import numpy as np

from ..harness import Report


class Rows(Report):
    """bench/harness.py's BENCH rows, plus absolute values (`BENCH name ms=...`), written to `out` as they come."""

    def __init__(self, out: Path, dry: bool):
        super().__init__()
        self.out, self.dry, self.section = out, dry, None
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text('')

    def cmd(self) -> str:
        return shlex.join(['python', 'bench/gpu_check.py', *['--dry-run'][:self.dry], '--only', self.section])

    def emit(self, line: str) -> None:
        super().emit(line)
        with open(self.out, 'a') as f:
            f.write(line + '\n')

    def ratio(self, name, values, what, cmd=None):
        return self.bench(name, values, what, extra=f'cmd: {cmd or self.cmd()}')

    def value(self, name, key, values, what, cmd=None):
        """`BENCH name key=<median> (what; spread; cmd)`: an absolute number (ms, img_s, GiB, count, top1, s)."""
        values = np.asarray(values, dtype=np.float64)
        q1, q3 = np.percentile(values, [25, 75])
        spread = f'IQR {q1:.4g}-{q3:.4g}, min-max {values.min():.4g}-{values.max():.4g}, n={values.size}'
        self.emit(f'BENCH {name} {key}={np.median(values):.4g} ({what}; {spread}; cmd: {cmd or self.cmd()})')
        self.rows.append((name, float(np.median(values)), key, None))

    def note(self, text: str) -> None:
        super().note(f'{text} (cmd: {self.cmd()})')

    def summary(self) -> str:
        rows = [f'| {name} | {value:.4g} | {"ratio" if unit == "info" else unit} |' for name, value, unit, _ in
                self.rows]
        return '\n'.join(['| row | value | unit |', '| --- | ---: | --- |', *rows])
