"""Deterministic simulator of the consensus core: ``python -m mdtp.consensus.sim --help``."""
