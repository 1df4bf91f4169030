import copy

import pytest

from mdtp.node.errors import GenesisError
from mdtp.node.identity import pki
from mdtp.node.identity.genesis import load_genesis, parse_genesis
from mdtp.node.identity.home import build_genesis, init_home


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    root = tmp_path_factory.mktemp("g")
    ca = pki.create_ca("test")
    return [
        init_home(
            root / f"n{i}",
            node_id=f"n{i}",
            name=f"M{i}",
            ca=ca,
            p2p=f"127.0.0.1:{7000 + i}",
            api=f"127.0.0.1:{7100 + i}",
            metrics=f"127.0.0.1:{7200 + i}",
        )
        for i in range(4)
    ]


def test_genesis_round_trips_and_hash_is_stable(members, tmp_path):
    g = build_genesis("chain-a", members)
    assert g.member_ids == ("n0", "n1", "n2", "n3")
    assert (g.f, g.quorum) == (1, 3)
    path = tmp_path / "genesis.json"
    path.write_text(g.to_json())
    assert load_genesis(path).hash() == g.hash()


def test_a_genesis_names_its_pipeline_depth_so_the_chain_keeps_it(members):
    # the default changed from 2 to 1: a chain created under 2 must keep 2, so the genesis
    # written names it and a loaded one takes what it names
    doc = _doc(members)
    assert doc["consensus"]["pipeline_depth"] == 1
    doc["consensus"]["pipeline_depth"] = 2
    assert parse_genesis(doc, "genesis.json").consensus.pipeline_depth == 2


def _doc(members):
    import json

    return json.loads(build_genesis("chain-a", members).to_json())


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.pop("chain_id"), "missing field 'chain_id'"),
        (lambda d: d.update(chain_id="bad id!"), "chain_id"),
        (lambda d: d["members"][1].update(id="n0"), "duplicate member ids"),
        (lambda d: d["members"][0].update(p2p="nowhere"), "members[0].p2p"),
        (lambda d: d["members"][2].update(node_public_key="zz"), "members[2]"),
        (lambda d: d["admins"][0].update(account_id="did:key:zX"), "admins[0]"),
        (lambda d: d["consensus"].update(window=1), "consensus.window"),
        (lambda d: d["consensus"].update(bogus=1), "unknown consensus parameter"),
    ],
)
def test_invalid_genesis_names_the_field(members, mutate, needle):
    doc = copy.deepcopy(_doc(members))
    mutate(doc)
    with pytest.raises(GenesisError) as e:
        parse_genesis(doc, "genesis.json")
    assert needle in str(e.value)


def test_unreadable_genesis_file(tmp_path):
    with pytest.raises(GenesisError, match="not found"):
        load_genesis(tmp_path / "none.json")
    (tmp_path / "g.json").write_text("{")
    with pytest.raises(GenesisError, match="not valid JSON"):
        load_genesis(tmp_path / "g.json")
