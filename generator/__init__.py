"""hedgerow: behavioral fine-tuning data that keeps a model honest about what it knows.

The public surface is small: the value types and the one call that makes a run.
Everything else is a stage of the data flow, one module each (see README).
"""

__version__ = "0.1.0"

from generator.errors import HedgerowError
from generator.values import Example, Fit, Seed

__all__ = ["Example", "Fit", "HedgerowError", "Seed", "__version__"]
