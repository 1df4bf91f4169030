// Unit tests of the page's own codecs, run in the browser at #/selftest (tests/explorer opens
// it): BLAKE2b against RFC 7693 and Python's hashlib, msgpack against msgpack-python's bytes
// (vectors made with msgpack.packb(..., use_bin_type=True)), and what the strict decoder refuses.

import { blake2b } from "./blake2b.js";
import { DecodeError, pack, unpack, unpackCanonical } from "./msgpack.js";
import { fromHex, hex } from "./verify.js";
import { h } from "./views.js";

const text = new TextEncoder();
const pattern = (n) => Uint8Array.from({ length: n }, (_, i) => i % 251);

const BLAKE2B = [
  ["empty", new Uint8Array(0), 32, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"],
  ["abc", text.encode("abc"), 32, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"],
  ["abc, 512 bits (RFC 7693 appendix A)", text.encode("abc"), 64,
    "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"],
  ["one whole block", pattern(128), 32, "c3582f71ebb2be66fa5dd750f80baae97554f3b015663c8be377cfcb2488c1d1"],
  ["a block and a byte", pattern(129), 32, "f7f3c46ba2564ff4c4c162da1f5b605f9f1c4aa6a20652a9f9a337c1a2f5b9c9"],
  ["1000 bytes", pattern(1000), 32, "b372d0608f720c8c3dd41e9c8eecb10143b41abe520b616607e754bf79c08331"],
];

const a = (n) => "61".repeat(n);
const MSGPACK = [
  ["integers", [0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1],
    "dc0013007fcc80ccffcd0100cdffffce00010000ceffffffffcf0000000100000000cf001fffffffffffffffe0d0dfd080d1ff7fd18000d2ffff7fffd280000000d3ffffffff7fffffff"],
  ["64-bit integers", [2n ** 64n - 1n, -(2n ** 63n)], "92cfffffffffffffffffd38000000000000000"],
  ["strings", ["", "a".repeat(31), "a".repeat(32), "a".repeat(255), "a".repeat(256), "é€"],
    `96a0bf${a(31)}d920${a(32)}d9ff${a(255)}da0100${a(256)}a5c3a9e282ac`],
  ["bytes", [new Uint8Array(0), new Uint8Array(255).fill(1), new Uint8Array(256).fill(2)],
    `93c400c4ff${"01".repeat(255)}c50100${"02".repeat(256)}`],
  ["arrays", [[...Array(15).keys()], [...Array(16).keys()], [null, true, false]],
    "939f000102030405060708090a0b0c0d0edc0010000102030405060708090a0b0c0d0e0f93c0c3c2"],
  ["map (keys in order given)", new Map([["b", 1], ["a", [text.encode("x"), new Map([["c", null]])]]]), "82a16201a16192c4017881a163c0"],
];

const REFUSED = [
  ["float64", "cb3ff0000000000000"],
  ["float32", "ca3f800000"],
  ["ext", "d40100"],
  ["trailing bytes", "0000"],
  ["truncated string", "a3616263".slice(0, 6)],
  ["invalid UTF-8", "a1ff"],
  ["non-string map key", "810101"],
  ["reserved type", "c1"],
];

function same(x, y) {
  return hex(pack(x)) === hex(pack(y));
}

export function runSelfTest() {
  const results = [];
  const check = (name, fn) => {
    try {
      const detail = fn();
      results.push([name, detail === true, detail === true ? "" : String(detail)]);
    } catch (e) {
      results.push([name, false, e.message]);
    }
  };
  for (const [name, data, n, want] of BLAKE2B) {
    check(`blake2b ${name}`, () => hex(blake2b(data, n)) === want || hex(blake2b(data, n)));
  }
  for (const [name, value, want] of MSGPACK) {
    check(`msgpack pack ${name}`, () => hex(pack(value)) === want || hex(pack(value)));
    check(`msgpack unpack ${name}`, () => same(unpack(fromHex(want)), value) || "round trip differs");
  }
  check("msgpack pack sorts map keys when asked", () =>
    hex(pack(new Map([["b", 1], ["a", 2]]), { sortKeys: true })) === "82a16102a16201");
  for (const [name, bytes] of REFUSED) {
    check(`msgpack refuses ${name}`, () => {
      try {
        unpack(fromHex(bytes));
      } catch (e) {
        return e instanceof DecodeError || e.message;
      }
      return "accepted";
    });
  }
  check("msgpack refuses a non-shortest integer as not canonical", () => {
    try {
      unpackCanonical(fromHex("cc05"));
    } catch (e) {
      return e instanceof DecodeError || e.message;
    }
    return "accepted";
  });
  const failed = results.filter(([, ok]) => !ok).length;
  return [
    h("h2", {}, "Self-test"),
    h("p", { id: "selftest-summary", "data-passed": results.length - failed, "data-failed": failed },
      `${results.length - failed} passed, ${failed} failed`),
    h("ul", { class: "selftest" }, results.map(([name, ok, detail]) =>
      h("li", { class: ok ? "pass" : "fail" }, `${ok ? "pass" : "FAIL"}: ${name}${detail ? ` (${detail})` : ""}`))),
  ];
}
