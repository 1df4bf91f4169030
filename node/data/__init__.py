"""Off-chain encrypted datasets: chunk crypto, the signed requests, and the node's chunk
service (:class:`node.data.service.DataService`), which the daemon builds and wires."""
