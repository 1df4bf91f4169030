"""The explorer page's files, without a browser: the package ships exactly the files the
route serves, each with its content type and the page's Content-Security-Policy; an unknown
file is a JSON 404; the page loads no script, style or image from anywhere else."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mdtp.node.api import explorer


def static_files() -> set[str]:
    folder = resources.files(explorer.__name__).joinpath("static")
    return {f.name for f in folder.iterdir() if f.is_file()}


def test_the_route_serves_exactly_the_shipped_files() -> None:
    assert set(explorer.ASSETS) == static_files()


def test_the_page_refers_only_to_its_own_files() -> None:
    for name in explorer.ASSETS:
        text = explorer.asset(name).decode()
        assert not re.search(r"https?://", text), name  # no other origin, no CDN
        for ref in re.findall(r'(?:src|href)="([^"#]+)"', text):
            assert ref in explorer.ASSETS or ref == "data:,", (name, ref)  # no favicon
        for ref in re.findall(r'from "\./([^"]+)"', text):
            assert ref in explorer.ASSETS, (name, ref)


async def test_files_are_served_with_their_type_and_the_policy() -> None:
    app = web.Application()
    explorer.add_routes(app)
    async with TestClient(TestServer(app)) as c:
        client: TestClient[Any, Any] = c
        r = await client.get(explorer.PREFIX)
        assert r.status == 200 and r.content_type == "text/html"
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
        assert "connect-src 'self'" in r.headers["Content-Security-Policy"]
        for name, content_type in explorer.ASSETS.items():
            r = await client.get(explorer.PREFIX + name)
            assert r.status == 200 and r.content_type == content_type, name
            assert await r.read() == explorer.asset(name)
        r = await client.get(explorer.PREFIX + "secrets.json")
        assert r.status == 404 and (await r.json())["error"] == "not_found"
