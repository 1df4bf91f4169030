// The node's API as the page calls it: same origin, so the browser presents the member's
// client certificate over TLS; confidential routes are signed reads (node/identity/
// signed_read.py), signed here with an account key the user loaded into this page. The key
// stays in this page's memory (a non-extractable WebCrypto key); it is never stored or sent.

import { concat, ed25519Verify, fromHex, hex, sha256 } from "./verify.js";

const READ_TAG = new TextEncoder().encode("mdtp/v1/read\0");
// "302e020100300506032b657004220420": PKCS#8 wrapping of a 32-byte Ed25519 seed
const PKCS8_ED25519 = fromHex("302e020100300506032b657004220420");

export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

let reader = null; // {account, publicKey, key: CryptoKey}
let chainId = null;

export function readerAccount() {
  return reader ? reader.account : null;
}

export function forgetReader() {
  reader = null;
}

/** Load an account key file (the JSON the CLI writes, node/identity/keys.py). */
export async function loadKeyFile(textOfFile) {
  let doc;
  try {
    doc = JSON.parse(textOfFile);
  } catch {
    throw new Error("not a key file (not JSON)");
  }
  if (!doc || doc.type !== "ed25519") throw new Error("not an mdtp Ed25519 key file");
  if (doc.version !== 1) throw new Error(`unsupported key file version ${JSON.stringify(doc.version)}`);
  if (doc.sealed) {
    throw new Error(
      "this key file is passphrase-protected (Argon2id, which browsers do not offer); " +
        "use an unsealed copy of the key on this machine",
    );
  }
  let secret;
  let publicKey;
  try {
    secret = fromHex(doc.secret);
    publicKey = fromHex(doc.public_key);
  } catch {
    throw new Error("malformed key file (secret or public_key is not hex)");
  }
  if (![32, 64].includes(secret.length) || publicKey.length !== 32) {
    throw new Error("malformed key file (key material has the wrong length)");
  }
  if (typeof doc.account_id !== "string" || !doc.account_id.startsWith("did:key:z")) {
    throw new Error("malformed key file (no account_id)");
  }
  const key = await crypto.subtle.importKey(
    "pkcs8",
    concat(PKCS8_ED25519, secret.slice(0, 32)),
    { name: "Ed25519" },
    false,
    ["sign"],
  );
  const probe = crypto.getRandomValues(new Uint8Array(32));
  const sig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key, probe));
  if (!(await ed25519Verify(publicKey, probe, sig))) {
    throw new Error("public key does not match the secret key");
  }
  reader = { account: doc.account_id, publicKey, key };
  return doc.account_id;
}

// Python's json.dumps(..., separators=(",", ":")) with ensure_ascii: non-ASCII as \uXXXX
function pythonJson(value) {
  return JSON.stringify(value).replace(
    /[\u0080-\uffff]/g,
    (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
  );
}

async function signedHeaders(method, url) {
  if (!reader) throw new ApiError(401, "signature_required", "load an account key (top right) to read this");
  if (chainId === null) chainId = (await get("/v1/status")).chain_id;
  const time = Date.now();
  const nonce = hex(crypto.getRandomValues(new Uint8Array(16)));
  const bodyHash = hex(await sha256(new Uint8Array(0)));
  const fields = [chainId, method, url.pathname, url.search.slice(1), bodyHash, reader.account, time, nonce];
  const message = concat(READ_TAG, new TextEncoder().encode(pythonJson(fields)));
  const sig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, reader.key, message));
  return {
    "X-Mdtp-Account": reader.account,
    "X-Mdtp-Time": String(time),
    "X-Mdtp-Nonce": nonce,
    "X-Mdtp-Signature": hex(sig),
  };
}

/** GET a JSON route of this node; `signed` adds the signed-read headers. */
export async function get(path, { signed = false } = {}) {
  const url = new URL(path, window.location.origin);
  const headers = signed ? await signedHeaders("GET", url) : {};
  const response = await fetch(url, { headers, credentials: "same-origin", cache: "no-store" });
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(response.status, "bad_response", "the node did not answer JSON");
  }
  if (!response.ok) {
    throw new ApiError(response.status, body.error || "error", body.message || "");
  }
  return body;
}

/** A path with its segments escaped: path`/v1/blocks/${h}`. */
export function path(strings, ...values) {
  return strings.reduce((out, s, i) => out + s + (i < values.length ? encodeURIComponent(values[i]) : ""), "");
}
