"""Build a typed body, sign it with the sender's next nonce, submit it and wait for its
definitive status, with the asynchronous client.

    python -m mdtp.node.sdk.examples.submit_and_wait --node HOST:PORT --home HOME --key KEY

Prints the transaction's id, then ``committed at height H index I`` (or ``failed: REASON``,
``dropped: REASON``) and what ``GET /v1/tx/{id}`` says; exits 0 only when it committed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.bodies import NoteSet
from mdtp.node.ledger.signer import Signer
from mdtp.node.sdk.client import ApiError, NodeClient
from mdtp.node.sdk.examples._cli import parse, print_retry


async def submit_and_wait(node: NodeClient, key: SigningKey, value: bytes) -> bool:
    # a typed body; the signer gives the sender's next nonce and an expiry 10 minutes ahead
    body = NoteSet(key="example", value=value)
    signer = Signer(await node.chain_id(), node)
    tx = await signer.sign(key, body.TYPE, body.to_body())
    print(f"tx {tx.id.hex()} nonce {tx.nonce} expires_at_ms {tx.expires_at_ms}")

    # submit and wait; 503/429 answers are retried after their Retry-After, and sending
    # the same signed bytes again is safe: its id is their hash
    doc = await node.submit(tx.raw, wait=True, timeout_s=30)
    while doc["status"] == "pending":  # not executed within the wait: wait again
        doc = await node.submit(tx.raw, wait=True, timeout_s=30)
    if doc["status"] == "committed":
        print(f"committed at height {doc['height']} index {doc['index']}")
    elif doc["status"] == "failed":  # executed and refused: see GET /v1/reasons
        signer.refused(tx, doc["reason"])
        print(f"failed: {doc['reason']}")
    else:  # "dropped" unexecuted (expired, nonce_used): its nonce is free, sign anew
        signer.release(tx)
        print(f"dropped: {doc['reason']}")
    print("GET /v1/tx:", json.dumps(await node.tx(tx.id.hex()), sort_keys=True))
    return bool(doc["status"] == "committed")


async def main(argv: Sequence[str] | None = None) -> int:
    opts = parse(__doc__, argv)
    async with NodeClient.of_home(opts.node, opts.home, on_retry=print_retry) as node:
        try:
            committed = await submit_and_wait(node, opts.key, b"hello from the async SDK")
        except ApiError as e:  # refused before the mempool: e.g. 400 not_registered
            print(f"refused: {e.status} {e.reason}: {e.message}")
            return 1
    return 0 if committed else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
