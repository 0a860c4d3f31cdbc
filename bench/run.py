#!/usr/bin/env python
"""`make bench`: what SynerMix costs on CPU (or --device cuda), side by side in one run; bench/cli.py has the rest.

    python bench/run.py                  # full (make bench), a few minutes on 2 CPU cores
    python bench/run.py --quick          # fewer repeats (make bench-quick), < 2 minutes
    python bench/run.py --smoke          # tiny models and one repeat: checks the harness only
    python bench/run.py --help
"""
import sys
from pathlib import Path

if __name__ == '__main__':
    # The repository root in place of the script's folder: bench/ imports as the package (its modules would
    # otherwise shadow top-level modules of the same name, e.g. `memory`), and timm_synermix is found uninstalled.
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    from bench.cli import main
    sys.exit(main())
