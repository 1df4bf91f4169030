// The page's views. Everything the ledger says is untrusted text: it only ever reaches the
// page as text nodes and attribute values (`h` below), never as HTML.

import { ApiError, get, path, readerAccount } from "./api.js";
import { unpack } from "./msgpack.js";
import {
  decodeBlock,
  decodeCertificate,
  decodeTx,
  fromHex,
  hex,
  VerifyError,
  certifiersAt,
  verifyCommitCertificate,
  verifyEntry,
} from "./verify.js";

const RECENT_BLOCKS = 20;

/** An element: h("a", {href: "#/"}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const link = (href, text) => h("a", { href }, text);
const short = (s, n = 16) => (s.length > n + 3 ? `${s.slice(0, n)}…` : s);
const code = (s, full = false) => h("code", { title: s }, full ? s : short(s));
const time = (ms) => h("time", { datetime: new Date(Number(ms)).toISOString() }, new Date(Number(ms)).toISOString().replace("T", " ").replace(".000Z", " UTC").replace(/\.\d+Z$/, " UTC"));

function table(headers, rows, caption) {
  return h(
    "table",
    {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))),
  );
}

/** A definition list of an object's fields, nested objects as nested lists. */
function fields(obj) {
  return h(
    "dl",
    { class: "fields" },
    Object.entries(obj).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, value(v))]),
  );
}

function value(v) {
  if (v instanceof Node) return v;
  if (v instanceof Map) return fields(Object.fromEntries(v));
  if (v instanceof Uint8Array) return code(hex(v));
  if (Array.isArray(v)) {
    if (v.length === 0) return h("span", { class: "muted" }, "none");
    return h("ol", { class: "items" }, v.map((x) => h("li", {}, value(x))));
  }
  if (v !== null && typeof v === "object") return fields(v);
  if (typeof v === "string" && /^[0-9a-f]{64,}$/.test(v)) return code(v);
  if (typeof v === "string" && v.startsWith("did:key:")) return link(`#/account/${encodeURIComponent(v)}`, short(v, 24));
  return h("span", {}, v === null ? "—" : String(v));
}

function mark(ok, text, detail, reason = null) {
  return h(
    "span",
    { class: ok ? "mark ok" : "mark bad", "data-verified": ok ? "yes" : "no", "data-reason": reason, title: detail || text },
    ok ? "✔ " : "✘ ",
    text,
  );
}

export function failure(err) {
  const p = h("p", { class: "error", role: "alert" });
  if (err instanceof ApiError) {
    p.append(`The node refused: ${err.code} (HTTP ${err.status}). ${err.message}`);
    if (err.code === "certificate_required") p.append(" Import the member's client certificate into the browser (README, \"Explorer\").");
    if (["signature_required", "not_a_party", "unknown_account"].includes(err.code)) p.append(" Load the key file of an account that may read this (a party, or an auditor of its member).");
  } else {
    p.append(`Error: ${err.message || err}`);
  }
  return p;
}

// -- decoding for display ------------------------------------------------------------------

function txSummary(raw) {
  try {
    const [unsigned] = unpack(raw);
    const [, type, sender, nonce, expires, body] = unpack(unsigned);
    return { type, sender, nonce, expires, body };
  } catch (e) {
    return { type: "(undecodable)", sender: "", error: e.message };
  }
}

// -- views -----------------------------------------------------------------------------------

export async function head(ctx) {
  const status = await get("/v1/status");
  if (status.height === undefined) {
    // the status route answers anyone, but an outsider only with id, chain and readiness
    throw new ApiError(401, "certificate_required", "the node answered as to a client without a member certificate");
  }
  const tip = status.height;
  const from = Math.max(1, tip - RECENT_BLOCKS + 1);
  const rows = tip ? await get(`/v1/chain?from=${from}&to=${tip}`) : [];
  const blocks = await Promise.all(rows.map((r) => get(path`/v1/blocks/${r[0]}`)));
  const recent = rows
    .map((r, i) => [r, blocks[i]])
    .reverse()
    .map(([[height, hash, , txCount], b]) => [
      link(`#/block/${height}`, String(height)),
      code(hash),
      time(b.timestamp_ms),
      String(txCount),
      b.proposer,
    ]);
  return [
    h("h2", {}, "Chain head"),
    fields({
      node: status.id,
      chain: status.chain_id,
      height: tip,
      view: status.view,
      peers: status.peers,
      ready: status.ready,
    }),
    h("h2", {}, "Recent blocks"),
    table(["height", "hash", "time", "transactions", "proposer"], recent, `Blocks ${from}–${tip}`),
  ];
}

export async function block(ctx, height) {
  const b = await get(path`/v1/blocks/${height}`);
  const decoded = decodeBlock(fromHex(b.block_bytes));
  const cert = decodeCertificate(fromHex(b.certificate_bytes));
  let check;
  try {
    if (hex(decoded.hash) !== b.hash) throw new VerifyError("block_hash_mismatch", `the block hashes to ${hex(decoded.hash)}`);
    const epochs = await ctx.epochs(b.height);
    await verifyCommitCertificate(await ctx.genesis(), decoded, cert, epochs);
    const n = certifiersAt(await ctx.genesis(), epochs, b.height).epoch;
    const keys = n === 0 ? "the genesis node keys" : `the node keys of epoch ${n} (this node's membership history)`;
    check = mark(true, "verified", `hash recomputed; ${cert.signatures.length} COMMIT signatures verify against ${keys}`);
  } catch (e) {
    check = mark(false, `NOT verified: ${e.message}`);
  }
  const txRows = decoded.payload.map((raw, i) => {
    const t = txSummary(raw);
    return [String(i), link(`#/tx/${b.transactions[i]}`, short(b.transactions[i])), t.type, value(t.sender)];
  });
  return [
    h("h2", {}, `Block ${b.height}`),
    h("nav", { class: "pager" }, b.height > 1 ? link(`#/block/${b.height - 1}`, "← previous") : "", " ", link(`#/block/${b.height + 1}`, "next →")),
    fields({
      hash: code(b.hash, true),
      prev_hash: code(b.prev_hash, true),
      time: time(b.timestamp_ms),
      proposer: b.proposer,
      state_root_committed: code(b.state_root_committed, true),
      state_root: code(b.state_root, true),
      payload_hash: code(hex(decoded.header.payloadHash), true),
    }),
    h("h3", {}, "Commit certificate ", check),
    table(
      ["signer", "signature"],
      b.certificate.signatures.map(([s, sig]) => [s, code(sig)]),
      `View ${b.certificate.view}: ${b.certificate.signatures.length} COMMIT signatures`,
    ),
    h("h3", {}, "Transactions"),
    table(["index", "id", "type", "sender"], txRows),
  ];
}

export async function tx(ctx, txId) {
  const st = await get(path`/v1/tx/${txId}`);
  const out = [
    h("h2", {}, "Transaction"),
    fields({ id: code(st.id, true), status: st.status, height: st.height ?? null, index: st.index ?? null, reason: st.reason ?? null }),
  ];
  if (st.height) {
    out.push(h("p", {}, link(`#/block/${st.height}`, `in block ${st.height}`)));
    const b = await get(path`/v1/blocks/${st.height}`);
    const raw = decodeBlock(fromHex(b.block_bytes)).payload[st.index];
    let check;
    try {
      await decodeTx(raw, (await ctx.genesis()).chain_id);
      check = mark(true, "signature verifies", "canonical encoding; Ed25519 signature by the key it carries (the ledger checked that key is the sender's)");
    } catch (e) {
      if (!(e instanceof VerifyError)) throw e;
      check = mark(false, `NOT verified: ${e.message}`, null, e.reason);
    }
    const t = txSummary(raw);
    out.push(
      h("h3", {}, "Signed body ", check),
      fields({ type: t.type, sender: t.sender, nonce: t.nonce, expires_at_ms: t.expires, body: t.body }),
    );
  }
  return out;
}

export async function datasets(ctx) {
  const found = await get("/v1/datasets?limit=100&include_withdrawn=1");
  return [
    h("h2", {}, "Datasets"),
    table(
      ["id", "title", "supplier", "status", "size"],
      found.datasets.map((d) => [link(`#/dataset/${encodeURIComponent(d.id)}`, d.id), d.title, value(d.supplier), d.status, `${d.size_bytes} bytes`]),
      `As of block ${found.as_of_height}`,
    ),
  ];
}

export async function dataset(ctx, id) {
  const d = await get(path`/v1/datasets/${id}`);
  const record = d.supplier_record ? [h("h3", {}, "Supplier's track record"), fields(d.supplier_record)] : [];
  return [h("h2", {}, `Dataset ${id}`), fields(d.dataset), ...record, h("p", {}, link(`#/audit/dataset/${encodeURIComponent(id)}`, "audit trail (signed by its supplier)"))];
}

export async function account(ctx, id) {
  const a = await get(path`/v1/accounts/${id}`);
  return [h("h2", {}, "Account"), fields(a.account), h("p", {}, link(`#/audit/account/${encodeURIComponent(id)}`, "audit trail (signed by the account)"))];
}

export async function contract(ctx, id) {
  const c = (await get(path`/v1/contracts/${id}`, { signed: true })).contract;
  const versions = c.versions.map((v) =>
    h(
      "section",
      { class: "version", "aria-label": `version ${v.version}` },
      h("h4", {}, `Version ${v.version}`, v.superseded ? " (superseded)" : ""),
      fields({ author: v.author, terms_hash: v.terms_hash, created: v.created }),
      h("details", {}, h("summary", {}, "terms"), fields(v.terms)),
      table(
        ["signed by", "block", "time", "transaction"],
        (v.signatures || []).map((s) => [value(s.account), link(`#/block/${s.height}`, String(s.height)), time(s.time_ms), link(`#/tx/${s.tx_id}`, short(s.tx_id))]),
        "Signatures",
      ),
      v.review ? h("div", {}, h("h5", {}, "Review"), fields(v.review)) : h("p", { class: "muted" }, "no review"),
    ),
  );
  const record = { ...c };
  delete record.versions;
  return [
    h("h2", {}, `Contract ${id}`),
    h("p", { class: "status" }, "status: ", h("strong", { "data-field": "effective_status" }, c.effective_status)),
    fields({
      dataset: link(`#/dataset/${encodeURIComponent(c.dataset_id)}`, c.dataset_id),
      supplier: value(c.supplier),
      consumer: value(c.consumer),
      "current version": c.version,
      downloads: `${c.downloads} of ${c.max_downloads}`,
    }),
    ...(await auditTrail(ctx, "contract", id)),
    h("h3", {}, "Versions"),
    ...versions,
    h("details", {}, h("summary", {}, "the whole contract record"), fields(record)),
  ];
}

export async function audit(ctx, kind, id) {
  return [h("h2", {}, `Audit trail of ${kind} ${id}`), ...(await auditTrail(ctx, kind, id))];
}

async function auditTrail(ctx, kind, id) {
  const entries = [];
  let after = 0;
  for (;;) {
    const page = await get(`${path`/v1/audit/${kind}/${id}`}?proof=1&limit=100&after=${after}`, { signed: true });
    entries.push(...page.entries);
    if (page.entries.length < 100 || page.next_after === null) break;
    after = page.next_after;
  }
  const genesis = await ctx.genesis();
  const rows = [];
  let verified = 0;
  for (const e of entries) {
    let m;
    try {
      const p = await verifyEntry(e, genesis, await ctx.epochs(e.height));
      verified += 1;
      m = mark(true, "verified", `block ${p.height} hash recomputed; ${p.signers.length} of quorum ${p.quorum} COMMIT signatures (${p.signers.join(", ")}) verify; tx at index ${p.index}`);
    } catch (err) {
      if (!(err instanceof VerifyError)) throw err;
      m = mark(false, `NOT verified: ${err.message}`, null, err.reason);
    }
    rows.push(
      h(
        "tr",
        { "data-seq": e.seq, "data-tx": e.tx_id },
        h("td", {}, String(e.seq)),
        h("td", {}, link(`#/block/${e.height}`, String(e.height))),
        h("td", {}, time(e.time_ms)),
        h("td", {}, e.type),
        h("td", {}, value(e.actor)),
        h("td", {}, e.summary),
        h("td", {}, link(`#/tx/${e.tx_id}`, short(e.tx_id))),
        h("td", { class: "check" }, m),
      ),
    );
  }
  return [
    h("h3", {}, "Audit trail"),
    h("p", { class: "summary", "data-verified-count": verified, "data-entry-count": entries.length },
      `${verified} of ${entries.length} entries verified in this browser against their blocks and commit certificates (genesis: ${ctx.genesisSource()}), read as ${readerAccount()}.`),
    h(
      "table",
      { class: "audit" },
      h("thead", {}, h("tr", {}, ["#", "block", "time", "type", "actor", "summary", "transaction", "proof"].map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows),
    ),
  ];
}
