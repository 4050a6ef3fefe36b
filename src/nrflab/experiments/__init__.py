"""Experiments of the paper, reproduced as one command each (the demo, feature sets, transfer, norms)."""
