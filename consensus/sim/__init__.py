"""Building blocks of the deterministic simulator: seeded randomness (``rng``), a faulty
network (``network``), Byzantine rewrites of a replica's outgoing messages (``byzantine``),
the invariant checker (``checker``) and test doubles for the core's unit tests (``crypto``).

The simulator itself runs the node's real chain code with them: ``mdtp.node.testing.sim``
(``python -m mdtp.node.testing.sim --help``).
"""
