"""The trainer: train.py's command line, configs, data, model set-up, the loop, checkpoints and outputs.

It imports the method (`timm_synermix.method`), never the experiments. Run it as `python train.py` or
`python -m timm_synermix.trainer`; call `timm_synermix.trainer.main.main(argv)` from Python.
"""
