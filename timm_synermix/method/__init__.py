"""The method: SynerMix on top of timm (torch, timm and numpy only; nothing here knows the trainer or the experiments).

Its four components (docs/method.md §2-5) are four files: `sampler` (supplementation), `intra` (SynerMix-Intra),
`inter` (MixUp, CutMix, Manifold MixUp), `task` (the total loss). `views` and `loader` feed the task
both views of one decoded image; `presets` knows the paper's methods and builds their tasks.
"""
