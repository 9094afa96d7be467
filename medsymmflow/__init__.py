"""MedSymmFlow: one flow-matching network that classifies, generates and says how sure it is.

The package backs the course's notebooks. The pipeline reads top to bottom:
``data`` (MedMNIST files, synthetic twins, semantic masks) -> ``config`` (profiles,
devices, seeds) -> later chapters' paths, solvers, models and training.
"""

__version__ = "0.1.0"
