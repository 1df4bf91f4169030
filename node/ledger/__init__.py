"""The ledger: the deterministic state machine applied to committed blocks, in height order.

``state.py`` is the key/value view the rules read and write (an overlay over the committed
store) and the state commitment; ``machine.py`` runs a block's transactions through the
common checks (expiry, sender key, nonce) and dispatches each to the handler registered for
its type; ``notes.py`` is the smallest application (a key/value note).
"""
