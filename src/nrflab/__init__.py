"""nrflab: the Non-Robust Feature lab.

Batch normalization, adversarial vulnerability and transferability, measured: models with switchable
normalization, attacks, LIGS, feature datasets, transfer matrices and the paper's experiments.
"""

__version__ = "0.1.0"

from nrflab.core.errors import NrflabError

__all__ = ["NrflabError", "__version__"]
