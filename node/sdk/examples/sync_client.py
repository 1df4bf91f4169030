"""The same as :mod:`.submit_and_wait`, with the blocking client: no ``async`` anywhere.

    python -m mdtp.node.sdk.examples.sync_client --node HOST:PORT --home HOME --key KEY

Prints the transaction's id, then ``committed at height H index I`` (or ``failed: REASON``,
``dropped: REASON``) and what ``GET /v1/tx/{id}`` says; exits 0 only when it committed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.bodies import NoteSet
from mdtp.node.sdk.client import ApiError
from mdtp.node.sdk.examples._cli import parse, print_retry
from mdtp.node.sdk.sync import SyncNodeClient, SyncTradingClient
from mdtp.node.sdk.trading import TxDropped, TxFailed, TxNotCommitted


def submit_and_wait(node: SyncNodeClient, key: SigningKey, value: bytes) -> bool:
    trading = SyncTradingClient(node)  # signs with the next nonce, submits, waits
    try:
        done = trading.send(key, NoteSet(key="example", value=value))
    except TxFailed as e:  # executed and refused (or refused on admission)
        print(f"failed: {e.reason}: {e.description}")
        return False
    except TxDropped as e:  # accepted, then dropped unexecuted: sign and send it again
        print(f"dropped: {e.reason}")
        return False
    except TxNotCommitted as e:  # still pending after the wait: ask GET /v1/tx/{id} later
        print(f"pending: {e.tx_id}")
        return False
    print(f"tx {done.id}")
    print(f"committed at height {done.height} index {done.index}")
    print("GET /v1/tx:", json.dumps(node.tx(done.id), sort_keys=True))
    return True


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse(__doc__, argv)
    with SyncNodeClient.of_home(opts.node, opts.home, on_retry=print_retry) as node:
        try:
            committed = submit_and_wait(node, opts.key, b"hello from the blocking SDK")
        except ApiError as e:  # refused before the mempool: e.g. 400 not_registered
            print(f"refused: {e.status} {e.reason}: {e.message}")
            return 1
    return 0 if committed else 1


if __name__ == "__main__":
    raise SystemExit(main())
