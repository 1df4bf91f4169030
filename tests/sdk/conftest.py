from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.sdk.fake_node import FakeNode, Tls, make_tls, serve


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    return make_tls(tmp_path)


@pytest.fixture
def fake() -> FakeNode:
    return FakeNode()


@pytest.fixture
async def address(fake: FakeNode, tls: Tls) -> AsyncIterator[str]:
    async for addr in serve(fake, tls.ca.parent):
        yield addr
