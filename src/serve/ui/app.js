// The review workbench: list the open queue, show one ticket, accept / correct / dismiss.
// Plain DOM; every text from the server goes in through textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { collection: "", items: [], selected: -1, cursor: null, labels: [], busy: false };

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const init = { credentials: "same-origin", headers: { "Accept": "application/json" }, ...options };
  if (options.body !== undefined) {
    init.method = init.method || "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  const r = await fetch(path, init);
  if (r.status === 401) throw new Unauthorized();
  const data = r.status === 204 ? {} : await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((data.error && data.error.message) || `HTTP ${r.status}`);
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  return q.toString();
}

function showLogin(message) {
  $("app").hidden = true;
  $("login").hidden = false;
  $("logout").hidden = true;
  $("login-error").textContent = message || "";
  $("key").focus();
}

function fill(select, entries, keep) {
  const current = keep ? select.value : "";
  select.replaceChildren();
  const any = document.createElement("option");
  any.value = "";
  any.textContent = "any";
  select.append(any);
  for (const [value, count] of entries) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = count === undefined ? value : `${value} (${count})`;
    select.append(o);
  }
  select.value = current;
}

async function loadCollections() {
  const summary = await api(`/v1/review/summary?${query({ collection: state.collection })}`);
  if (!state.collection) {
    state.collection = summary.collection;
    const list = await api("/v1/collections").catch(() => ({ collections: [] }));
    const names = list.collections.map((c) => c.name);
    if (!names.includes(summary.collection)) names.unshift(summary.collection);
    const sel = $("collection");
    sel.replaceChildren(...names.map((n) => { const o = document.createElement("option"); o.value = n; o.textContent = n; return o; }));
    sel.value = state.collection;
  }
  return summary;
}

async function refresh() {
  const summary = await loadCollections();
  state.labels = summary.labels;
  $("counts").textContent = `${summary.open} open · ${summary.resolved} resolved`;
  fill($("f-reason"), Object.entries(summary.by_reason), true);
  fill($("f-label"), Object.entries(summary.by_label), true);
  state.items = [];
  state.cursor = null;
  state.selected = -1;
  await loadPage();
  $("login").hidden = true;
  $("app").hidden = false;
  select(state.items.length ? 0 : -1);
}

async function loadPage() {
  const params = { collection: state.collection, reason: $("f-reason").value, label: $("f-label").value, limit: 50, cursor: state.cursor };
  const page = await api(`/v1/review?${query(params)}`);
  state.items.push(...page.items);
  state.cursor = page.next_cursor;
  $("more").hidden = !state.cursor;
  renderList();
}

function renderList() {
  const ol = $("items");
  ol.replaceChildren(...state.items.map((item, i) => {
    const li = document.createElement("li");
    li.setAttribute("role", "option");
    li.dataset.index = i;
    li.setAttribute("aria-selected", String(i === state.selected));
    const snippet = document.createElement("span");
    snippet.className = "snippet";
    snippet.textContent = item.text;
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = `${item.category || "—"} · ${pct(item.confidence)} · ${item.review_reason || ""}`;
    li.append(snippet, tag);
    li.addEventListener("click", () => select(i));
    return li;
  }));
}

const pct = (x) => `${Math.round((x || 0) * 100)}%`;

function select(i) {
  state.selected = i;
  closePicker();
  $("action-error").textContent = "";
  for (const li of $("items").children) li.setAttribute("aria-selected", String(Number(li.dataset.index) === i));
  const item = state.items[i];
  $("detail").hidden = !item;
  $("empty").hidden = !!item;
  if (!item) return;
  $("items").children[i]?.scrollIntoView({ block: "nearest" });
  $("t-id").textContent = `ticket ${item.ticket_id}`;
  $("t-created").textContent = item.created_at;
  const src = item.source || {};
  $("t-source").textContent = [src.via, src.helpdesk].filter(Boolean).join(" / ");
  $("t-label").textContent = item.category || "no prediction";
  $("t-conf").textContent = `confidence ${pct(item.confidence)}`;
  $("t-reason").textContent = item.review_reason || "flagged";
  $("t-detail").textContent = item.review_detail || "";
  $("t-text").textContent = item.text;
  const llm = item.llm_answer;
  const llmLine = llm ? `LLM answered ${llm.category || "nothing usable"}${llm.confidence != null ? ` (${pct(llm.confidence)})` : ""}. ` : "No LLM was asked. ";
  $("t-llm").textContent = llmLine + (item.reasoning || "");
  $("t-neighbours").replaceChildren(...item.neighbours.map((n) => {
    const li = document.createElement("li");
    const head = document.createElement("strong");
    head.textContent = n.label;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = ` similarity ${n.score.toFixed(3)} · `;
    const text = document.createElement("span");
    text.textContent = n.text || `(example ${n.id})`;
    li.append(head, score, text);
    return li;
  }));
  $("accept").disabled = !item.category;
}

function move(delta) {
  if (!state.items.length) return;
  select(Math.max(0, Math.min(state.items.length - 1, state.selected + delta)));
}

async function resolve(action, label) {
  const item = state.items[state.selected];
  if (!item || state.busy) return;
  state.busy = true;
  $("action-error").textContent = "";
  try {
    const body = { action, collection: state.collection };
    if (label) body.label = label;
    await api(`/v1/review/${encodeURIComponent(item.id)}`, { body });
    state.items.splice(state.selected, 1);
    renderList();
    const counts = await api(`/v1/review/summary?${query({ collection: state.collection })}`);
    $("counts").textContent = `${counts.open} open · ${counts.resolved} resolved`;
    if (!state.items.length && state.cursor) await loadPage();
    select(Math.min(state.selected, state.items.length - 1));
  } catch (e) {
    if (e instanceof Unauthorized) return showLogin("Signed out: sign in again.");
    $("action-error").textContent = e.message;
  } finally {
    state.busy = false;
  }
}

// The searchable label picker.
let pickerIndex = 0;
function openPicker() {
  if (!state.items[state.selected]) return;
  $("picker").hidden = false;
  $("picker-input").value = "";
  renderPicker();
  $("picker-input").focus();
}
function closePicker() { $("picker").hidden = true; }
function matches() {
  const q = $("picker-input").value.trim().toLowerCase();
  return state.labels.filter((l) => l.toLowerCase().includes(q));
}
function renderPicker() {
  const found = matches();
  pickerIndex = Math.min(pickerIndex, Math.max(0, found.length - 1));
  $("picker-list").replaceChildren(...found.map((l, i) => {
    const li = document.createElement("li");
    li.setAttribute("role", "option");
    li.textContent = l;
    li.setAttribute("aria-selected", String(i === pickerIndex));
    li.addEventListener("click", () => choose(l));
    return li;
  }));
}
function choose(label) {
  closePicker();
  resolve("correct", label);
}

function onKey(e) {
  if (e.target === $("picker-input")) {
    const found = matches();
    if (e.key === "Escape") { closePicker(); e.preventDefault(); }
    else if (e.key === "ArrowDown") { pickerIndex = Math.min(found.length - 1, pickerIndex + 1); renderPicker(); e.preventDefault(); }
    else if (e.key === "ArrowUp") { pickerIndex = Math.max(0, pickerIndex - 1); renderPicker(); e.preventDefault(); }
    else if (e.key === "Enter") { if (found[pickerIndex]) choose(found[pickerIndex]); e.preventDefault(); }
    return;
  }
  if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement || e.ctrlKey || e.metaKey || e.altKey) return;
  const keys = { a: () => resolve("accept"), c: openPicker, d: () => resolve("dismiss"), j: () => move(1), k: () => move(-1), ArrowDown: () => move(1), ArrowUp: () => move(-1) };
  if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
}

async function start() {
  try {
    await refresh();
    const session = await api("/ui/session").catch(() => ({ key_required: true }));
    $("logout").hidden = !session.key_required;
  } catch (e) {
    if (e instanceof Unauthorized) showLogin();
    else { $("app").hidden = false; $("empty").textContent = e.message; }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("/ui/login", { body: { key: $("key").value } });
      $("key").value = "";
      await start();
    } catch (err) {
      $("login-error").textContent = err instanceof Unauthorized ? "Wrong API key." : err.message;
    }
  });
  $("logout").addEventListener("click", async () => { await api("/ui/logout", { body: {} }).catch(() => {}); showLogin(); });
  $("collection").addEventListener("change", () => { state.collection = $("collection").value; refresh().catch((e) => ($("empty").textContent = e.message)); });
  for (const f of ["f-reason", "f-label"]) $(f).addEventListener("change", () => { state.items = []; state.cursor = null; loadPage().then(() => select(state.items.length ? 0 : -1)); });
  $("more").addEventListener("click", () => loadPage());
  $("accept").addEventListener("click", () => resolve("accept"));
  $("correct").addEventListener("click", openPicker);
  $("dismiss").addEventListener("click", () => resolve("dismiss"));
  $("picker-input").addEventListener("input", () => { pickerIndex = 0; renderPicker(); });
  document.addEventListener("keydown", onKey);
  start();
});
