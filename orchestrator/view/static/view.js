// orchestrator view: live batch numbers, the gallery grid, playback and the review keys.
// Every ledger string is set with textContent (never innerHTML): prompts are hostile input.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

async function postJSON(url, body) {
  const response = await fetch(url, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body), credentials: "same-origin",
  });
  if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
  return response.json();
}

function ago(iso) {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.floor(s)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s ago`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m ago`;
}

// -- live batch numbers (the batches page and the gallery's header) ---------------------------

function markZeros(root) {
  for (const dd of $$("dl.states dd", root)) dd.parentElement.classList.toggle("zero", dd.textContent === "0");
}

function applyLine(section, line) {
  for (const [field, text] of Object.entries(line.cells)) {
    const cell = section.querySelector(`[data-field="${CSS.escape(field)}"]`);
    if (!cell) continue;
    if (field === "last_activity") {
      cell.dataset.iso = text;
      cell.textContent = text === "-" ? text : ago(text);
    } else if (cell.textContent !== text) {
      cell.textContent = text;
    }
  }
  const total = Math.max(1, line.jobs);
  for (const seg of $$("[data-seg]", section)) {
    seg.style.flexGrow = String((line.states[seg.dataset.seg] || 0) / total);
  }
  markZeros(section);
}

function startLive() {
  const sections = $$("section.batch[data-batch]");
  if (!sections.length && document.body.dataset.page !== "batches") return;
  markZeros(document);
  const source = new EventSource("/api/live");
  source.onmessage = (event) => {
    const lines = JSON.parse(event.data);
    document.body.dataset.liveVersion = String((Number(document.body.dataset.liveVersion) || 0) + 1);
    for (const line of lines) {
      const section = $(`section.batch[data-batch="${CSS.escape(line.batch)}"]`);
      if (section) applyLine(section, line);
      else if (document.body.dataset.page === "batches") location.reload();
    }
    if (document.body.dataset.page === "gallery") refreshCards();
  };
}

// States after which a card no longer changes (but for its mark, which this page sets itself).
const SETTLED = new Set(["done", "failed", "rejected", "cancelled", "orphan"]);
let refreshing = false;

async function refreshCards() {
  // The ledger changed: ask again for the cards shown that are still on their way, at most 200,
  // and put each one that moved on in its place (its poster appears once it is done).
  if (refreshing) return;
  const moving = $$("#grid .card").filter((c) => !SETTLED.has(c.dataset.state)).slice(0, 200);
  if (!moving.length) return;
  refreshing = true;
  try {
    const keys = moving.map((c) => c.dataset.key).join(",");
    const batch = encodeURIComponent(document.body.dataset.batch);
    const response = await fetch(`/api/batches/${batch}/jobs?keys=${keys}`);
    if (!response.ok) return;
    for (const c of (await response.json()).cards) {
      const old = moving.find((node) => node.dataset.key === c.key);
      if (!old || (old.dataset.state === c.state && old.dataset.remote === (c.remote_status || "")
        && old.dataset.reason === (c.reason || ""))) continue;  // a waiting card may become blocked
      const node = cardNode(c);
      node.dataset.group = old.dataset.group;
      const focused = document.activeElement === old;
      old.replaceWith(node);
      if (focused) node.focus();
    }
  } finally {
    refreshing = false;
  }
}

// -- marks --------------------------------------------------------------------------------

async function toggleMark(target, key, wanted) {
  const current = target.dataset.mark || null;
  const mark = current === wanted ? null : wanted;
  const answer = await postJSON(`/api/jobs/${encodeURIComponent(key)}/mark`, { mark });
  showMark(target, answer.mark);
  if (document.body.dataset.page === "gallery") countMarks(current, answer.mark);
}

function showMark(target, mark) {
  target.dataset.mark = mark || "";
  target.classList.toggle("pick", mark === "pick");
  target.classList.toggle("reject", mark === "reject");
  for (const button of $$("button[data-set]", target)) {
    button.classList.toggle("on", button.dataset.set === mark);
  }
  const flag = $(".markflag", target);
  if (flag) flag.textContent = mark === "pick" ? "picked" : mark === "reject" ? "rejected" : "";
  if (flag) flag.hidden = !mark;
}

function countMarks(before, after) {
  for (const [mark, step] of [[before, -1], [after, +1]]) {
    const cell = mark && $(`#mark-counts [data-count="${mark}"]`);
    if (cell) cell.textContent = String(Number(cell.textContent) + step);
  }
}

// -- the gallery --------------------------------------------------------------------------

const gallery = { next: undefined, loading: false, generation: 0 };

function cardNode(c) {
  const card = el("div", "card");
  card.tabIndex = 0;
  card.setAttribute("role", "listitem");
  card.dataset.key = c.key;
  card.dataset.state = c.state;
  card.dataset.remote = c.remote_status || "";
  card.dataset.reason = c.reason || "";
  const frame = el("div", "frame");
  const img = el("img");
  img.loading = "lazy";
  img.alt = c.id;
  img.src = `/posters/${encodeURIComponent(c.key)}`;
  frame.append(img, el("span", `badge s-${c.state}`, c.state), el("span", "markflag"));
  if (c.playable) frame.addEventListener("click", () => play(card));
  const meta = el("div", "meta");
  meta.append(el("div", "id", c.id));
  const length = c.seconds ? `${c.seconds} s` : "";
  meta.append(el("div", "facts", [c.model, length, c.price].filter(Boolean).join(" · ")));
  if (c.prompt) meta.append(el("div", "prompt", c.prompt));
  if (c.reason) meta.append(el("div", "reason", c.reason));
  if (c.remote_status || c.sent_at) {
    const status = el("div", "status", `${c.remote_status || c.state}`);
    status.dataset.since = c.sent_at || "";
    status.dataset.label = c.remote_status || c.state;
    meta.append(status);
  }
  const actions = el("div", "actions");
  for (const [mark, label] of [["pick", "Pick"], ["reject", "Reject"]]) {
    const button = el("button", "", label);
    button.type = "button";
    button.dataset.set = mark;
    button.addEventListener("click", () => toggleMark(card, c.key, mark));
    actions.append(button);
  }
  const details = el("a", "", "details");
  details.href = `/jobs/${encodeURIComponent(c.key)}`;
  actions.append(details);
  meta.append(actions);
  card.append(frame, meta);
  showMark(card, c.mark);
  return card;
}

function play(card) {
  const frame = $(".frame", card);
  if ($("video", frame)) return;
  const video = el("video");
  video.controls = true;
  video.autoplay = true;
  video.muted = true;
  video.playsInline = true;
  video.preload = "auto";
  video.poster = `/posters/${encodeURIComponent(card.dataset.key)}`;
  video.src = `/clips/${encodeURIComponent(card.dataset.key)}`;
  $("img", frame).replaceWith(video);
  video.play().catch(() => {});
}

function appendCards(cards) {
  const grid = $("#grid");
  const sort = new URLSearchParams(location.search).get("sort");
  const grouped = !sort || sort === "manifest";  // takes are adjacent only in manifest order
  for (const c of cards) {
    const node = cardNode(c);
    node.dataset.group = c.group;
    const tail = grid.lastElementChild;
    if (!grouped || !tail || tail.dataset.group !== c.group) {
      grid.append(node);
    } else if (tail.classList.contains("group")) {
      $(".takes", tail).append(node);
    } else {
      const group = el("div", "group");
      group.dataset.group = c.group;
      group.append(el("div", "label", `${c.group}: takes side by side`), el("div", "takes"));
      tail.replaceWith(group);
      $(".takes", group).append(tail, node);
    }
  }
}

async function loadPage() {
  if (gallery.loading || gallery.next === null) return;
  gallery.loading = true;
  const generation = gallery.generation;
  const params = new URLSearchParams(location.search);
  for (const [k, v] of [...params]) if (!v) params.delete(k);
  if (gallery.next) params.set("after", gallery.next);
  const batch = document.body.dataset.batch;
  const more = $("#more");
  more.textContent = "loading…";
  try {
    const response = await fetch(`/api/batches/${encodeURIComponent(batch)}/jobs?${params}`);
    if (!response.ok) throw new Error(await response.text());
    const page = await response.json();
    if (generation !== gallery.generation) return;
    appendCards(page.cards);
    gallery.next = page.next;
    const shown = $$(".card", $("#grid")).length;
    more.textContent = page.next ? `${shown} shown, scroll for more` : `${shown} shown`;
    document.body.dataset.loaded = String(shown);
  } catch (error) {
    more.textContent = `could not load: ${error.message}`;
  } finally {
    gallery.loading = false;
  }
  if (generation === gallery.generation && gallery.next && nearEnd()) loadPage();
}

function nearEnd() {
  return $("#more").getBoundingClientRect().top < window.innerHeight + 600;
}

function resetGallery() {
  gallery.generation += 1;
  gallery.next = undefined;
  gallery.loading = false;
  $("#grid").replaceChildren();
  loadPage();
}

function startFilters() {
  const form = $("#filters");
  const params = new URLSearchParams(location.search);
  for (const field of form.elements) if (field.name && params.has(field.name)) field.value = params.get(field.name);
  let timer;
  const changed = () => {
    const next = new URLSearchParams();
    for (const field of form.elements) if (field.name && field.value) next.set(field.name, field.value);
    history.replaceState(null, "", `${location.pathname}${next.size ? "?" + next : ""}`);
    resetGallery();
  };
  form.addEventListener("change", changed);
  form.addEventListener("input", (e) => {
    if (e.target.name !== "q") return;
    clearTimeout(timer);
    timer = setTimeout(changed, 300);
  });
  form.addEventListener("submit", (e) => e.preventDefault());
}

// -- keys: arrows move, p picks, x rejects, Enter plays -----------------------------------

function move(card, key) {
  const cards = $$(".card", $("#grid"));
  const index = cards.indexOf(card);
  if (key === "ArrowLeft" || key === "ArrowRight") return cards[index + (key === "ArrowLeft" ? -1 : 1)];
  const box = card.getBoundingClientRect();
  const down = key === "ArrowDown";
  const candidates = cards.filter((c) => {
    const top = c.getBoundingClientRect().top;
    return down ? top > box.top + 5 : top < box.top - 5;
  });
  const rowTop = down ? Math.min(...candidates.map((c) => c.getBoundingClientRect().top))
    : Math.max(...candidates.map((c) => c.getBoundingClientRect().top));
  const row = candidates.filter((c) => Math.abs(c.getBoundingClientRect().top - rowTop) < 5);
  row.sort((a, b) => Math.abs(a.getBoundingClientRect().left - box.left) - Math.abs(b.getBoundingClientRect().left - box.left));
  return row[0];
}

function onKey(event) {
  if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
  const page = document.body.dataset.page;
  if (page === "job") {
    const job = $("article.job");
    if (event.key === "p" || event.key === "x") toggleMark(job, job.dataset.key, event.key === "p" ? "pick" : "reject");
    return;
  }
  if (page !== "gallery") return;
  const card = document.activeElement && document.activeElement.closest(".card");
  if (event.key.startsWith("Arrow")) {
    const next = card ? move(card, event.key) : $(".card", $("#grid"));
    if (next) { next.focus(); next.scrollIntoView({ block: "nearest" }); event.preventDefault(); }
  } else if (card && (event.key === "p" || event.key === "x")) {
    toggleMark(card, card.dataset.key, event.key === "p" ? "pick" : "reject");
  } else if (card && event.key === "Enter" && card.dataset.state === "done") {
    play(card);
  }
}

// -- reroll -------------------------------------------------------------------------------

async function showReroll(status) {
  const box = $("#reroll-status");
  box.hidden = false;
  const head = status.running ? "reroll running…" : `reroll exited with status ${status.exit_code}`;
  box.textContent = [head, `$ ${status.command}`, ...(status.output || [])].join("\n");
  box.dataset.exitCode = status.running ? "" : String(status.exit_code);
  if (status.running) {  // a long poll: the answer comes when the reroll ends (or in 30 s)
    const batch = encodeURIComponent(document.body.dataset.batch);
    showReroll(await (await fetch(`/api/batches/${batch}/reroll?wait=30`)).json());
  } else if (status.exit_code === 0) {
    resetGallery();
  }
}

function startReroll() {
  const button = $("#reroll");
  if (!button) return;
  button.addEventListener("click", async () => {
    const batch = encodeURIComponent(document.body.dataset.batch);
    try {
      showReroll(await postJSON(`/api/batches/${batch}/reroll`, {}));
    } catch (error) {
      const box = $("#reroll-status");
      box.hidden = false;
      box.textContent = String(error.message);
    }
  });
  fetch(`/api/batches/${encodeURIComponent(document.body.dataset.batch)}/reroll`)
    .then((r) => r.json()).then((s) => { if (s.running || s.exit_code !== null) showReroll(s); });
}

// -- start --------------------------------------------------------------------------------

function tickAges() {
  for (const node of $$("[data-since]")) {
    if (node.dataset.since) node.textContent = `${node.dataset.label}, sent ${ago(node.dataset.since)}`;
  }
  for (const node of $$('[data-field="last_activity"]')) {
    const iso = node.dataset.iso || node.textContent;
    if (iso && iso !== "-" && !Number.isNaN(Date.parse(iso))) {
      node.dataset.iso = iso;
      node.title = iso;
      node.textContent = ago(iso);
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  startLive();
  document.addEventListener("keydown", onKey);
  if (page === "gallery") {
    startFilters();
    startReroll();
    loadPage();
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) loadPage();
    }, { rootMargin: "600px" }).observe($("#more"));
    const spend = $("details.spend");
    spend.addEventListener("toggle", () => {
      const frame = $("iframe", spend);
      if (spend.open && !frame.src) frame.src = frame.dataset.src;
    });
  }
  if (page === "job") {
    const job = $("article.job");
    showMark(job, job.dataset.mark || null);
    for (const button of $$("button[data-set]", job)) {
      button.addEventListener("click", () => toggleMark(job, job.dataset.key, button.dataset.set));
    }
  }
  tickAges();
  setInterval(tickAges, 1000);
});
