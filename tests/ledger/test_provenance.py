"""Quality claims and provenance stamps on ``dataset.publish`` and ``dataset.update``."""

from __future__ import annotations

from typing import Any

import pytest

from mdtp.node.identity.keys import SigningKey
from mdtp.node.ledger.trading import layout
from mdtp.node.ledger.trading.accounts import rotation_proof
from mdtp.node.ledger.trading.bodies import Provenance
from tests.ledger.helpers import CHAIN_ID, DAY_MS, T0, Chain, dataset_body, digest, quality

CAPTURE_START = T0 - 20 * DAY_MS
CAPTURE_END = T0 - 2 * DAY_MS


class Factory:
    """A chain with a supplier and a capturing system of m1."""

    def __init__(self) -> None:
        self.chain = Chain()
        self.supplier = self.chain.user("supplier", name="Acme Machining")
        self.camera = self.chain.user("capture", name="Line 3 gateway")

    def stamp(
        self,
        dataset_id: str = "ds1",
        *,
        by: SigningKey | None = None,
        content_of: str | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """A stamp by the capturing system over ``dataset_body(content_of or dataset_id)``."""
        content = dataset_body(content_of or dataset_id)
        facts: dict[str, Any] = {
            "site": "plant-augsburg",
            "line": "line-3",
            "capture_start_ms": CAPTURE_START,
            "capture_end_ms": CAPTURE_END,
            **overrides,
        }
        signer = by or self.camera
        return Provenance.stamp(
            signer,
            chain_id=CHAIN_ID,
            dataset_id=dataset_id,
            plaintext_digest=content["plaintext_digest"],
            merkle_root=content["merkle_root"],
            captured_by=self.camera.account_id,
            **facts,
        ).to_body()

    def publish(self, dataset_id: str = "ds1", **overrides: Any) -> None:
        body = dataset_body(dataset_id, provenance=self.stamp(dataset_id), **overrides)
        self.chain.ok(self.supplier, "dataset.publish", body)

    def record(self, dataset_id: str = "ds1") -> dict[str, Any]:
        record = layout.read(self.chain.kv, layout.dataset_key(dataset_id))
        assert record is not None
        return dict(record)


@pytest.fixture
def factory() -> Factory:
    return Factory()


# ---- quality claims --------------------------------------------------------------------


def gaps(*periods: tuple[int, int]) -> list[dict[str, Any]]:
    return [{"start_ms": s, "end_ms": e, "reason": "sensor offline"} for s, e in periods]


G0 = T0 - 29 * DAY_MS  # inside the helper's collection period
ONE_GAP = gaps((G0, G0 + DAY_MS))[0]
D = DAY_MS


def test_old_quality_bodies_stay_valid_and_keep_their_shape(factory):
    factory.chain.ok(factory.supplier, "dataset.publish", dataset_body("ds1"))
    record = factory.record()
    assert set(record["quality"]) == set(quality())
    assert "provenance" not in record


def test_quality_claims_are_stored(factory):
    start = T0 - 30 * DAY_MS
    claims = quality(
        completeness_permille=987,
        calibration="ISO 17025 lab, 2026-01-04, cert K-1182",
        known_gaps=gaps(
            (start + DAY_MS, start + 2 * DAY_MS), (start + 2 * DAY_MS, start + 3 * DAY_MS)
        ),
    )
    factory.chain.ok(factory.supplier, "dataset.publish", dataset_body(quality=claims))
    stored = factory.record()["quality"]
    assert stored["completeness_permille"] == 987
    assert stored["calibration"].endswith("K-1182")
    assert [g["start_ms"] for g in stored["known_gaps"]] == [start + DAY_MS, start + 2 * DAY_MS]


@pytest.mark.parametrize(
    ("claims", "needle"),
    [
        ({"completeness_permille": 1001}, "quality.completeness_permille"),
        ({"completeness_permille": -1}, "quality.completeness_permille"),
        ({"calibration": ""}, "quality.calibration"),
        ({"calibration": "c" * 501}, "quality.calibration"),
        ({"calibration": "two\nlines"}, "quality.calibration"),
        ({"known_gaps": "none"}, "quality.known_gaps"),
        ({"known_gaps": gaps(*[(G0 + i, G0 + i + 1) for i in range(65)])}, "quality.known_gaps"),
        (
            {"known_gaps": [{"start_ms": G0, "end_ms": G0 + 1}]},
            "quality.known_gaps[0].reason: miss",
        ),
        ({"known_gaps": [{**ONE_GAP, "x": 1}]}, "quality.known_gaps[0].x: unknown field"),
        ({"known_gaps": [{**ONE_GAP, "reason": "r" * 201}]}, "quality.known_gaps[0].reason"),
    ],
)
def test_quality_claims_are_bounded(factory, claims, needle):
    body = dataset_body(quality=quality(**claims))
    result = factory.chain.refused("bad_body", factory.supplier, "dataset.publish", body)
    assert result.detail.startswith(needle), result.detail


@pytest.mark.parametrize(
    ("periods", "reason"),
    [
        (((T0 - 10 * DAY_MS, T0 - 10 * DAY_MS),), "bad_gap"),
        (((T0 - 9 * DAY_MS, T0 - 10 * DAY_MS),), "bad_gap"),
        (((T0 - 31 * DAY_MS, T0 - 29 * DAY_MS),), "gap_outside_period"),
        (((T0 - 2 * DAY_MS, T0),), "gap_outside_period"),
        (((T0 - 5 * D, T0 - 4 * D), (T0 - 9 * D, T0 - 8 * D)), "gaps_not_sorted"),
        (((T0 - 9 * D, T0 - 7 * D), (T0 - 8 * D, T0 - 6 * D)), "gaps_overlap"),
    ],
)
def test_known_gaps_are_inside_the_collection_period_sorted_and_apart(factory, periods, reason):
    body = dataset_body(quality=quality(known_gaps=gaps(*periods)))
    factory.chain.refused(reason, factory.supplier, "dataset.publish", body)


def test_a_gap_may_span_the_whole_collection_period(factory):
    whole = gaps((T0 - 30 * DAY_MS, T0 - DAY_MS))
    factory.chain.ok(
        factory.supplier, "dataset.publish", dataset_body(quality=quality(known_gaps=whole))
    )


# ---- provenance stamps -----------------------------------------------------------------


def test_a_stamp_signed_by_the_capturing_system_is_verified_and_stored(factory):
    factory.publish()
    stamp = factory.record()["provenance"]
    assert (stamp["site"], stamp["line"], stamp["captured_by"]) == (
        "plant-augsburg",
        "line-3",
        factory.camera.account_id,
    )
    assert (stamp["capture_start_ms"], stamp["capture_end_ms"]) == (CAPTURE_START, CAPTURE_END)
    assert stamp["key_version"] == 1


def test_a_stamp_for_another_dataset_id_is_refused(factory):
    stamp = factory.stamp("ds2", content_of="ds1")
    body = dataset_body("ds1", provenance=stamp)
    factory.chain.refused("bad_capture_signature", factory.supplier, "dataset.publish", body)


def test_a_stamp_for_other_content_is_refused(factory):
    stamp = factory.stamp("ds1", content_of="other")
    body = dataset_body("ds1", provenance=stamp)
    factory.chain.refused("bad_capture_signature", factory.supplier, "dataset.publish", body)


@pytest.mark.parametrize("field", ["site", "line", "capture_start_ms", "capture_end_ms"])
def test_a_stamp_whose_signed_facts_were_changed_is_refused(factory, field):
    stamp = factory.stamp()
    stamp[field] = "plant-x" if isinstance(stamp[field], str) else stamp[field] - 1
    body = dataset_body(provenance=stamp)
    factory.chain.refused("bad_capture_signature", factory.supplier, "dataset.publish", body)


def test_a_stamp_made_by_another_key_than_the_capturing_accounts_is_refused(factory):
    intruder = SigningKey.generate()
    body = dataset_body(provenance=factory.stamp(by=intruder))
    factory.chain.refused("bad_capture_signature", factory.supplier, "dataset.publish", body)


def test_a_stamp_for_another_chain_is_refused(factory):
    content = dataset_body("ds1")
    stamp = Provenance.stamp(
        factory.camera,
        chain_id="another-chain",
        dataset_id="ds1",
        plaintext_digest=content["plaintext_digest"],
        merkle_root=content["merkle_root"],
        site="plant-augsburg",
        line="line-3",
        capture_start_ms=CAPTURE_START,
        capture_end_ms=CAPTURE_END,
    )
    body = dataset_body(provenance=stamp.to_body())
    factory.chain.refused("bad_capture_signature", factory.supplier, "dataset.publish", body)


def test_the_stamp_is_checked_with_the_capturing_accounts_current_key(factory):
    chain, camera = factory.chain, factory.camera
    new = SigningKey.generate(with_encryption=True)
    chain.ok(
        camera,
        "account.rotate_key",
        {"public_key": new.public_key, "proof": rotation_proof(new, CHAIN_ID, camera.account_id)},
    )
    old_key_stamp = factory.stamp()
    body = dataset_body(provenance=old_key_stamp)
    chain.refused("bad_capture_signature", factory.supplier, "dataset.publish", body)
    new_key_stamp = factory.stamp(by=new)
    chain.ok(factory.supplier, "dataset.publish", dataset_body(provenance=new_key_stamp))
    assert factory.record()["provenance"]["key_version"] == 2


def test_the_capturing_system_needs_the_capture_role(factory):
    not_a_camera = factory.chain.user("consumer")
    stamp = factory.stamp(by=not_a_camera)
    stamp["captured_by"] = not_a_camera.account_id
    body = dataset_body(provenance=stamp)
    factory.chain.refused("not_capture_system", factory.supplier, "dataset.publish", body)


def test_the_capturing_system_belongs_to_the_suppliers_member(factory):
    foreign = factory.chain.user("capture", member="m2")
    stamp = factory.stamp(by=foreign)
    stamp["captured_by"] = foreign.account_id
    body = dataset_body(provenance=stamp)
    factory.chain.refused("capturer_other_member", factory.supplier, "dataset.publish", body)


def test_the_capturing_system_is_registered_and_active(factory):
    stranger = SigningKey.generate()
    stamp = factory.stamp(by=stranger)
    stamp["captured_by"] = stranger.account_id
    body = dataset_body(provenance=stamp)
    factory.chain.refused("unknown_account", factory.supplier, "dataset.publish", body)
    camera = factory.camera
    factory.chain.ok(camera, "account.revoke", {"account_id": camera.account_id, "reason": ""})
    body = dataset_body(provenance=factory.stamp())
    factory.chain.refused("account_revoked", factory.supplier, "dataset.publish", body)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"capture_start_ms": CAPTURE_END + 1}, "bad_period"),
        ({"capture_end_ms": T0 + DAY_MS}, "future_timestamp"),
        ({"capture_start_ms": T0 - 31 * DAY_MS}, "capture_outside_collection"),
    ],
)
def test_the_capture_period_is_ordered_past_and_inside_the_collection(factory, overrides, reason):
    body = dataset_body(provenance=factory.stamp(**overrides))
    factory.chain.refused(reason, factory.supplier, "dataset.publish", body)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("site", "a/b", "provenance.site"),
        ("line", "", "provenance.line"),
        ("captured_by", "camera-1", "provenance.captured_by"),
        ("capture_signature", b"\x00" * 63, "provenance.capture_signature"),
        ("capture_end_ms", -1, "provenance.capture_end_ms"),
        ("colour", "red", "provenance.colour: unknown field"),
    ],
)
def test_a_stamp_is_validated_field_by_field(factory, field, value, needle):
    stamp = {**factory.stamp(), field: value}
    body = dataset_body(provenance=stamp)
    result = factory.chain.refused("bad_body", factory.supplier, "dataset.publish", body)
    assert result.detail.startswith(needle), result.detail


# ---- updates ---------------------------------------------------------------------------


def test_new_content_of_a_stamped_dataset_needs_a_fresh_stamp(factory):
    factory.publish()
    new = dataset_body("other")
    content = {"merkle_root": new["merkle_root"], "plaintext_digest": new["plaintext_digest"]}
    body = {"dataset_id": "ds1", **content}
    factory.chain.refused("provenance_stale", factory.supplier, "dataset.update", body)
    stale = {**body, "provenance": factory.stamp("ds1")}  # signed over the old content
    factory.chain.refused("bad_capture_signature", factory.supplier, "dataset.update", stale)
    fresh = {**body, "provenance": factory.stamp("ds1", content_of="other", line="line-4")}
    factory.chain.ok(factory.supplier, "dataset.update", fresh)
    record = factory.record()
    assert (record["version"], record["provenance"]["line"]) == (2, "line-4")
    assert record["merkle_root"] == new["merkle_root"]


def test_changing_one_half_of_the_content_also_needs_a_fresh_stamp(factory):
    factory.publish()
    body = {"dataset_id": "ds1", "plaintext_digest": digest("re-exported")}
    factory.chain.refused("provenance_stale", factory.supplier, "dataset.update", body)


def test_metadata_updates_keep_the_stamp(factory):
    factory.publish()
    factory.chain.ok(factory.supplier, "dataset.update", {"dataset_id": "ds1", "title": "New"})
    same_content = {"dataset_id": "ds1", "merkle_root": dataset_body("ds1")["merkle_root"]}
    factory.chain.ok(factory.supplier, "dataset.update", same_content)
    assert factory.record()["provenance"]["site"] == "plant-augsburg"


def test_an_unstamped_dataset_may_change_content_without_a_stamp(factory):
    factory.chain.ok(factory.supplier, "dataset.publish", dataset_body("ds1"))
    body = {"dataset_id": "ds1", "merkle_root": digest("v2")}
    factory.chain.ok(factory.supplier, "dataset.update", body)
    assert "provenance" not in factory.record()


def test_an_update_may_add_a_stamp_alone(factory):
    factory.chain.ok(factory.supplier, "dataset.publish", dataset_body("ds1"))
    factory.chain.ok(
        factory.supplier, "dataset.update", {"dataset_id": "ds1", "provenance": factory.stamp()}
    )
    record = factory.record()
    assert (record["version"], record["provenance"]["line"]) == (2, "line-3")


def test_a_quality_update_must_keep_the_stamped_capture_period_inside(factory):
    factory.publish()
    narrow = quality(collection_start_ms=T0 - 10 * DAY_MS)
    # with a tag change too: the refusal leaves the tag index as it was
    body = {"dataset_id": "ds1", "quality": narrow, "tags": ["spindle"]}
    factory.chain.refused("capture_outside_collection", factory.supplier, "dataset.update", body)


def test_only_the_owner_stamps_its_dataset(factory):
    factory.publish()
    other = factory.chain.user("supplier")
    body = {"dataset_id": "ds1", "provenance": factory.stamp()}
    factory.chain.refused("not_owner", other, "dataset.update", body)
