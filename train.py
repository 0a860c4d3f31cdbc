#!/usr/bin/env python3
"""SynerMix training script for PyTorch Image Models: timm's train.py flags, YAML keys and outputs, plus SynerMix.

    python train.py DATA_DIR --model resnet18 --method synermix --synermix-beta 0.1
    torchrun --nproc_per_node=2 train.py DATA_DIR --model resnet50 --method synermix

The script lives in the package (`timm_synermix.trainer`, also `python -m timm_synermix.trainer`); this file
only runs it, so `python train.py ...` works as in timm.
"""
import sys

from timm_synermix.trainer.main import main

if __name__ == '__main__':
    sys.exit(main())
