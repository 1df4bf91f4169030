from mdtp.node.p2p.connlimit import TOO_MANY, TOO_MANY_FROM_ADDRESS, ConnectionCounter


def test_total_and_per_address_bounds_and_release() -> None:
    counter = ConnectionCounter(max_total=3, max_per_address=2)
    assert counter.admit("a") is None and counter.admit("a") is None
    assert counter.admit("a") == TOO_MANY_FROM_ADDRESS
    assert counter.admit("b") is None
    assert counter.admit("c") == TOO_MANY
    counter.release("a")
    assert counter.admit("c") is None
    for address in ("a", "b", "c"):
        counter.release(address)
    assert counter.open == 0 and not counter._by_address  # nothing kept for gone addresses
