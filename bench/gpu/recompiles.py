"""Section `compile` of `make gpu-check`: graphs torch.compile builds after the first step, per batch mode."""
import logging
import logging.handlers
import time

import torch

from .rows import Rows
from .steps import MODES, build_steppers, first_batches, make_model, samplers_for


def bench_compile(report: Rows, cfg, device, deadline: float):
    c = cfg['compile']
    labels, samplers = samplers_for(cfg, cfg['batch'])
    log = logging.handlers.BufferingHandler(10 ** 6)   # dynamo's 'Recompiling function ...' records
    torch._logging.set_logs(recompiles=True)
    loggers = [logging.getLogger(name) for name in ('torch', 'torch._dynamo')]
    for logger in loggers:
        logger.addHandler(log)
    try:
        for mode in MODES:
            if time.perf_counter() > deadline - c['mode_s']:
                report.note(f'compile.{mode} skipped: the time budget (--budget-s) is spent')
                continue
            try:
                compile_mode(report, cfg, device, mode, first_batches(labels, samplers[mode], c['steps'], device), log)
            except Exception as e:   # e.g. no C compiler for triton: the other sections' rows still count
                report.note(f'compile.{mode} failed: {type(e).__name__}: {" ".join(str(e).split())[:300]}')
    finally:
        for logger in loggers:
            logger.removeHandler(log)
        torch._logging.set_logs()


def compile_mode(report: Rows, cfg, device, mode: str, batches, log: logging.handlers.BufferingHandler):
    """Steps of one batch mode under SynerMixTask.compile: graphs compiled per step, counted by a wrapping backend."""
    from torch._dynamo.backends.registry import lookup_backend   # imports torch._dynamo
    c = cfg['compile']
    torch._dynamo.reset()
    log.flush()
    model = make_model(c['model'], cfg['classes'], device, cfg['device'] == 'cuda')
    compiled_at, at = [], [0]

    def backend(gm, example_inputs):
        compiled_at.append(at[0])
        return lookup_backend(c['backend'])(gm, example_inputs)
    steppers = build_steppers(dict(cfg, px=c['px']), model, {m: batches for m in MODES}, device)
    s = steppers['plain' if mode == 'plain' else f'synermix_{mode}']
    s.task.compile(backend=backend)
    for at[0], y in enumerate(batches):
        s.step(y)
    sizes = sorted({y.numel() for y in batches})
    messages = dict.fromkeys(' '.join(r.getMessage().split()) for r in log.buffer)   # seen at two logger levels
    reasons = [m.split('guard failure(s):')[-1].strip()[:160] for m in messages if 'Recompiling' in m]
    report.value(f'compile.{mode}.recompiles', 'count', [sum(1 for i in compiled_at if i > 0)],
                 f'graphs compiled after step 1 of {len(batches)} ({"SynerMix" if mode != "plain" else "MixUp"}'
                 f', SynerMixTask.compile, backend {c["backend"]}, {c["model"]} {c["px"]}px); graphs in step '
                 f'1: {compiled_at.count(0)}; batch sizes {sizes}; dynamo recompile reasons: '
                 f'{" | ".join(reasons) or "none"}')
