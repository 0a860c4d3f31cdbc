"""Run results: the per-epoch summary.csv and the results.json summary of a training run."""
import csv
import io
from typing import Dict, List, Optional, Sequence

import numpy as np

from .checkpoint import atomic_write

__all__ = ['SUMMARY_COLUMNS', 'write_summary', 'summarize_results']

SUMMARY_COLUMNS = ['epoch', 'train_loss', 'train_loss_intra', 'train_loss_inter', 'eval_loss', 'eval_top1',
                   'eval_top5', 'lr']


def write_summary(path: str, history: Sequence[Dict]) -> None:
    """Write summary.csv (timm's columns plus the loss terms) from the whole history.

    The file is rewritten whole and atomically each epoch, so a resumed run never duplicates or
    loses rows.

    Args:
        path: summary.csv path.
        history: One dict per epoch with `SUMMARY_COLUMNS` keys.
    """
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, extrasaction='ignore')
    writer.writeheader()
    for row in history:
        writer.writerow(row)
    atomic_write(path, lambda f: f.write(buf.getvalue()), mode='w')


def summarize_results(history: List[Dict], method: str, last_k: int) -> Dict[str, Optional[float]]:
    """results.json's core fields: best eval top-1 and the mean/std over the last `last_k` epochs.

    The paper reports the mean over the final epochs; ties for the best keep the earlier epoch.

    Args:
        history: Per-epoch dicts with 'epoch' and 'eval_top1' (None when the epoch was not evaluated).
        method: Method name to record.
        last_k: Number of final evaluated epochs to average.

    Example:
        ```python
        summarize_results([dict(epoch=0, eval_top1=50.), dict(epoch=1, eval_top1=60.)], 'synermix', 10)
        # {'method': 'synermix', 'best_top1': 60.0, 'best_epoch': 1, 'last_k': 2, 'last_k_mean_top1': 55.0, ...}
        ```
    """
    evals = [(row['epoch'], row['eval_top1']) for row in history if row.get('eval_top1') is not None]
    if not evals:
        return dict(method=method, best_top1=None, best_epoch=None, last_k=0, last_k_mean_top1=None,
                    last_k_std_top1=None)
    best_epoch, best_top1 = max(evals, key=lambda e: (e[1], -e[0]))
    tail = np.asarray([t for _, t in evals[-last_k:]], dtype=np.float64)
    return dict(method=method, best_top1=float(best_top1), best_epoch=int(best_epoch), last_k=int(len(tail)),
                last_k_mean_top1=float(tail.mean()), last_k_std_top1=float(tail.std()))
