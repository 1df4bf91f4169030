"""Runnable examples of the Python SDK, each against a running cluster::

    mdtp cluster init --dir ./c --nodes 4 && mdtp cluster up --dir ./c
    python -m mdtp.node.sdk.examples.submit_and_wait --node 127.0.0.1:PORT --home c/node0 \\
        --key c/admins/node0.json

``--node``: a node's API address (``mdtp cluster status --dir ./c`` lists them); ``--home``:
a member's node home, whose certificate the client presents; ``--key``: the key file of
the account that signs (e.g. that member's admin key, ``c/admins/node0.json``).

- :mod:`.submit_and_wait` — build a typed body, sign it with the sender's next nonce,
  submit it and wait for its definitive status (async);
- :mod:`.sync_client` — the same with the blocking client;
- :mod:`.batch_gateway` — a gateway's batch of signed transactions, with retries;
- :mod:`.trade` — a small whole trade with :class:`~mdtp.node.sdk.trading.TradingClient`.

The README's "Client developers" section quotes these files (a test keeps the two equal).
"""
