"""Section `memory`: peak tensor memory of a SynerMix step vs the plain step on the same supplemented batch."""
from .harness import Report, peak_step_memory
from .steps import StepBench


def bench_step_memory(report: Report, s: StepBench) -> None:
    def plain_step() -> None:
        s.step(s.plain, s.augmented.clone(), s.y, None)

    def synermix_step() -> None:
        s.step(s.synermix, s.augmented.clone(), s.y, s.original.clone())   # its input batch holds both views

    plain_step(), synermix_step()   # gradients, optimizer state exist before the measured step
    peak_plain = peak_step_memory(plain_step, s.device)
    peak_synermix = peak_step_memory(synermix_step, s.device)
    how = ('torch.cuda.max_memory_allocated' if s.device.type == 'cuda' else
           'tensor storages tracked by a TorchDispatchMode (not RSS)')
    report.bench(f'memory.{s.row}', [peak_synermix / peak_plain],
                 f'peak tensor bytes of a SynerMix step / plain step above weights+optimizer state, same '
                 f'batch N̂={s.n_hat}: {peak_synermix / 2 ** 20:.1f} MiB vs {peak_plain / 2 ** 20:.1f} MiB; '
                 f'{how}; deterministic, one measurement', goal='<=2')
