"""Who may call which API route: one declaration per route, checked before any handler runs.

Three tiers (:data:`POLICY` is the table the README prints):

- ``public``: anyone who completes TLS. ``GET /v1/status``, which answers an outsider
  with the node id, chain id and readiness (what a load balancer or a client about to sign
  needs) and a member with everything; ``GET /v1/openapi.json``, the API's description; and
  the explorer page's static files (``GET /explorer/...``), which hold no data.
- ``member``: a client certificate issued by the consortium CA (checked in the TLS handshake,
  :func:`mdtp.node.identity.pki.api_server_context`) whose ``mdtp://node/<id>`` URI SAN names
  a member of the ledger (or an observer in effect: a regulator's or auditor's node and its
  tools read the chain too). The member's node stores and verifies the whole replicated ledger,
  so its clients read it: blocks, chain, transactions, catalog, accounts; and submit signed
  transactions (the ledger then checks the sender's registered key).
- ``party``: a member certificate *and* a request signed by an account
  (:mod:`mdtp.node.identity.signed_read`) that is a party of the subject (the contract's
  supplier, consumer or a reviewer its terms name; the dataset's supplier; the account
  itself) or an active ``auditor`` of a party's member. Terms, prices, receipts and audit
  trails are confidential between those parties.

Every refusal is a 401/403 (429 when one account floods the replay window) with a stable
reason code, counted in ``mdtp_api_refusals_total{reason}``. Checks run cheapest first and the
replay nonce is claimed last, so no refused request occupies the replay cache.
"""

from __future__ import annotations

import enum
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from mdtp.node.api.common import error
from mdtp.node.identity import pki, signed_read
from mdtp.node.identity.keys import verify_signature
from mdtp.node.ledger.governance.membership import current_epoch
from mdtp.node.ledger.state import ReadableKV
from mdtp.node.ledger.trading import layout, queries
from mdtp.node.ledger.trading.accounts import load_account

# A signed read's clock may differ from the node's by this much; its nonce is remembered for
# twice as long, so a replay inside the window is caught and one outside it is stale.
SKEW_MS = 30_000
# Bounds of the replay cache: per account (a flood by one account is its own problem) and in
# all (members' accounts are registered, so this is far above honest use).
REPLAY_PER_ACCOUNT_MAX = 2_000
REPLAY_MAX = 200_000

READER = web.RequestKey("reader", str)  # the account of a verified signed read
MEMBER = web.RequestKey("member", str)  # the member whose certificate the client presented


class Tier(enum.Enum):
    PUBLIC = "public"
    MEMBER = "member certificate"
    PARTY = "member certificate + signed by a party"


# The accounts that may read a subject (None: no such subject; the handler answers 404).
Parties = Callable[[ReadableKV, web.Request], set[str] | None]


@dataclass(frozen=True)
class Rule:
    tier: Tier
    who: str  # the README's words for who may call it
    parties: Parties | None = None


def _contract_parties(state: ReadableKV, contract_id: str) -> set[str] | None:
    contract = layout.read(state, layout.contract_key(contract_id))
    if contract is None:
        return None
    parties = {str(contract["supplier"]), str(contract["consumer"])}
    for n in range(1, int(contract["version"]) + 1):
        terms = (layout.read(state, layout.version_key(contract_id, n)) or {}).get("terms") or {}
        for role in ("reviewer", "arbiter"):
            if terms.get(role):
                parties.add(str(terms[role]))
    return parties


def contract_readers(state: ReadableKV, contract_id: str) -> set[str]:
    """The accounts that read a contract as parties (supplier, consumer, reviewer, arbiter);
    with :func:`may_read`, also their members' auditors."""
    return _contract_parties(state, contract_id) or set()


def _of_dispute(state: ReadableKV, request: web.Request) -> set[str] | None:
    dispute = layout.read(state, layout.dispute_key(request.match_info["dispute_id"]))
    return None if dispute is None else _contract_parties(state, str(dispute["contract_id"]))


def _dataset_parties(state: ReadableKV, dataset_id: str) -> set[str] | None:
    dataset = layout.read(state, layout.dataset_key(dataset_id))
    return None if dataset is None else {str(dataset["supplier"])}


def _account_parties(state: ReadableKV, account_id: str) -> set[str] | None:
    return None if load_account(state, account_id) is None else {account_id}


def _of_contract(state: ReadableKV, request: web.Request) -> set[str] | None:
    return _contract_parties(state, request.match_info["contract_id"])


def _of_receipt(state: ReadableKV, request: web.Request) -> set[str] | None:
    try:
        receipt_id = bytes.fromhex(request.match_info["receipt_id"])
    except ValueError:
        return None  # the handler names the bad id
    receipt = queries.get_receipt(state, receipt_id)
    return None if receipt is None else _contract_parties(state, str(receipt["contract_id"]))


def _of_audit_subject(state: ReadableKV, request: web.Request) -> set[str] | None:
    kind, subject = request.match_info["kind"], request.match_info["subject_id"]
    if kind == "member":
        # governance is the whole consortium's business: any registered account reads it
        return set()
    of = {"contract": _contract_parties, "dataset": _dataset_parties}.get(kind, _account_parties)
    return of(state, subject) if kind in ("contract", "dataset", "account") else None


def _of_listing(state: ReadableKV, request: web.Request) -> set[str] | None:
    """A contract listing belongs to the account, or the dataset's supplier, it lists (an
    unknown one lists nothing, so the handler answers it)."""
    account, dataset = request.query.get("account"), request.query.get("dataset")
    if account is not None and dataset is None:
        return _account_parties(state, account)
    if dataset is not None and account is None:
        return _dataset_parties(state, dataset)
    return None  # the handler names the bad parameters


def _any_account(_state: ReadableKV, _request: web.Request) -> set[str] | None:
    """Any signer; the handler keeps only the rows the signer may read."""
    return set()


_PUBLIC = Rule(Tier.PUBLIC, "anyone (an outsider gets id, chain id and readiness only)")
_LEDGER = Rule(Tier.MEMBER, "a member's client")


def _party(parties: Parties, who: str) -> Rule:
    return Rule(Tier.PARTY, who, parties)


_CONTRACT_PARTY = (
    "supplier, consumer, reviewer or arbiter of the contract, or an auditor of their member"
)

# (method, route as declared) -> who may call it. A route missing here is refused
# (``no_policy``): adding a route means deciding who may call it.
POLICY: dict[tuple[str, str], Rule] = {
    ("GET", "/v1/status"): _PUBLIC,
    ("GET", "/v1/openapi.json"): Rule(Tier.PUBLIC, "anyone"),
    # The explorer page's own files hold no data; every read the page makes goes to the
    # routes below, with their own rules.
    ("GET", "/explorer/"): Rule(Tier.PUBLIC, "anyone (the page's files; its reads as below)"),
    ("GET", "/explorer/{asset}"): Rule(Tier.PUBLIC, "anyone (as `/explorer/`)"),
    ("POST", "/v1/tx"): _LEDGER,
    ("POST", "/v1/txs"): _LEDGER,
    ("GET", "/v1/tx/{tx_id}"): _LEDGER,
    ("GET", "/v1/blocks/{height}"): _LEDGER,
    ("GET", "/v1/chain"): _LEDGER,
    ("GET", "/v1/evidence"): _LEDGER,
    ("GET", "/v1/genesis"): _LEDGER,
    ("GET", "/v1/reasons"): _LEDGER,
    ("GET", "/v1/accounts/{account_id}"): _LEDGER,
    ("GET", "/v1/accounts/{account_id}/nonce"): _LEDGER,
    ("GET", "/v1/datasets"): _LEDGER,
    ("GET", "/v1/datasets/{dataset_id}"): _LEDGER,
    # The dataspace exports are the same records as the catalog and contract routes, as
    # JSON-LD: the same readers.
    ("GET", "/v1/datasets/{dataset_id}/dcat"): _LEDGER,
    ("GET", "/v1/catalog/dcat"): _LEDGER,
    ("GET", "/v1/contracts"): _party(
        _of_listing, "the listed account or dataset supplier, or an auditor of its member"
    ),
    ("GET", "/v1/contracts/{contract_id}"): _party(_of_contract, _CONTRACT_PARTY),
    ("GET", "/v1/contracts/{contract_id}/receipts"): _party(_of_contract, _CONTRACT_PARTY),
    ("GET", "/v1/contracts/{contract_id}/compute"): _party(_of_contract, _CONTRACT_PARTY),
    ("GET", "/v1/contracts/{contract_id}/odrl"): _party(_of_contract, _CONTRACT_PARTY),
    ("GET", "/v1/receipts/{receipt_id}"): _party(_of_receipt, _CONTRACT_PARTY),
    ("GET", "/v1/disposals/overdue"): _party(
        _any_account, "any account; rows of contracts it may read (as above)"
    ),
    # Billing and disputes: a contract's invoices and disputes are its parties' business; a
    # supplier's track record (counts only) is shown with the catalog.
    ("GET", "/v1/contracts/{contract_id}/invoices"): _party(_of_contract, _CONTRACT_PARTY),
    ("GET", "/v1/contracts/{contract_id}/invoices/{period}"): _party(_of_contract, _CONTRACT_PARTY),
    ("GET", "/v1/invoices/overdue"): _party(
        _any_account, "any account; invoices of contracts it may read (as above)"
    ),
    ("GET", "/v1/contracts/{contract_id}/disputes"): _party(_of_contract, _CONTRACT_PARTY),
    ("GET", "/v1/disputes/{dispute_id}"): _party(_of_dispute, _CONTRACT_PARTY),
    ("GET", "/v1/suppliers/{account_id}/record"): _LEDGER,
    ("GET", "/v1/audit/{kind}/{subject_id}"): _party(
        _of_audit_subject,
        "contract: as above; dataset: its supplier; account: itself; or their member's "
        "auditor; member (governance): any account",
    ),
    ("GET", "/v1/audit/{kind}/{subject_id}/export"): _party(
        _of_audit_subject, "as `/v1/audit/{kind}/{id}`"
    ),
    # Governance: the membership and the proposals concern every member.
    ("GET", "/v1/members"): _LEDGER,
    ("GET", "/v1/members/history"): _LEDGER,
    ("GET", "/v1/proposals"): _LEDGER,
    ("GET", "/v1/proposals/{proposal_id}"): _LEDGER,
    # The chunk service's routes carry their own account signatures in the body (upload
    # envelopes, fetch requests), checked by the chunk service against the ledger.
    ("PUT", "/v1/data/datasets/{dataset_id}/chunks/{index}"): _LEDGER,
    ("PUT", "/v1/data/datasets/{dataset_id}/key"): _LEDGER,
    ("POST", "/v1/data/datasets/{dataset_id}/seal"): _LEDGER,
    ("POST", "/v1/data/fetch"): _LEDGER,
    # The clean room: a query carries the consumer's signature in its body, checked by the
    # supplier's node; refusal counts are the contract parties' business.
    ("POST", "/v1/compute/query"): _LEDGER,
    ("GET", "/v1/compute/contracts/{contract_id}/refusals"): _party(_of_contract, _CONTRACT_PARTY),
}

REFUSALS: dict[str, tuple[int, str]] = {
    "no_policy": (403, "this route has no authorisation rule"),
    "certificate_required": (401, "present a client certificate of a consortium member"),
    "not_a_member": (403, "the client certificate names no member of this chain"),
    "signature_required": (401, "sign the request with a party's account key"),
    "bad_signature": (401, "the request signature is malformed or does not verify"),
    "stale_request": (401, f"the request time is more than {SKEW_MS} ms from the node's"),
    "replayed_request": (401, "this signed request was already used"),
    "unknown_account": (403, "the signing account is not registered"),
    "account_revoked": (403, "the signing account is revoked"),
    "not_a_party": (403, "the signing account may not read this subject"),
    "too_many_reads": (429, "too many signed reads by this account; retry shortly"),
}


class Refused(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in REFUSALS, reason
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def may_read(state: ReadableKV, reader: str, parties: set[str]) -> bool:
    """``reader`` is one of ``parties`` or an active auditor of the member of one of them."""
    if reader in parties:
        return True
    record = load_account(state, reader)
    if record is None or record["kind"] != "user" or "auditor" not in record["roles"]:
        return False
    members = {str(a["member"]) for p in parties if (a := load_account(state, p)) is not None}
    return str(record["member"]) in members


class ReplayGuard:
    """Nonces of signed reads seen in the last ``2 * SKEW_MS``, bounded per account."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], int] = {}
        self._order: deque[tuple[int, tuple[str, str]]] = deque()
        self._per_account: dict[str, int] = {}

    def claim(self, account: str, nonce: str, now_ms: int) -> None:
        while self._order and self._order[0][0] <= now_ms:
            _, old = self._order.popleft()
            del self._seen[old]
            left = self._per_account[old[0]] - 1
            if left:
                self._per_account[old[0]] = left
            else:
                del self._per_account[old[0]]
        key = (account, nonce)
        if key in self._seen:
            raise Refused("replayed_request")
        if self._per_account.get(account, 0) >= REPLAY_PER_ACCOUNT_MAX or len(self._seen) >= (
            REPLAY_MAX
        ):
            raise Refused("too_many_reads")
        forget_at = now_ms + 2 * SKEW_MS
        self._seen[key] = forget_at
        self._order.append((forget_at, key))
        self._per_account[account] = self._per_account.get(account, 0) + 1


@dataclass
class Binding:
    """What the authoriser reads, bound by the route modules that already hold it."""

    state: ReadableKV | None = None
    chain_id: Callable[[], str] | None = None


BINDING = web.AppKey("auth_binding", Binding)
_HEX = re.compile(r"\A[0-9a-f]+\Z")


def bind(app: web.Application, **parts: Any) -> None:
    """Give the authoriser ``state=`` (the committed ledger) or ``chain_id=`` (a callable)."""
    binding = app.setdefault(BINDING, Binding())
    for name, value in parts.items():
        setattr(binding, name, value)


class Authoriser:
    def __init__(self, refusals: Counter, now_ms: Callable[[], int] | None = None) -> None:
        self.refusals = refusals
        self.replay = ReplayGuard()
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        for reason in REFUSALS:  # every series exists from the start, at 0
            refusals.labels(reason)

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self.middleware)

        async def bound(app: web.Application) -> None:
            binding = app.get(BINDING)
            assert binding is not None and binding.state is not None, "auth: no ledger bound"
            assert binding.chain_id is not None, "auth: no chain id bound"

        app.on_startup.append(bound)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            await self.check(request)
        except Refused as e:
            self.refusals.labels(e.reason).inc()
            status, message = REFUSALS[e.reason]
            # a 429 says when to come back, as every other "later" answer of the API does
            headers = {"Retry-After": "1"} if status == 429 else None
            detail = f"{message}{': ' + e.detail if e.detail else ''}"
            return error(status, e.reason, detail, headers)
        response: web.StreamResponse = await handler(request)
        return response

    async def check(self, request: web.Request) -> None:
        resource = request.match_info.route.resource
        if resource is None:
            return  # no route: aiohttp answers 404/405 without running anything
        rule = POLICY.get((request.method, resource.canonical))
        if rule is None:
            if request.method == "HEAD":
                rule = POLICY.get(("GET", resource.canonical))
            if rule is None:
                raise Refused("no_policy", f"{request.method} {resource.canonical}")
        binding = request.app[BINDING]
        assert binding.state is not None and binding.chain_id is not None
        member = self.member(request, binding.state)
        if member is not None:
            request[MEMBER] = member
        if rule.tier is Tier.PUBLIC:
            return
        if member is None:
            raise Refused("certificate_required")
        if rule.tier is Tier.MEMBER:
            return
        assert rule.parties is not None
        request[READER] = await self.reader(request, binding.state, binding.chain_id(), rule)

    @staticmethod
    def member(request: web.Request, state: ReadableKV) -> str | None:
        """The member the client certificate names; None without one. The TLS handshake
        already refused a certificate the consortium CA did not issue."""
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            return None
        node_id = pki.node_id_of_der(der)
        record = None if node_id is None else layout.read(state, layout.member_key(node_id))
        if record is None and node_id is not None and current_epoch(state).observer(node_id):
            return node_id  # an observer in effect (a regulator, an auditor) reads too
        # a member removed by governance keeps its record, marked removed
        if record is None or record.get("status") == "removed":
            raise Refused("not_a_member", "" if node_id is None else f"no member {node_id!r}")
        return node_id

    async def reader(
        self, request: web.Request, state: ReadableKV, chain_id: str, rule: Rule
    ) -> str:
        """The account that signed the request, once it may read the route's subject."""
        h = request.headers
        if not any(name in h for name in signed_read.HEADERS):
            raise Refused("signature_required")
        account, raw_time = h.get(signed_read.HEADER_ACCOUNT, ""), h.get(signed_read.HEADER_TIME)
        nonce, signature = h.get(signed_read.HEADER_NONCE, ""), h.get(signed_read.HEADER_SIGNATURE)
        if (
            not account
            or raw_time is None
            or not raw_time.isdigit()
            or len(raw_time) > 16
            or len(nonce) != 2 * signed_read.NONCE_LEN
            or not _HEX.match(nonce)
            or signature is None
            or len(signature) != 2 * signed_read.SIGNATURE_LEN
            or not _HEX.match(signature)
        ):
            raise Refused("bad_signature", "malformed signed-read headers")
        now_ms = self._now_ms()
        time_ms = int(raw_time)
        if abs(now_ms - time_ms) > SKEW_MS:
            raise Refused("stale_request", f"request time {time_ms}, node time {now_ms}")
        record = load_account(state, account)
        if record is None:
            raise Refused("unknown_account", account)
        if record["status"] != "active":
            raise Refused("account_revoked", account)
        body = await request.read() if request.can_read_body else b""
        message = signed_read.message(
            chain_id,
            request.method,
            request.rel_url.raw_path,
            request.rel_url.raw_query_string,
            body,
            account,
            time_ms,
            bytes.fromhex(nonce),
        )
        if not verify_signature(bytes(record["public_key"]), message, bytes.fromhex(signature)):
            raise Refused("bad_signature", "the signature does not verify with the account's key")
        assert rule.parties is not None
        parties = rule.parties(state, request)
        if parties and not may_read(state, account, parties):
            raise Refused("not_a_party", account)
        self.replay.claim(account, nonce, now_ms)
        return account
