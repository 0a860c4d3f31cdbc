"""What SynerMix costs: `make bench` (bench/run.py, CPU or CUDA) and `make gpu-check` (bench/gpu_check.py, CUDA).

harness.py holds what every measurement shares (the BENCH line, interleaved timing, medians, peak memory, host-sync
counting); each other module is one section of `bench/run.py` (cli.py lists them); bench/gpu/ is `make gpu-check`.
Not part of the installed package: run from the repository root.
"""
