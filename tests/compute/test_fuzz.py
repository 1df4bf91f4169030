"""Hostile input to the clean room's decoders: whatever the bytes or the text, the answer is
a QueryRefused with a documented reason, never another exception."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mdtp.node.compute.check import check_query
from mdtp.node.compute.protocol import decode_query_request
from mdtp.node.compute.reasons import REFUSALS, QueryRefused
from mdtp.node.compute.rule import Rule
from tests.compute.attacks import ALLOWED, COLUMNS, REFUSED, rule

RULE = Rule.from_terms(rule())
FRAGMENTS = [sql for _, sql, _ in REFUSED] + ALLOWED


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.sampled_from(FRAGMENTS).map(lambda s: s[:-7])))
def test_any_text_is_checked_or_refused_with_a_reason(sql: str) -> None:
    try:
        check_query(sql, RULE, COLUMNS)
    except QueryRefused as e:
        assert e.reason in REFUSALS


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_are_decoded_or_refused_with_a_reason(raw: bytes) -> None:
    try:
        decode_query_request(raw, "mdtp-test")
    except QueryRefused as e:
        assert e.reason in REFUSALS
