"""Deterministic simulator of the consensus core: ``python -m consensus.sim --help``."""
