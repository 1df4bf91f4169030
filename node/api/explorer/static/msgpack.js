// A small, strict msgpack codec for exactly what the ledger's wire formats use: nil, bool,
// integers, str (UTF-8), bin, arrays and maps with string keys. Floats, ext types, non-string
// map keys and invalid UTF-8 are refused, as are trailing bytes. `pack` writes the encoding
// msgpack-python's `packb(use_bin_type=True)` writes (every value in its shortest form), so
// `unpackCanonical` can check that a value re-encodes to the bytes it came from, like the
// node's `unpack_canonical`. Integers beyond 2^53 decode as BigInt. Maps decode as `Map`
// (insertion order kept, so re-encoding is faithful).

export class DecodeError extends Error {}

const utf8in = new TextDecoder("utf-8", { fatal: true });
const utf8out = new TextEncoder();
const DEPTH_MAX = 16;

function int(n) {
  return n <= BigInt(Number.MAX_SAFE_INTEGER) && n >= BigInt(Number.MIN_SAFE_INTEGER)
    ? Number(n)
    : n;
}

/** Decode one value filling all of `bytes` (Uint8Array); DecodeError on anything else. */
export function unpack(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const need = (n) => {
    if (pos + n > bytes.length) throw new DecodeError("truncated");
    const at = pos;
    pos += n;
    return at;
  };
  const u8 = () => view.getUint8(need(1));
  const u16 = () => view.getUint16(need(2));
  const u32 = () => view.getUint32(need(4));
  const raw = (n) => bytes.slice(need(n), pos);
  const str = (n) => {
    try {
      return utf8in.decode(raw(n));
    } catch {
      throw new DecodeError("invalid UTF-8 in a string");
    }
  };
  const array = (n, depth) => {
    if (depth >= DEPTH_MAX) throw new DecodeError(`nests deeper than ${DEPTH_MAX}`);
    if (n > bytes.length - pos) throw new DecodeError("truncated");
    const out = [];
    for (let i = 0; i < n; i++) out.push(value(depth + 1));
    return out;
  };
  const map = (n, depth) => {
    if (depth >= DEPTH_MAX) throw new DecodeError(`nests deeper than ${DEPTH_MAX}`);
    if (n > bytes.length - pos) throw new DecodeError("truncated");
    const out = new Map();
    for (let i = 0; i < n; i++) {
      const k = value(depth + 1);
      if (typeof k !== "string") throw new DecodeError("map keys must be strings");
      if (out.has(k)) throw new DecodeError("duplicate map key");
      out.set(k, value(depth + 1));
    }
    return out;
  };
  const value = (depth) => {
    const b = u8();
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if ((b & 0xe0) === 0xa0) return str(b & 0x1f);
    if ((b & 0xf0) === 0x90) return array(b & 0x0f, depth);
    if ((b & 0xf0) === 0x80) return map(b & 0x0f, depth);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return raw(u8());
      case 0xc5: return raw(u16());
      case 0xc6: return raw(u32());
      case 0xcc: return u8();
      case 0xcd: return u16();
      case 0xce: return u32();
      case 0xcf: return int(view.getBigUint64(need(8)));
      case 0xd0: return view.getInt8(need(1));
      case 0xd1: return view.getInt16(need(2));
      case 0xd2: return view.getInt32(need(4));
      case 0xd3: return int(view.getBigInt64(need(8)));
      case 0xd9: return str(u8());
      case 0xda: return str(u16());
      case 0xdb: return str(u32());
      case 0xdc: return array(u16(), depth);
      case 0xdd: return array(u32(), depth);
      case 0xde: return map(u16(), depth);
      case 0xdf: return map(u32(), depth);
      default:
        throw new DecodeError(`unsupported msgpack type 0x${b.toString(16)} (float, ext or reserved)`);
    }
  };
  const result = value(0);
  if (pos !== bytes.length) throw new DecodeError("trailing bytes");
  return result;
}

function byCodePoint(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** Encode `v` the way msgpack-python's packb(use_bin_type=True) does; with `sortKeys`, maps
 * are written with their keys sorted by code point (the ledger's canonical transactions). */
export function pack(v, { sortKeys = false } = {}) {
  const out = [];
  const push = (...bs) => out.push(...bs);
  const be = (n, width) => {
    let x = BigInt(n);
    const bs = [];
    for (let i = 0; i < width; i++) {
      bs.unshift(Number(x & 0xffn));
      x >>= 8n;
    }
    push(...bs);
  };
  const head = (n, small, smallMax, codes) => {
    if (small !== null && n <= smallMax) return push(small | n);
    if (codes[0] !== null && n < 0x100) return push(codes[0], n);
    if (n < 0x10000) return push(codes[1], ...[n >> 8, n & 0xff]);
    if (n < 0x100000000) return (push(codes[2]), be(n, 4));
    throw new RangeError("too long for msgpack");
  };
  const enc = (x) => {
    if (x === null) return push(0xc0);
    if (x === false) return push(0xc2);
    if (x === true) return push(0xc3);
    if (typeof x === "number" || typeof x === "bigint") {
      if (typeof x === "number" && !Number.isInteger(x)) throw new TypeError("floats are not allowed");
      const n = BigInt(x);
      if (n >= 0n) {
        if (n <= 0x7fn) return push(Number(n));
        if (n <= 0xffn) return push(0xcc, Number(n));
        if (n <= 0xffffn) return (push(0xcd), be(n, 2));
        if (n <= 0xffffffffn) return (push(0xce), be(n, 4));
        if (n <= M64) return (push(0xcf), be(n, 8));
        throw new RangeError("integer above 2^64-1");
      }
      if (n >= -32n) return push(Number(n) + 0x100);
      if (n >= -0x80n) return (push(0xd0), be(n & 0xffn, 1));
      if (n >= -0x8000n) return (push(0xd1), be(n & 0xffffn, 2));
      if (n >= -0x80000000n) return (push(0xd2), be(n & 0xffffffffn, 4));
      if (n >= -(1n << 63n)) return (push(0xd3), be(n & M64, 8));
      throw new RangeError("integer below -2^63");
    }
    if (typeof x === "string") {
      const b = utf8out.encode(x);
      head(b.length, 0xa0, 31, [0xd9, 0xda, 0xdb]);
      return pushBytes(b);
    }
    if (x instanceof Uint8Array) {
      head(x.length, null, -1, [0xc4, 0xc5, 0xc6]);
      return pushBytes(x);
    }
    if (Array.isArray(x)) {
      head(x.length, 0x90, 15, [null, 0xdc, 0xdd]);
      for (const item of x) enc(item);
      return;
    }
    if (x instanceof Map) {
      head(x.size, 0x80, 15, [null, 0xde, 0xdf]);
      const entries = [...x];
      if (sortKeys) entries.sort((a, b) => byCodePoint(a[0], b[0]));
      for (const [k, item] of entries) {
        if (typeof k !== "string") throw new TypeError("map keys must be strings");
        enc(k);
        enc(item);
      }
      return;
    }
    throw new TypeError(`cannot pack ${typeof x}`);
  };
  const pushBytes = (b) => {
    for (const byte of b) out.push(byte);
  };
  enc(v);
  return Uint8Array.from(out);
}

const M64 = (1n << 64n) - 1n;

export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Decode untrusted bytes and require the one canonical encoding (re-encoding is identical). */
export function unpackCanonical(bytes) {
  const value = unpack(bytes);
  if (!equalBytes(pack(value), bytes)) throw new DecodeError("not canonically encoded");
  return value;
}
