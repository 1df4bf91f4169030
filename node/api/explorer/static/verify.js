// Verification of an audit entry in the browser: the same checks, in the same order and with
// the same reason codes, as the Python verifier (node/sdk/audit_verify.py `verify_entry`),
// against the genesis members' node keys:
//
// 1. the block bytes decode (canonical msgpack), the block is for the genesis chain, at the
//    entry's height, hashes (BLAKE2b-256 of "mdtp/v1/header" + its header) to the entry's block
//    hash and has the entry's time;
// 2. the commit certificate decodes, names this block (height and hash), the block's payload
//    matches its header, and 2f+1 distinct genesis members signed COMMIT: Ed25519 over
//    "mdtp/v1/commit" + msgpack([chain id, signer, view, height, block hash]) (WebCrypto);
// 3. the transaction at the entry's index has the entry's tx id (SHA-256 of its signed bytes),
//    decodes as a canonical signed transaction whose signature verifies, and its type and
//    sender are the entry's.

import { blake2b } from "./blake2b.js";
import { DecodeError, equalBytes, pack, unpack, unpackCanonical } from "./msgpack.js";

const text = new TextEncoder();
const HEADER_TAG = text.encode("mdtp/v1/header");
const PAYLOAD_TAG = text.encode("mdtp/v1/payload");
const TAG_COMMIT = text.encode("mdtp/v1/commit");
const TX_TAG = text.encode("mdtp/v1/tx\0");
// consensus/messages.py DEFAULT_LIMITS and consensus/config.py
const LIMITS = {
  messageBytesMax: 64 * 1024 * 1024,
  blockTxsMax: 10_000,
  txBytesMax: 4 * 1024 * 1024,
  itemsMax: 1_024,
};
const NODE_ID_LEN_MAX = 64;
const CHAIN_ID_LEN_MAX = 64;
const HASH_LEN = 32;
const SIGNATURE_LEN = 64;
const INT_MAX = (1n << 63n) - 1n;
const TX_TYPE_MAX_LEN = 40;
const TX_SENDER_MAX_LEN = 64;

export class VerifyError extends Error {
  constructor(reason, message) {
    super(`${reason}: ${message}`);
    this.reason = reason;
    this.detail = message;
  }
}

class FieldError extends Error {}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(s) {
  if (typeof s !== "string" || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new TypeError("not hex");
  }
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

// -- strict field readers (consensus/codec.py) --------------------------------------------

function readInt(v, name, low = 0n, high = INT_MAX) {
  const ok = (typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint";
  if (!ok || BigInt(v) < low || BigInt(v) > high) {
    throw new FieldError(`${name}: integer in [${low}, ${high}] expected`);
  }
  return v;
}

function readBytes(v, name, length = null, lengthMax = 0) {
  if (!(v instanceof Uint8Array)) throw new FieldError(`${name}: bytes expected`);
  if (length !== null && v.length !== length) throw new FieldError(`${name}: ${length} bytes expected`);
  if (length === null && v.length > lengthMax) throw new FieldError(`${name}: at most ${lengthMax} bytes`);
  return v;
}

function readStr(v, name, lengthMax) {
  // Python's len() counts code points
  if (typeof v !== "string" || !(Array.from(v).length >= 1 && Array.from(v).length <= lengthMax)) {
    throw new FieldError(`${name}: string of 1..${lengthMax} expected`);
  }
  return v;
}

function readList(v, name, length = null, lengthMax = 0) {
  if (!Array.isArray(v)) throw new FieldError(`${name}: array expected`);
  if (length !== null && v.length !== length) throw new FieldError(`${name}: ${length} items expected`);
  if (length === null && v.length > lengthMax) throw new FieldError(`${name}: at most ${lengthMax} items`);
  return v;
}

function canonicalValue(bytes) {
  if (bytes.length > LIMITS.messageBytesMax) throw new FieldError("oversize");
  try {
    return unpackCanonical(bytes);
  } catch (e) {
    if (e instanceof DecodeError) throw new FieldError(e.message);
    throw e;
  }
}

// -- blocks and certificates (consensus/block.py, consensus/messages.py) ------------------

export function decodeBlock(bytes) {
  const items = readList(canonicalValue(bytes), "block", 2);
  const h = readList(items[0], "header", 7);
  const header = {
    chainId: readStr(h[0], "header.chain_id", CHAIN_ID_LEN_MAX),
    height: readInt(h[1], "header.height", 1n),
    prevHash: readBytes(h[2], "header.prev_hash", HASH_LEN),
    stateRoot: readBytes(h[3], "header.state_root", HASH_LEN),
    timestampMs: readInt(h[4], "header.timestamp_ms"),
    proposer: readStr(h[5], "header.proposer", NODE_ID_LEN_MAX),
    payloadHash: readBytes(h[6], "header.payload_hash", HASH_LEN),
  };
  const txs = readList(items[1], "block.payload", null, LIMITS.blockTxsMax);
  const payload = txs.map((tx) => readBytes(tx, "block.tx", null, LIMITS.txBytesMax));
  const hash = blake2b(concat(HEADER_TAG, pack(h)));
  return { header, payload, hash };
}

export function payloadHash(payload) {
  return blake2b(concat(PAYLOAD_TAG, pack(payload)));
}

export function decodeCertificate(bytes) {
  const items = readList(canonicalValue(bytes), "commit_cert", 4);
  const signatures = [];
  for (const item of readList(items[3], "commit_cert.signatures", null, LIMITS.itemsMax)) {
    const pair = readList(item, "commit_cert.signatures", 2);
    const signer = readStr(pair[0], "commit_cert.signatures.signer", NODE_ID_LEN_MAX);
    if (signatures.length && !(signer > signatures[signatures.length - 1][0])) {
      throw new FieldError("commit_cert.signatures: signers must be strictly sorted");
    }
    signatures.push([signer, readBytes(pair[1], "commit_cert.signatures.signature", SIGNATURE_LEN)]);
  }
  return {
    view: readInt(items[0], "view"),
    height: readInt(items[1], "height", 1n),
    blockHash: readBytes(items[2], "block_hash", HASH_LEN),
    signatures,
  };
}

export function commitSigningBytes(chainId, signer, view, height, blockHash) {
  return concat(TAG_COMMIT, pack([chainId, signer, view, height, blockHash]));
}

export function quorumSize(n) {
  const f = Math.floor((n - 1) / 3);
  return Math.floor((n + f) / 2) + 1;
}

export async function ed25519Verify(publicKey, data, signature) {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    const key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, [
      "verify",
    ]);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, signature, data);
  } catch {
    return false; // a key WebCrypto refuses is as invalid as a wrong signature
  }
}

/** Who certifies `height`: the members and signing domain of its epoch (consensus/config.py
 * ConsensusConfig.domain). `epochs` is the node's GET /v1/members/history list (every epoch
 * with its members and activation height), or null: genesis alone (epoch 0). */
export function certifiersAt(genesis, epochs, height) {
  let epoch = { epoch: 0, members: genesis.members };
  for (const e of epochs || []) {
    // epoch 0 is the genesis the page verifies against (this node's, or one the user loaded)
    if (e.epoch > 0 && BigInt(e.activation_height) <= BigInt(height)) epoch = e;
  }
  const domain = epoch.epoch === 0 ? genesis.chain_id : `${genesis.chain_id}#${epoch.epoch}`;
  return { epoch: epoch.epoch, members: epoch.members, domain };
}

/** consensus/certificates.py verify_commit_certificate against the members of the block's
 * epoch; throws VerifyError("bad_certificate"). */
export async function verifyCommitCertificate(genesis, block, cert, epochs = null) {
  const fail = (why) => {
    throw new VerifyError("bad_certificate", `the commit certificate does not prove the block: ${why}`);
  };
  const who = certifiersAt(genesis, epochs, block.header.height);
  const members = who.members.map((m) => m.id);
  if (block.header.chainId !== genesis.chain_id) fail("wrong_chain");
  if (BigInt(cert.height) !== BigInt(block.header.height) || !equalBytes(cert.blockHash, block.hash)) {
    fail("digest_mismatch");
  }
  if (!equalBytes(payloadHash(block.payload), block.header.payloadHash)) fail("payload_mismatch");
  const signers = cert.signatures.map(([s]) => s);
  if (new Set(signers).size !== signers.length) fail("duplicate_signer");
  if (signers.some((s) => !members.includes(s))) fail("unknown_signer");
  const needed = quorumSize(members.length);
  if (signers.length < needed) fail(`too_few_signers: ${signers.length} < ${needed}`);
  for (const [signer, sig] of cert.signatures) {
    const member = who.members.find((m) => m.id === signer);
    const data = commitSigningBytes(who.domain, signer, cert.view, cert.height, cert.blockHash);
    if (!(await ed25519Verify(fromHex(member.node_public_key), data, sig))) {
      fail(`bad_signature: ${signer}`);
    }
  }
}

// -- transactions (node/ledger/tx.py decode_tx) ---------------------------------------------

function isMapOrList(v) {
  return v instanceof Map || Array.isArray(v);
}

export async function decodeTx(bytes, chainId) {
  const bad = (why) => {
    throw new VerifyError("bad_tx", `the transaction does not decode: ${why}`);
  };
  const loose = (b, what) => {
    try {
      return unpack(b);
    } catch (e) {
      if (e instanceof DecodeError) return bad(`${what} is not valid msgpack (${e.message})`);
      throw e;
    }
  };
  const outer = loose(bytes, "transaction");
  if (!Array.isArray(outer) || outer.length !== 3 || !outer.every((x) => x instanceof Uint8Array)) {
    bad("transaction must be [unsigned, public_key, signature]");
  }
  const [unsigned, publicKey, signature] = outer;
  if (publicKey.length !== 32 || signature.length !== 64) bad("public key must be 32 bytes and signature 64");
  const inner = loose(unsigned, "unsigned transaction");
  if (!Array.isArray(inner) || inner.length !== 6) bad("unsigned transaction must have 6 fields");
  const [txChain, type, sender, nonce, expiresAtMs, body] = inner;
  if (typeof txChain !== "string" || txChain !== chainId) bad(`transaction is for chain ${JSON.stringify(txChain)}`);
  const len = (s) => Array.from(s).length;
  if (typeof type !== "string" || !(len(type) > 0 && len(type) <= TX_TYPE_MAX_LEN)) bad("bad transaction type");
  if (typeof sender !== "string" || !(len(sender) > 0 && len(sender) <= TX_SENDER_MAX_LEN)) bad("bad sender");
  for (const [name, v] of [["nonce", nonce], ["expires_at_ms", expiresAtMs]]) {
    const isInt = (typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint";
    if (!isInt || BigInt(v) < 0n || BigInt(v) > INT_MAX) bad(`${name} must be a non-negative integer`);
  }
  if (!(body instanceof Map)) bad("body must be a map");
  if (!equalBytes(pack(outer, { sortKeys: true }), bytes) || !equalBytes(pack(inner, { sortKeys: true }), unsigned)) {
    bad("transaction is not canonically encoded");
  }
  if (!(await ed25519Verify(publicKey, concat(TX_TAG, unsigned), signature))) bad("signature does not verify");
  return { chainId: txChain, type, sender, nonce, expiresAtMs, body, publicKey, signature };
}

// -- an audit entry (node/sdk/audit_verify.py verify_entry) ---------------------------------

function entryHex(entry, name) {
  const v = entry[name];
  if (typeof v !== "string") throw new VerifyError("bad_entry", `${name} is missing or not a string`);
  try {
    return fromHex(v);
  } catch {
    throw new VerifyError("bad_entry", `${name} is not hex`);
  }
}

function entryInt(entry, name) {
  const v = entry[name];
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
    throw new VerifyError("bad_entry", `${name} must be a non-negative integer`);
  }
  return v;
}

/** Verify `entry` (an audit entry with proof) against `genesis` (the genesis.json document);
 * returns what it proved, or throws VerifyError with the Python verifier's reason code. */
export async function verifyEntry(entry, genesis, epochs = null) {
  const height = entryInt(entry, "height");
  const index = entryInt(entry, "index");
  const timeMs = entryInt(entry, "time_ms");
  const txId = entryHex(entry, "tx_id");
  const blockHash = entryHex(entry, "block_hash");
  const rawBlock = entryHex(entry, "block_bytes");
  const rawCert = entryHex(entry, "certificate_bytes");
  let block;
  let cert;
  try {
    block = decodeBlock(rawBlock);
  } catch (e) {
    if (e instanceof FieldError) throw new VerifyError("bad_block", `block bytes do not decode: ${e.message}`);
    throw e;
  }
  try {
    cert = decodeCertificate(rawCert);
  } catch (e) {
    if (e instanceof FieldError) throw new VerifyError("bad_certificate", `certificate bytes do not decode: ${e.message}`);
    throw e;
  }
  const header = block.header;
  if (header.chainId !== genesis.chain_id) throw new VerifyError("wrong_chain", `block is for chain ${JSON.stringify(header.chainId)}`);
  if (BigInt(header.height) !== BigInt(height)) {
    throw new VerifyError("height_mismatch", `block is at height ${header.height}, entry ${height}`);
  }
  if (!equalBytes(block.hash, blockHash)) {
    throw new VerifyError("block_hash_mismatch", `the block hashes to ${hex(block.hash)}, not the entry's`);
  }
  if (BigInt(header.timestampMs) !== BigInt(timeMs)) {
    throw new VerifyError("time_mismatch", `block time is ${header.timestampMs}, entry ${timeMs}`);
  }
  await verifyCommitCertificate(genesis, block, cert, epochs);
  if (index >= block.payload.length) throw new VerifyError("bad_index", `the block has ${block.payload.length} transactions`);
  const rawTx = block.payload[index];
  if (!equalBytes(await sha256(rawTx), txId)) {
    throw new VerifyError("tx_mismatch", `transaction ${index} of the block is not ${hex(txId)}`);
  }
  const tx = await decodeTx(rawTx, genesis.chain_id);
  if (tx.type !== entry.type || tx.sender !== entry.actor) {
    throw new VerifyError("tx_mismatch", `the transaction is ${tx.type} by ${tx.sender}, the entry says ${entry.type} by ${entry.actor}`);
  }
  const members = certifiersAt(genesis, epochs, height).members.length;
  return {
    chainId: genesis.chain_id,
    height,
    blockHash: hex(blockHash),
    timeMs,
    view: cert.view,
    signers: cert.signatures.map(([s]) => s),
    quorum: quorumSize(members),
    txId: hex(txId),
    index,
    type: tx.type,
    sender: tx.sender,
  };
}
