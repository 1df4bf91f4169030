"""Dataspace interoperability (issue #17): the catalog as DCAT-AP 3 JSON-LD (:mod:`.dcat`) and
contract terms as ODRL 2.2 policies (:mod:`.odrl`), read from ledger records only.

Identifiers (:mod:`.ids`) are derived from the chain id and the ledger's own ids, so the same
record exports to the same IRIs on every node and at every time. JSON-LD contexts are shipped
in ``contexts/`` and served by an offline document loader (:mod:`.loader`): nothing here
reaches the network.
"""
