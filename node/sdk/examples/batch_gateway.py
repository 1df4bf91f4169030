"""A gateway's batch: sign many transactions of one sender with consecutive nonces, submit
them in one request and wait; what the node refuses for a moment is sent again.

    python -m mdtp.node.sdk.examples.batch_gateway --node HOST:PORT --home HOME \\
        [--key KEY] [--count 50]

Prints ``N of M committed at heights A..B``, a line per transaction that did not commit,
and the last transaction's id; exits 0 only when all committed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.bodies import NoteSet
from mdtp.node.ledger.signer import TX_LIFETIME_MS
from mdtp.node.ledger.tx import sign_tx
from mdtp.node.sdk.client import NodeClient
from mdtp.node.sdk.examples._cli import parse, print_retry
from mdtp.node.sdk.retry import RetryPolicy

# up to 8 tries and a minute of waiting in all, honouring each Retry-After up to 5 s
GATEWAY_RETRY = RetryPolicy(max_attempts=8, max_total_wait_s=60, retry_after_max_s=5)


async def send_batch(node: NodeClient, key: SigningKey, count: int) -> bool:
    # nonces: one above the committed one, consecutive, all in flight at once
    chain_id = await node.chain_id()
    first = await node.committed_nonce(key.account_id) + 1
    expires_at_ms = int(time.time() * 1000) + TX_LIFETIME_MS
    raws = [
        sign_tx(
            key,
            chain_id=chain_id,
            type_=NoteSet.TYPE,
            sender=key.account_id,
            nonce=nonce,
            expires_at_ms=expires_at_ms,
            body=NoteSet(key=f"batch-{nonce}", value=b"reading").to_body(),
        )
        for nonce in range(first, first + count)
    ]
    results = await node.submit_many(raws, wait=True, timeout_s=30)
    for r in results:
        if "error" in r:  # refused by the node: {"index", "error", "message"}
            print(f"refused #{r['index']}: {r['error']}: {r['message']}")
        elif r["status"] != "committed":  # failed (reason), dropped (reason) or pending
            print(f"{r['id']}: {r['status']} {r.get('reason') or ''}")
    heights = [r["height"] for r in results if r.get("status") == "committed"]
    span = f" at heights {min(heights)}..{max(heights)}" if heights else ""
    print(f"{len(heights)} of {len(raws)} committed{span}")
    print(f"last tx {results[-1].get('id', '-')}")
    return len(heights) == len(raws)


async def main(argv: Sequence[str] | None = None) -> int:
    opts = parse(__doc__, argv, count=50)
    async with NodeClient.of_home(
        opts.node, opts.home, retry=GATEWAY_RETRY, on_retry=print_retry
    ) as node:
        all_committed = await send_batch(node, opts.key, opts.count)
    return 0 if all_committed else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
