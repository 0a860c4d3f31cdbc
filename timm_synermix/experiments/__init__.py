"""The experiments: built-in data, the report's pictures and tables, the method comparison, the demo.

They run the trainer as a module (`python -m timm_synermix.trainer`) and import the method and trainer,
never the other way round.
"""
