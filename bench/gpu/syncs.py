"""Section `syncs` of `make gpu-check`: host syncs per training step, as torch.cuda.set_sync_debug_mode warns them."""
import warnings
from pathlib import Path

import torch

from .rows import Rows


def bench_syncs(report: Rows, cfg, steppers, device):
    if device.type != 'cuda':
        report.note('syncs skipped: torch.cuda.set_sync_debug_mode needs a CUDA device')
        return
    one = torch.ones(1, device=device)
    cases = {'control_item': lambda i: one.item()}   # one known sync: shows that the warnings are counted
    for name in ('plain', 'synermix_paired', 'synermix_fixed', 'synermix_supplemented'):
        cases[name] = lambda i, s=steppers[name]: s.step(s.batches[i % len(s.batches)])
    for name, run in cases.items():
        counts, where = [], set()
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode('warn')
        try:
            for i in range(cfg['sync_steps']):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter('always')
                    run(i)
                syncs = [w for w in caught if 'synchroniz' in str(w.message).lower()]
                where.update(f'{Path(w.filename).name}:{w.lineno}' for w in syncs)
                counts.append(len(syncs))
        finally:
            torch.cuda.set_sync_debug_mode(0)
        what = ('one tensor.item() (control: 1 expected)' if name == 'control_item' else
                'one training step (forward under autocast, backward, SGD step)')
        report.value(f'syncs.{name}', 'count', counts, f'synchronizing CUDA calls warned by torch.cuda.'
                     f'set_sync_debug_mode("warn") in {what}; at: {", ".join(sorted(where)) or "none"}')
