"""`make gpu-check` (bench/gpu_check.py): SynerMix's cost on one CUDA GPU and a short glyph training; cli.py runs it.

rows.py writes the rows (ratios from bench/harness.py, plus absolute values), one module per section: steps.py
(step time, images/s, peak memory, batch sizes per mode), syncs.py, glyphs.py, recompiles.py (torch.compile).
"""
