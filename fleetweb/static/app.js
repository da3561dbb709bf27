// The fleet page: cards from /api/events (server-sent events), an agent's screen and
// transcript, and the actions. What agents print is only ever set as text (textContent);
// the one HTML the page inserts is the screen, which the server escaped cell by cell.
"use strict";

const RANK = { waiting: 0, failed: 1, unknown: 1, exited: 2, restarting: 3, working: 4, idle: 5, running: 6, stopped: 7 };
const NOTIFY_ON = new Set(["waiting", "failed"]);
const SCREEN_EVERY_MS = 1000;
const $ = (id) => document.getElementById(id);

let cards = [];
let known = new Map(); // name -> the state last seen (notifications fire on a change)
let selected = null;
let view = "screen";
let page = 0;
let screenTimer = null;

function ago(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (seconds >= size) return `${Math.floor(seconds / size)}${unit}`;
  }
  return `${Math.floor(seconds)}s`;
}

function memory(bytes) {
  if (bytes === null || bytes === undefined) return "";
  return bytes >= 1 << 30 ? `${(bytes / (1 << 30)).toFixed(1)} GiB` : `${Math.round(bytes / (1 << 20))} MiB`;
}

function ordered(rows) {
  return [...rows].sort((a, b) => (RANK[a.state] ?? 9) - (RANK[b.state] ?? 9) || a.name.localeCompare(b.name));
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function card(row) {
  const node = el("article", `card st-${row.state}`);
  node.dataset.name = row.name;
  node.dataset.state = row.state;
  node.dataset.host = row.host;
  if (row.name === selected) node.classList.add("selected");
  const top = el("div", "top");
  top.append(el("span", "name", row.name), el("span", "state", `${row.state} ${ago(row.state_since)}`.trim()));
  const facts = el("div", "facts");
  facts.append(el("span", "host", row.host));
  if (row.restarts != null) facts.append(el("span", "restarts", `restarts ${row.restarts}`));
  if (row.memory_bytes != null) facts.append(el("span", "memory", memory(row.memory_bytes)));
  if (row.pid != null) facts.append(el("span", "pid", `pid ${row.pid}`));
  node.append(top, el("div", "last", row.last_line || row.reason || ""), facts);
  node.addEventListener("click", () => open(row.name));
  return node;
}

function notify(row, before) {
  if (!("Notification" in window) || Notification.permission !== "granted" || before === undefined) return;
  const finished = before === "working" && row.state === "idle";
  if (!NOTIFY_ON.has(row.state) && !finished) return;
  const what = finished ? "finished its turn" : `is ${row.state}`;
  new Notification(`${row.name} ${what}`, { body: row.last_line || "", tag: `fleet-${row.name}` });
}

function show(rows) {
  cards = rows;
  for (const row of rows) {
    const before = known.get(row.name);
    if (before !== row.state) notify(row, before);
    known.set(row.name, row.state);
  }
  $("cards").replaceChildren(...ordered(rows).map(card));
  const current = rows.find((row) => row.name === selected);
  if (current) $("detail-state").textContent = current.state;
  options(current && current.state === "waiting" ? current.menu || {} : {});
}

let shownMenu = "{}";

function options(menu) {
  // The menu the agent shows while it waits: one button per entry, answered as `fleet send --answer N`.
  const key = JSON.stringify(menu);
  if (key === shownMenu) return;
  shownMenu = key;
  const buttons = Object.entries(menu).map(([entry, label]) => {
    const button = el("button", "option", `${entry}. ${label}`);
    button.type = "button";
    button.dataset.entry = entry;
    button.addEventListener("click", () => post(agentPath("send"), { message: entry, answer: true }, $("result")));
    return button;
  });
  $("options").replaceChildren(...buttons);
}

function listen() {
  const source = new EventSource("/api/events");
  source.onopen = () => { $("live").textContent = "live"; };
  source.onmessage = (event) => show(JSON.parse(event.data));
  source.onerror = () => { $("live").textContent = "reconnecting…"; };
}

async function screen() {
  if (!selected || view !== "screen") return;
  const name = selected;
  const answer = await fetch(`/api/agents/${encodeURIComponent(name)}/screen`);
  const body = await answer.json();
  if (name !== selected) return;
  const target = $("screen");
  if (answer.ok) {
    // Escaped by the server: every character of the pane is text (see fleetweb/screen.py).
    target.innerHTML = body.html;
  } else {
    target.textContent = body.error;
  }
}

async function transcript() {
  const answer = await fetch(`/api/agents/${encodeURIComponent(selected)}/transcript?page=${page}`);
  const body = await answer.json();
  $("transcript").textContent = answer.ok ? body.lines.join("\n") : body.error;
  $("older").disabled = !answer.ok || !body.older;
  $("newer").disabled = page === 0;
}

function tab(which) {
  view = which;
  $("tab-screen").classList.toggle("on", which === "screen");
  $("tab-transcript").classList.toggle("on", which === "transcript");
  $("screen").hidden = which !== "screen";
  $("transcript-view").hidden = which !== "transcript";
  if (which === "screen") screen(); else { page = 0; transcript(); }
}

function open(name) {
  selected = name;
  $("detail").hidden = false;
  document.querySelector("main").classList.add("open");
  $("detail-name").textContent = name;
  $("result").hidden = true;
  $("screen").textContent = "";
  show(cards);
  tab("screen");
  clearInterval(screenTimer);
  screenTimer = setInterval(screen, SCREEN_EVERY_MS);
  $("detail").scrollIntoView({ block: "nearest" });
}

function close() {
  selected = null;
  options({});
  clearInterval(screenTimer);
  $("detail").hidden = true;
  document.querySelector("main").classList.remove("open");
  show(cards);
}

function said(target, body) {
  const lines = [...(body.lines || [])];
  if (body.error) lines.unshift(body.error);
  target.textContent = lines.join("\n");
  target.classList.toggle("failed", !body.ok);
  target.hidden = false;
}

async function post(path, body, target) {
  target.textContent = "…";
  target.classList.remove("failed");
  target.hidden = false;
  const answer = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body || {}),
    credentials: "same-origin",
  });
  const type = answer.headers.get("content-type") || "";
  said(target, type.includes("json") ? await answer.json() : { ok: false, error: await answer.text() });
  screen();
}

function agentPath(action) {
  return `/api/agents/${encodeURIComponent(selected)}/${action}`;
}

document.addEventListener("DOMContentLoaded", () => {
  $("close").addEventListener("click", close);
  $("tab-screen").addEventListener("click", () => tab("screen"));
  $("tab-transcript").addEventListener("click", () => tab("transcript"));
  $("older").addEventListener("click", () => { page += 1; transcript(); });
  $("newer").addEventListener("click", () => { page = Math.max(0, page - 1); transcript(); });
  $("send-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const message = $("message").value;
    post(agentPath("send"), { message, answer: $("answer").checked }, $("result"))
      .then(() => { if (!$("result").classList.contains("failed")) $("message").value = ""; });
  });
  $("restart-agent").addEventListener("click", () => {
    if (confirm(`Restart ${selected}?`)) post(agentPath("restart"), {}, $("result"));
  });
  $("stop-agent").addEventListener("click", () => {
    if (confirm(`Stop ${selected}?`)) post(agentPath("stop"), {}, $("result"));
  });
  $("restart-fleet").addEventListener("click", () => {
    if (confirm("Restart the whole fleet?")) post("/api/fleet/restart", {}, $("fleet-result"));
  });
  $("notify").addEventListener("click", () => {
    if ("Notification" in window) Notification.requestPermission().then((p) => { $("notify").textContent = `Notify: ${p}`; });
  });
  $("notify").hidden = !("Notification" in window) || Notification.permission === "granted";
  fetch("/api/agents").then((answer) => answer.json()).then(show);
  listen();
  setInterval(() => show(cards), 1000); // the "for how long" keeps counting between events
});
