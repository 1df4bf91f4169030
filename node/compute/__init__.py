"""Clean-room analysis: consumers run aggregate SQL over a dataset that never leaves the
supplier's node (issue #14).

- :mod:`.reasons`: every reason a query is refused, with its meaning;
- :mod:`.rule`: the analysis rule of the signed terms, as the checker reads it;
- :mod:`.check`: a query parsed with sqlglot and checked against the rule (whitelist);
- :mod:`.engine`: the checked query run by DuckDB over the decrypted dataset, with time and
  memory limits, then the threshold and the noise;
- :mod:`.result`: the result table's canonical form and hash (what a receipt names);
- :mod:`.protocol`: the consumer's signed query request;
- :mod:`.service`: the supplier's node serving queries (authorise on committed state, run,
  post ``compute.receipt``, answer); :mod:`.relay`: the consumer's node relaying them;
- :mod:`.anonymise`: what a supplier may do to a table before publishing it for analysis;
- :mod:`.clean_room`: the node's clean room composed (the daemon builds it);
  :mod:`.metrics`: its Prometheus metrics.
"""
