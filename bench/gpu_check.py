#!/usr/bin/env python
"""`make gpu-check`: what SynerMix costs on one CUDA GPU, and a short glyph training; bench/gpu/cli.py has the rest.

    python bench/gpu_check.py --out bench/results_gpu.txt    # make gpu-check, on a CUDA machine
    python bench/gpu_check.py --dry-run --out /tmp/gpu.txt     # the same plan on CPU, tiny sizes, < 60 s (CI)
    python bench/gpu_check.py --help
"""
import sys
from pathlib import Path

if __name__ == '__main__':
    # The repository root in place of the script's folder: bench/ imports as the package (its modules would
    # otherwise shadow top-level modules of the same name, e.g. `memory`), and timm_synermix is found uninstalled.
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    from bench.gpu.cli import main
    sys.exit(main())
