// The explorer's router and page state: which genesis the page verifies against (this node's
// GET /v1/genesis, or a genesis.json the user loads), and the account key for signed reads.

import { get, loadKeyFile, readerAccount } from "./api.js";
import { runSelfTest } from "./selftest.js";
import * as views from "./views.js";
import { fromHex } from "./verify.js";

const state = { genesis: null, genesisFrom: null, epochs: null };

function checkGenesis(doc) {
  if (!doc || typeof doc.chain_id !== "string" || !Array.isArray(doc.members) || doc.members.length < 1) {
    throw new Error("not a genesis document (chain_id and members expected)");
  }
  for (const m of doc.members) {
    if (typeof m.id !== "string" || fromHex(m.node_public_key).length !== 32) {
      throw new Error(`member ${JSON.stringify(m.id)}: node_public_key must be 32 bytes of hex`);
    }
  }
  return doc;
}

const ctx = {
  async genesis() {
    if (state.genesis === null) {
      state.genesis = checkGenesis(await get("/v1/genesis"));
      state.genesisFrom = "this node's /v1/genesis";
    }
    return state.genesis;
  },
  // The membership epochs as this node reports them (GET /v1/members/history): a block after a
  // change is checked against its own epoch's members. Fetched again for a later height.
  async epochs(height) {
    if (state.epochs === null || BigInt(height) > BigInt(state.epochs.as_of_height)) {
      state.epochs = await get("/v1/members/history");
    }
    return state.epochs.epochs;
  },
  genesisSource() {
    return state.genesisFrom || "not loaded";
  },
};

const routes = [
  [/^$/, (c) => views.head(c)],
  [/^block\/(\d+)$/, (c, m) => views.block(c, Number(m[1]))],
  [/^tx\/([0-9a-f]{64})$/, (c, m) => views.tx(c, m[1])],
  [/^datasets$/, (c) => views.datasets(c)],
  [/^dataset\/(.+)$/, (c, m) => views.dataset(c, m[1])],
  [/^account\/(.+)$/, (c, m) => views.account(c, m[1])],
  [/^contract\/(.+)$/, (c, m) => views.contract(c, m[1])],
  [/^audit\/(contract|dataset|account)\/(.+)$/, (c, m) => views.audit(c, m[1], m[2])],
  [/^selftest$/, () => runSelfTest()],
];

let rendering = 0;

async function render() {
  const main = document.getElementById("main");
  const route = decodeURIComponent(window.location.hash.replace(/^#\/?/, ""));
  const mine = ++rendering;
  main.setAttribute("aria-busy", "true");
  main.replaceChildren(views.h("p", { class: "muted" }, "Loading…"));
  let content;
  try {
    const found = routes.find(([re]) => re.test(route));
    content = found
      ? await found[1](ctx, route.match(found[0]))
      : [views.h("p", { class: "error" }, `No such page: #/${route}`)];
  } catch (e) {
    content = [views.failure(e)];
  }
  if (mine !== rendering) return; // a newer navigation won
  main.replaceChildren(...content);
  main.setAttribute("aria-busy", "false");
  main.dataset.route = route;
  document.getElementById("key-status").textContent = readerAccount() ? `reading as ${readerAccount()}` : "no account key loaded";
  document.getElementById("genesis-status").textContent = `genesis: ${ctx.genesisSource()}`;
}

function go(event) {
  event.preventDefault();
  const q = document.getElementById("q").value.trim();
  if (/^\d+$/.test(q)) window.location.hash = `#/block/${q}`;
  else if (/^[0-9a-f]{64}$/i.test(q)) window.location.hash = `#/tx/${q.toLowerCase()}`;
  else if (q.startsWith("did:key:")) window.location.hash = `#/account/${encodeURIComponent(q)}`;
  else if (q) window.location.hash = `#/contract/${encodeURIComponent(q)}`;
}

async function readFile(input) {
  const file = input.files && input.files[0];
  input.value = "";
  return file ? file.text() : null;
}

async function onKey(event) {
  const message = document.getElementById("key-status");
  try {
    const text = await readFile(event.target);
    if (text === null) return;
    await loadKeyFile(text);
  } catch (e) {
    message.textContent = `key not loaded: ${e.message}`;
    return;
  }
  await render();
}

async function onGenesis(event) {
  const message = document.getElementById("genesis-status");
  try {
    const text = await readFile(event.target);
    if (text === null) return;
    state.genesis = checkGenesis(JSON.parse(text));
    state.genesisFrom = `your file (chain ${state.genesis.chain_id})`;
  } catch (e) {
    message.textContent = `genesis not loaded: ${e.message}`;
    return;
  }
  await render();
}

window.addEventListener("hashchange", render);
document.getElementById("search").addEventListener("submit", go);
document.getElementById("key-file").addEventListener("change", onKey);
document.getElementById("genesis-file").addEventListener("change", onGenesis);
render();
