"""`python -m timm_synermix.trainer ARGS`: train.py, run from the installed package."""
import sys

from .main import main

sys.exit(main())
