"""Section `syncs`: host syncs in the trainer's hot path, counted by harness.HostSyncCounter."""
import timm
import torch

from timm_synermix import PairedBatchSampler, TwoViews, create_synermix_task

from .harness import HostSyncCounter, Report, bench_optimizer, cifar100_like_labels


def bench_syncs(report: Report, cfg: dict, device: torch.device) -> None:
    """Host syncs in the trainer's hot path: a SynerMix step with MixUp (elem) plus the loss meters' update."""
    from timm_synermix.trainer.state import LossMeters
    model = timm.create_model('resnet10t', num_classes=cfg['num_classes']).to(device)
    task = create_synermix_task(model, 'synermix', num_classes=cfg['num_classes'], mixup_mode='elem',
                                label_smoothing=0.0, verbose=False).train()
    optimizer = bench_optimizer(model)
    meters = LossMeters(device)
    labels = cifar100_like_labels() % cfg['num_classes']
    sampler = PairedBatchSampler(labels, cfg['batch'], seed=0)
    sampler.set_epoch(0)
    batches = iter(sampler)
    counts = []
    for step in range(3):
        y = torch.as_tensor(labels[next(batches)], device=device)
        views = TwoViews(torch.randn(len(y), 3, 32, 32, device=device), torch.randn(len(y), 3, 32, 32, device=device))
        with HostSyncCounter() as counter:
            out = task(views, y)
            out['loss'].backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            meters.update(out['loss'], out['loss_intra'], out['loss_inter'], len(y), out['with_intra'], step,
                          out['image_passes'])
        if step:   # the first step reads the targets' range once
            counts.append(len(counter.calls))
    report.bench('syncs.per_step', counts, 'host-sync tensor calls (item/tolist/cpu/numpy/bool/float/int/unique/'
                 'nonzero) counted by a TorchFunctionMode in a SynerMix training step (paired batch, MixUp elem, '
                 'forward, backward, SGD step, loss meters); steps after the first', goal='<=0')
