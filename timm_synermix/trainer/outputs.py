"""Run results: the per-epoch summary.csv, results.json, features.npz and model_best.safetensors."""
import csv
import io
import logging
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from .checkpoint import atomic_write

__all__ = ['SUMMARY_COLUMNS', 'write_summary', 'summarize_results', 'write_final_outputs', 'init_wandb']

_logger = logging.getLogger('train')

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


def write_final_outputs(run, dataset_eval, eval_loader_full, cifar_stem: bool) -> Dict:
    """results.json, features.npz (the eval set's pre-logit features) and model_best.safetensors.

    Args:
        run: The finished `loop.Run`.
        dataset_eval: Evaluation dataset (None: no features or feature metrics).
        eval_loader_full: Loader over the whole eval set in order on this process (rank 0 under DDP).
        cifar_stem: Recorded in the safetensors metadata.
    """
    import json
    from timm.utils.model import unwrap_model
    from .checkpoint import export_safetensors, to_weights_only
    from .config import RUN_IDENTITY
    args, out = run.args, run.output_dir
    results = summarize_results(run.state.history.rows, args.method, args.report_last_k)
    # What the run cost: images through forward+backward (the originals' pass included), training seconds.
    position = run.state.position
    results['cost'] = dict(image_passes=position.image_passes, train_seconds=position.train_seconds,
                           epochs=position.epochs_done)
    # A run stopped by --stop-epoch is reported as such, never as the finished schedule, which can run past
    # --epochs (e.g. --cooldown-epochs).
    results['finished'] = position.epochs_done >= run.num_epochs
    # What the run was (a resume cannot change these), next to what it scored.
    results['settings'] = {key: getattr(args, key) for key, _ in RUN_IDENTITY}
    results['settings'].update(num_classes=args.num_classes, dataset=args.dataset or 'ImageFolder',
                               teacher=args.kd_model_name)
    metrics = None
    if dataset_eval is not None:
        from .metrics import compute_feature_metrics, extract_features
        eval_model = unwrap_model(run.task.get_eval_model(ema=True) or run.task.get_eval_model())
        features, labels, logits = extract_features(eval_model, eval_loader_full, device=run.device)
        atomic_write(os.path.join(out, 'features.npz'),
                     lambda f: np.savez(f, features=features.astype(np.float32), labels=labels.astype(np.int64)))
        if not args.no_feature_metrics:
            try:
                metrics = compute_feature_metrics(features, labels, logits.argmax(1))
            except ValueError as e:  # e.g. too few eval images for a silhouette: the trained run still counts
                _logger.warning(f'Feature metrics skipped: {e}')
            except ImportError as e:  # scikit-learn comes with the demo extra only: the base install finishes
                _logger.warning(f'Feature metrics skipped: scikit-learn is not installed ({e}): pip install '
                                f'"timm-synermix[demo]" to have them, or pass --no-feature-metrics')
    results['metrics'] = to_weights_only(metrics) if metrics is not None else {}
    best = os.path.join(out, 'model_best.pth.tar')
    if not os.path.exists(best):
        best = os.path.join(out, 'last.pth.tar')
    if os.path.exists(best):
        export_safetensors(best, os.path.join(out, 'model_best.safetensors'), metadata=dict(
            arch=args.model, num_classes=args.num_classes, cifar_stem=int(cifar_stem), method=args.method))
    # Last: a results.json means every final output is there (a run stopped while writing them has none).
    atomic_write(os.path.join(out, 'results.json'),
                 lambda f: f.write(json.dumps(results, indent=2, default=float)), mode='w')
    return results


def init_wandb(args) -> bool:
    """Whether this run logs to Weights & Biases: --log-wandb and the package importable, as timm."""
    if not args.log_wandb:
        return False
    try:
        import wandb
    except ImportError:
        _logger.warning("You've requested to log metrics to wandb but package not found.")
        return False
    wandb.init(project=args.wandb_project, name=args.experiment_name, config=args.options(), tags=args.wandb_tags,
               id=args.wandb_resume_id or None, resume='must' if args.wandb_resume_id else None)
    return True
