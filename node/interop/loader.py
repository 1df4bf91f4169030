"""The JSON-LD document loader: serves the contexts shipped in ``contexts/``, nothing else.

``odrl.jsonld`` is the ODRL 2.2 context as published at https://www.w3.org/ns/odrl.jsonld,
taken from the npm package ``@digitalbazaar/odrl-context`` 1.0.0 (BSD-3-Clause, its licence
beside it). Any other URL is refused, so a processor given one of our documents (or a
document someone sends us) never reaches the network.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

ODRL_CONTEXT_URL = "http://www.w3.org/ns/odrl.jsonld"
_SHIPPED = {
    ODRL_CONTEXT_URL: "odrl.jsonld",
    "https://www.w3.org/ns/odrl.jsonld": "odrl.jsonld",
}


class UnknownContext(ValueError):
    """A document named a remote context this node does not ship."""


@cache
def shipped_context(url: str) -> dict[str, Any]:
    """The shipped document for ``url``; :class:`UnknownContext` for any other."""
    name = _SHIPPED.get(url)
    if name is None:
        raise UnknownContext(f"no shipped JSON-LD context for {url!r} (offline loader)")
    text = resources.files("mdtp.node.interop").joinpath("contexts", name).read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def document_loader(url: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """A pyld document loader (``options={"documentLoader": document_loader}``)."""
    return {
        "contentType": "application/ld+json",
        "contextUrl": None,
        "documentUrl": url,
        "document": shipped_context(url),
    }
