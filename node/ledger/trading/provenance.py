"""Provenance stamps and quality claims of a dataset (issue #17): their shape and their checks.

A *provenance stamp* says where and when the data was captured (site, machine or line,
capture period) and by which capturing system (``captured_by``, an account). The capturing
system signs a domain-separated canonical statement (:func:`capture_statement`) that binds
the stamp to the chain, the dataset id and the content (plaintext digest and Merkle root),
and the ledger verifies that signature against the capturing account's *current* key with
the same Ed25519 primitive as a key-rotation proof. So a supplier cannot claim a stamp the
capturing system did not give, nor move a stamp to another dataset or another content.

Who may stamp: an active user account with the ``capture`` role of the supplier's own
member. The member's admin registers its capturing systems (a line's gateway, a test
bench) as such accounts; a consumer or another member's device cannot vouch for the data.

Quality claims are the supplier's own word: ``completeness_permille`` (0..1000),
``calibration`` (method, date, certificate id) and ``known_gaps`` (sorted, non-overlapping
half-open periods inside the collection period). They are optional, so bodies written
before they existed stay valid and keep their stored shape.

Changing the content with ``dataset.update`` (a new Merkle root or plaintext digest) of a
stamped dataset needs a fresh stamp in the same update (``provenance_stale``): a stamp is
never carried over to data its capturing system did not sign.
"""

from __future__ import annotations

from typing import Any

from mdtp.node.identity.keys import verify_signature
from mdtp.node.ledger.state import ReadableKV
from mdtp.node.ledger.trading.accounts import has_role, require_active
from mdtp.node.ledger.trading.reasons import refuse
from mdtp.node.ledger.trading.schema import SIGNATURE_LEN, Fields, bad
from mdtp.node.ledger.tx import canonical

CAPTURE_TAG = b"mdtp/v1/capture\x00"
CALIBRATION_MAX_LEN = 500
GAP_REASON_MAX_LEN = 200
KNOWN_GAPS_MAX = 64
COMPLETENESS_MAX = 1000

# The fields of a stamp the capturing system signs (with the chain id, the dataset id and
# its content), in the order of the statement.
STAMPED_FIELDS = ("site", "line", "capture_start_ms", "capture_end_ms")


def capture_statement(
    chain_id: str,
    dataset_id: str,
    plaintext_digest: bytes,
    merkle_root: bytes,
    site: str,
    line: str,
    capture_start_ms: int,
    capture_end_ms: int,
) -> bytes:
    """What the capturing system signs: the tag, then the canonical list of the facts."""
    return CAPTURE_TAG + canonical(
        [
            chain_id,
            dataset_id,
            plaintext_digest,
            merkle_root,
            site,
            line,
            capture_start_ms,
            capture_end_ms,
        ]
    )


# ---- quality ---------------------------------------------------------------------------


def read_quality_extras(q: Fields, quality: dict[str, Any]) -> None:
    """The optional quality claims, read into ``quality`` (only those given)."""
    if q.has("completeness_permille"):
        quality["completeness_permille"] = q.integer("completeness_permille", hi=COMPLETENESS_MAX)
    if q.has("calibration"):
        quality["calibration"] = q.text("calibration", min_len=1, max_len=CALIBRATION_MAX_LEN)
    if q.has("known_gaps"):
        quality["known_gaps"] = _known_gaps(q)


def _known_gaps(q: Fields) -> list[dict[str, Any]]:
    raw = q.raw("known_gaps")
    where = q.name("known_gaps")
    if not isinstance(raw, list) or len(raw) > KNOWN_GAPS_MAX:
        bad(where, f"must be a list of at most {KNOWN_GAPS_MAX} gaps")
    gaps: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        g = Fields(item, f"{where}[{i}]")
        gaps.append(
            {
                "start_ms": g.integer("start_ms"),
                "end_ms": g.integer("end_ms"),
                "reason": g.text("reason", min_len=1, max_len=GAP_REASON_MAX_LEN),
            }
        )
        g.finish()
    return gaps


def check_quality(quality: dict[str, Any]) -> None:
    """The rules between quality fields: periods in order, gaps inside and apart."""
    start, end = quality["collection_start_ms"], quality["collection_end_ms"]
    if end < start:
        refuse("bad_period", "quality.collection_end_ms is before quality.collection_start_ms")
    previous: dict[str, Any] | None = None
    for i, gap in enumerate(quality.get("known_gaps", ())):
        where = f"quality.known_gaps[{i}]"
        if gap["end_ms"] <= gap["start_ms"]:
            refuse("bad_gap", f"{where}: end_ms must be after start_ms")
        if gap["start_ms"] < start or gap["end_ms"] > end:
            refuse("gap_outside_period", f"{where}: must lie inside the collection period")
        if previous is not None:
            if gap["start_ms"] < previous["start_ms"]:
                refuse("gaps_not_sorted", f"{where}: starts before the gap listed before it")
            if gap["start_ms"] < previous["end_ms"]:
                refuse("gaps_overlap", f"{where}: starts before the previous gap ends")
        previous = gap


# ---- provenance ------------------------------------------------------------------------


def read_provenance(f: Fields) -> dict[str, Any]:
    """The ``provenance`` map of a publish or update body, shape only."""
    p = f.nested("provenance")
    provenance: dict[str, Any] = {
        "site": p.ident("site"),
        "line": p.ident("line"),
        "capture_start_ms": p.integer("capture_start_ms"),
        "capture_end_ms": p.integer("capture_end_ms"),
        "captured_by": p.account_id("captured_by"),
        "capture_signature": p.blob("capture_signature", size=SIGNATURE_LEN),
    }
    p.finish()
    return provenance


def check_provenance(
    state: ReadableKV,
    *,
    chain_id: str,
    now_ms: int,
    dataset: dict[str, Any],
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """Verify a stamp against the dataset's (new) metadata; the record to store.

    ``dataset`` is the dataset record as it will be stored (id, supplier, content, quality).
    The stored stamp adds ``key_version``, the capturing account's key version that
    verified it, so an auditor knows which key to check it with after a rotation.
    """
    start, end = provenance["capture_start_ms"], provenance["capture_end_ms"]
    if end < start:
        refuse("bad_period", "provenance.capture_end_ms is before provenance.capture_start_ms")
    if end > now_ms:
        refuse("future_timestamp", "provenance.capture_end_ms is later than the block time")
    quality = dataset["quality"]
    if start < quality["collection_start_ms"] or end > quality["collection_end_ms"]:
        refuse(
            "capture_outside_collection",
            "the provenance capture period must lie inside the quality collection period",
        )
    capturer = require_active(state, provenance["captured_by"], "provenance.captured_by")
    if not has_role(capturer, "capture"):
        refuse("not_capture_system", "provenance.captured_by lacks the capture role")
    supplier = require_active(state, dataset["supplier"], "dataset supplier")
    if capturer["member"] != supplier["member"]:
        refuse(
            "capturer_other_member",
            f"provenance.captured_by must be an account of member {supplier['member']}",
        )
    statement = capture_statement(
        chain_id,
        dataset["id"],
        dataset["plaintext_digest"],
        dataset["merkle_root"],
        provenance["site"],
        provenance["line"],
        start,
        end,
    )
    if not verify_signature(
        bytes(capturer["public_key"]), statement, provenance["capture_signature"]
    ):
        refuse(
            "bad_capture_signature",
            "provenance.capture_signature is not captured_by's signature of this dataset's "
            "content, site, line and capture period",
        )
    return {**provenance, "key_version": capturer["key_version"]}
