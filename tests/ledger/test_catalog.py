import pytest

from mdtp.node.ledger.trading import layout
from tests.ledger.helpers import Chain, dataset_body, digest, quality


@pytest.fixture
def chain() -> Chain:
    return Chain()


def test_supplier_publishes_metadata_with_indexes(chain):
    supplier = chain.user("supplier")
    chain.ok(supplier, "dataset.publish", dataset_body("ds1"))
    record = layout.read(chain.kv, layout.dataset_key("ds1"))
    assert record["supplier"] == supplier.account_id
    assert (record["status"], record["version"], record["tags"]) == (
        "published",
        1,
        ["cnc", "vibration"],
    )
    assert record["quality"]["machine_type"] == "CNC milling centre"
    assert chain.kv.get(layout.dataset_tag_key("cnc", "ds1")) == b""
    assert chain.kv.get(layout.dataset_supplier_key(supplier.account_id, "ds1")) == b""


def test_publishing_needs_the_supplier_role(chain):
    consumer = chain.user("consumer")
    chain.refused("not_supplier", consumer, "dataset.publish", dataset_body())


def test_publish_refuses_an_unknown_member_node(chain):
    supplier = chain.user("supplier")
    body = dataset_body(supplier_node="m9")
    chain.refused("unknown_member", supplier, "dataset.publish", body)


def test_publish_refuses_another_members_node(chain):
    supplier = chain.user("supplier", member="m1")
    body = dataset_body(supplier_node="m2")
    chain.refused("wrong_supplier_node", supplier, "dataset.publish", body)


def test_dataset_ids_are_unique(chain):
    a, b = chain.user("supplier"), chain.user("supplier")
    chain.ok(a, "dataset.publish", dataset_body("ds1"))
    chain.refused("dataset_exists", b, "dataset.publish", dataset_body("ds1"))


def test_collection_period_must_not_end_before_it_starts(chain):
    supplier = chain.user("supplier")
    body = dataset_body(quality=quality(collection_start_ms=10, collection_end_ms=5))
    chain.refused("bad_period", supplier, "dataset.publish", body)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"dataset_id": "a/b"}, "dataset_id"),
        ({"dataset_id": "x" * 65}, "dataset_id"),
        ({"title": ""}, "title"),
        ({"title": "t" * 201}, "title"),
        ({"title": "two\nlines"}, "title"),
        ({"description": "d" * 4001}, "description"),
        ({"tags": [f"t{i}" for i in range(17)]}, "tags"),
        ({"tags": ["Upper"]}, "tags[0]"),
        ({"tags": ["a", "a"]}, "tags"),
        ({"schema": "s" * 8001}, "schema"),
        ({"size_bytes": -1}, "size_bytes"),
        ({"size_bytes": True}, "size_bytes"),
        ({"chunk_count": 0}, "chunk_count"),
        ({"merkle_root": b"\x00" * 31}, "merkle_root"),
        ({"plaintext_digest": "ab" * 32}, "plaintext_digest"),
        ({"quality": quality(machine_type="")}, "quality.machine_type"),
        ({"quality": {**quality(), "extra": 1}}, "quality.extra: unknown field"),
        ({"quality": "good"}, "quality"),
        ({"licence": "cc-by"}, "licence: unknown field"),
    ],
)
def test_publish_validates_every_field(chain, overrides, needle):
    supplier = chain.user("supplier")
    result = chain.refused("bad_body", supplier, "dataset.publish", dataset_body(**overrides))
    assert result.detail.startswith(needle), result.detail


def test_publish_names_a_missing_field(chain):
    supplier = chain.user("supplier")
    body = dataset_body()
    del body["merkle_root"]
    result = chain.refused("bad_body", supplier, "dataset.publish", body)
    assert result.detail == "merkle_root: missing"


def test_owner_updates_metadata_and_tag_index_follows(chain):
    supplier = chain.user("supplier")
    chain.ok(supplier, "dataset.publish", dataset_body("ds1"))
    body = {"dataset_id": "ds1", "tags": ["vibration", "spindle"], "merkle_root": digest("v2")}
    chain.ok(supplier, "dataset.update", body)
    record = layout.read(chain.kv, layout.dataset_key("ds1"))
    assert (record["version"], record["merkle_root"]) == (2, digest("v2"))
    assert chain.kv.get(layout.dataset_tag_key("cnc", "ds1")) is None
    assert chain.kv.get(layout.dataset_tag_key("spindle", "ds1")) == b""
    assert record["title"] == dataset_body()["title"]


def test_update_needs_the_owner_and_a_change(chain):
    supplier, other = chain.user("supplier"), chain.user("supplier")
    chain.ok(supplier, "dataset.publish", dataset_body("ds1"))
    chain.refused("not_owner", other, "dataset.update", {"dataset_id": "ds1", "title": "mine"})
    chain.refused("bad_body", supplier, "dataset.update", {"dataset_id": "ds1"})
    body = {"dataset_id": "ds1", "supplier_node": "m2"}
    chain.refused("bad_body", supplier, "dataset.update", body)


def test_unknown_dataset_cannot_be_updated_or_withdrawn(chain):
    supplier = chain.user("supplier")
    chain.refused("unknown_dataset", supplier, "dataset.update", {"dataset_id": "no", "title": "t"})
    chain.refused(
        "unknown_dataset", supplier, "dataset.withdraw", {"dataset_id": "no", "reason": ""}
    )


def test_withdrawn_dataset_cannot_be_updated_or_withdrawn_again(chain):
    supplier = chain.user("supplier")
    chain.ok(supplier, "dataset.publish", dataset_body("ds1"))
    chain.ok(supplier, "dataset.withdraw", {"dataset_id": "ds1", "reason": "sensor fault"})
    record = layout.read(chain.kv, layout.dataset_key("ds1"))
    assert (record["status"], record["withdrawn"]["reason"]) == ("withdrawn", "sensor fault")
    body = {"dataset_id": "ds1", "title": "again"}
    chain.refused("dataset_withdrawn", supplier, "dataset.update", body)
    body = {"dataset_id": "ds1", "reason": ""}
    chain.refused("dataset_withdrawn", supplier, "dataset.withdraw", body)
