"""Deterministic simulation of a consortium running the node's real chain code:
``python -m mdtp.node.testing.sim --help``."""
