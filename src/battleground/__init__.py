"""battleground: ML models and decision policies fight it out; honest statistics declare the winner.

Importing this package is cheap on purpose: heavy libraries (MLflow, LightGBM, Kedro, Ray, …) are
imported only by the modules that use them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
