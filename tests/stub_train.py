"""Stand-in for train.py in the experiments' tests: writes a run folder as the trainer does, in milliseconds.

Top-1 at epoch e (from 0) of seed s: 50 + 20·log2(e + 1) + s for plain runs; 5 points more for the presets with
an intra term, less 20·|β − 0.2| (a peak at β = 0.2). Cost: 100 images per epoch, twice that for the presets
with the originals' pass. Environment: STUB_FAIL (a substring of run names that exit 3 with "boom"), STUB_SLEEP
(seconds per epoch; a SIGTERM then checkpoints the finished epochs and exits 143, and --resume auto continues from
them).
"""
import argparse
import json
import math
import os
import signal
import sys
import time

import numpy as np
import yaml

p = argparse.ArgumentParser(allow_abbrev=False)
p.add_argument('data')
p.add_argument('--method')
p.add_argument('--seed', type=int)
p.add_argument('--epochs', type=int)
p.add_argument('--report-last-k', type=int, default=10)
p.add_argument('--output')
p.add_argument('--experiment')
p.add_argument('--synermix-beta', type=float)
p.add_argument('--val-holdout', type=float)
p.add_argument('--batch-composition')
p.add_argument('--resume', default='')
a, rest = p.parse_known_args()
run = os.path.join(a.output, a.experiment)
print(f'Train: 0 [   0/1 (100%)]  stub {a.experiment}', flush=True)
if os.environ.get('STUB_FAIL') and os.environ['STUB_FAIL'] in a.experiment:
    print('boom: stub failure', file=sys.stderr)
    sys.exit(3)
intra = a.method.startswith('synermix') or a.method.startswith('clean-view')
beta = a.synermix_beta if a.synermix_beta is not None else ((0.1 if 'mixup' in a.method or a.method == 'synermix'
                                                              else 0.5) if intra else 0.0)
os.makedirs(run, exist_ok=True)
checkpoint = os.path.join(run, 'last.pth.tar')
start = int(open(checkpoint).read()) if a.resume == 'auto' and os.path.isfile(checkpoint) else 0
if start:
    print(f'--resume auto: resuming {checkpoint} at epoch {start}', flush=True)
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
rows = []
for epoch in range(a.epochs):
    top1 = 50 + 20 * math.log2(epoch + 1) + a.seed + (5 - 20 * abs(beta - 0.2) if intra else 0)
    rows.append(f'{epoch},1.0,1.0,{top1:.4f},99,0.1')
    if epoch >= start and os.environ.get('STUB_SLEEP'):
        time.sleep(float(os.environ['STUB_SLEEP']))
        open(checkpoint, 'w').write(str(epoch + 1))
        if stop:
            print(f'stopped at epoch {epoch + 1}: resume with --resume {checkpoint}', file=sys.stderr)
            sys.exit(143)
yaml.safe_dump(dict(method=a.method, synermix=intra and beta > 0, synermix_beta=beta, seed=a.seed, model='stub',
                    experiment=a.experiment, val_holdout=a.val_holdout, epochs=a.epochs, extra=rest),
               open(os.path.join(run, 'args.yaml'), 'w'))
with open(os.path.join(run, 'summary.csv'), 'w') as f:
    f.write('epoch,train_loss,eval_loss,eval_top1,eval_top5,lr\n' + '\n'.join(rows) + '\n')
labels = np.repeat(np.arange(3), 10)
features = np.random.default_rng(a.seed).normal(size=(30, 4)) + labels[:, None]
np.savez(os.path.join(run, 'features.npz'), features=features, labels=labels)
tops = [float(r.split(',')[3]) for r in rows]
last = tops[-a.report_last_k:]
passes = 2 if intra and a.method != 'synermix-intra-aug' else 1
json.dump(dict(method=a.method, best_top1=max(tops), best_epoch=tops.index(max(tops)), last_k=len(last),
               last_k_mean_top1=sum(last) / len(last), last_k_std_top1=0.0,
               cost=dict(image_passes=100 * passes * a.epochs, train_seconds=0.01 * a.epochs, epochs=a.epochs),
               finished=True, metrics=dict(intra_distance=0.5, cohesion=0.5, fisher_ratio=2.0, silhouette=0.3)),
          open(os.path.join(run, 'results.json'), 'w'))
