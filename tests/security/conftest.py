"""The security suite attacks the same kind of cluster the cluster tests use."""

from tests.cluster.conftest import running_cluster

__all__ = ["running_cluster"]
