"""``mdtp provenance sign`` and ``mdtp catalog export``: provenance stamps and the catalog's
dataspace export (issue #17).

A capturing system (a line's gateway, registered by its member's admin with the ``capture``
role) runs ``mdtp provenance sign`` with its own key once the supplier has published: it
reads the dataset's plaintext digest and Merkle root from the ledger and writes a stamp
JSON, which the supplier adds with ``mdtp dataset update ID --provenance stamp.json``. When
the capturing system's key is at hand where the data is published, ``mdtp data publish
--captured-by-key FILE --site ... --line ...`` stamps in the same transaction.

``mdtp catalog export --dcat`` writes the catalog (the search filters of ``mdtp dataset
search``), or one ``--dataset``, as DCAT-AP 3 JSON-LD; ``mdtp contract odrl`` is the contract
side (in :mod:`.trading`).
"""

from __future__ import annotations

import argparse
from typing import Any

from mdtp.node.cli import add_command, add_group
from mdtp.node.cli.options import add_client_options, print_json, signing_key
from mdtp.node.cli.output import failed
from mdtp.node.cli.trading import (
    add_provenance_filters,
    parse_time,
    provenance_filters,
    run,
    write_document,
)
from mdtp.node.sdk.trading import TradingClient


def cmd_provenance_sign(args: argparse.Namespace) -> int:
    async def body(t: TradingClient) -> int:
        capturer = signing_key(args)
        start, end = parse_time(args.capture_start), parse_time(args.capture_end)
        stamp = await t.stamp_capture(
            capturer,
            args.dataset,
            site=args.site,
            line=args.line,
            capture_start_ms=start,
            capture_end_ms=end,
            captured_by=args.captured_by,
        )
        doc: dict[str, Any] = {
            k: v.hex() if isinstance(v, bytes) else v for k, v in stamp.to_body().items()
        }
        if args.out:
            write_document(doc, args.out)
            print(f"wrote the provenance stamp of {args.dataset} to {args.out}")
        else:
            print_json(doc)
        return 0

    return run(args, body)


def cmd_catalog_export(args: argparse.Namespace) -> int:
    if not args.dcat:
        return failed(args, "usage", "name the format: --dcat (DCAT-AP 3 JSON-LD)", status=2)

    async def body(t: TradingClient) -> int:
        if args.dataset:
            doc = await t.dataset_dcat(args.dataset)
        else:
            doc = await t.catalog_dcat(
                text=" ".join(args.text) or None,
                tag=args.tag,
                supplier=args.supplier,
                **provenance_filters(args),
                after=args.after,
                limit=args.limit,
            )
        write_document(doc, args.out)
        return 0

    return run(args, body)


def register(sub: Any) -> None:
    prov = add_group(sub, "provenance", "provenance stamps of captured data")
    sp = add_command(
        prov,
        "sign",
        cmd_provenance_sign,
        "the capturing system signs a stamp for a published dataset's content",
    )
    add_client_options(sp, signs=True)
    sp.add_argument("--dataset", required=True, help="the published dataset's id")
    sp.add_argument("--site", required=True, help="site id, e.g. plant-augsburg")
    sp.add_argument("--line", required=True, help="machine or line id, e.g. line-3")
    sp.add_argument("--capture-start", required=True, help="capture start: 2030-01-31, ms, ...")
    sp.add_argument("--capture-end", required=True, help="capture end (same forms)")
    sp.add_argument(
        "--captured-by",
        help="the capturing account (default: the --key's own; after a rotation, its id)",
    )
    sp.add_argument("--out", help="file to write the stamp to (default: stdout)")

    cat = add_group(sub, "catalog", "the catalog as a dataspace sees it")
    sp = add_command(cat, "export", cmd_catalog_export, "export the catalog as DCAT-AP 3 JSON-LD")
    add_client_options(sp, signs=False)
    sp.add_argument("--dcat", action="store_true", help="DCAT-AP 3 JSON-LD (the one format)")
    sp.add_argument("--dataset", help="export this one dataset")
    sp.add_argument("text", nargs="*", help="words that must all occur")
    sp.add_argument("--tag")
    sp.add_argument("--supplier", help="supplier account id")
    sp.add_argument("--after", help="continue after this dataset id (mdtp:nextAfter)")
    sp.add_argument("--limit", type=int)
    sp.add_argument("--out", help="file to write (default: stdout)")
    add_provenance_filters(sp)
