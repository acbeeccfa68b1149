"use strict";
// Baobab trace viewer. Hash routes (#/thread/NAME, #/search/NAME, #/trace/RUN, #/memory) over the JSON API
// of `baobab ui`, or over the answers inlined in an exported file (window.BAOBAB_DATA).

const EXPORTED = window.BAOBAB_DATA || null;
const LIVE_MS = 1000;  // how often a running thread or search is read again
const viewer = (window.viewer = { cy: null, ready: "" });  // what the browser tests look at
let liveTimer = null;
cytoscape.use(cytoscapeDagre);

async function api(path) {
  if (EXPORTED) {
    const answer = EXPORTED.answers[decodeURIComponent(path)];
    if (answer === undefined) throw new Error("not in this exported file: " + path);
    return answer;
  }
  const response = await fetch(path);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// el("td", {class: "x"}, "text", child): a DOM element with attributes and children.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
}

const seconds = (s) => (s == null ? "…" : s < 0.001 ? Math.round(s * 1e6) + " µs"
  : s < 1 ? (s * 1000).toFixed(1) + " ms" : s.toFixed(2) + " s");
const duration = (span) => seconds(span.ended == null ? null : span.ended - span.started);
const json = (value) => el("pre", {}, typeof value === "string" ? value : JSON.stringify(value, null, 1));
const badge = (status) => el("span", { class: "badge " + status, "data-testid": "status" }, status);
const link = (href, text) => el("a", { href: "#/" + href }, text);
const enc = encodeURIComponent;

// Replace `node`'s children with `children` (nested lists flattened, null and undefined left out).
function fill(node, ...children) {
  node.replaceChildren(...children.flat(4).filter((c) => c !== null && c !== undefined));
  return node;
}

const setView = (...children) => fill(document.getElementById("view"), ...children);

async function showRuns() {
  const runs = await api("/api/runs");
  const section = (title, rows, href, text) =>
    rows.length ? [el("h3", {}, title), rows.map((r) => link(href(r), text(r)))] : [];
  fill(document.getElementById("runs"),
    section("Threads", runs.threads, (t) => "thread/" + enc(t.name), (t) => `${t.name} · ${t.status}`),
    section("Searches", runs.searches, (s) => "search/" + enc(s.name),
      (s) => `${s.name} · ${s.strategy} · ${s.nodes || 0} nodes`),
    section("Agent runs", runs.traces, (r) => "trace/" + enc(r.run), (r) => `${r.name} · ${r.status}`),
    runs.memory ? [el("h3", {}, "Memory"), link("memory", "notes and links")] : []);
}

// ---- spans: agents, model calls, tool calls ----------------------------------------------------------

function spanLine(span) {
  const a = span.attrs;
  if (span.kind === "model") {
    const rate = a.drafted_tokens ? ` · accepted ${a.accepted_tokens}/${a.drafted_tokens} drafted ` +
      `(${Math.round((100 * a.accepted_tokens) / a.drafted_tokens)}%)` : "";
    const first = a.time_to_first_token ? ` (first token ${seconds(a.time_to_first_token)})` : "";
    return `model call (${span.name}) · ${a.prompt_tokens} prompt + ${a.completion_tokens} completion tokens · ` +
      `${duration(span)}${first}${rate}`;
  }
  if (span.kind === "tool") return `tool ${span.name}(${a.arguments}) → ${a.result} · ${duration(span)}`;
  if (span.kind === "agent") return `agent ${span.name} (${a.model || "?"}) · ${duration(span)}`;
  return `${span.kind} ${span.name} · ${duration(span)}`;
}

function spanTree(span, children) {
  return el("div", { class: "span " + span.kind, "data-testid": "span-" + span.kind },
    el("span", {}, spanLine(span)), span.error ? el("span", { class: "error" }, " " + span.error) : null,
    (children.get(span.id) || []).map((c) => spanTree(c, children)));
}

function childrenOf(spans) {
  const children = new Map();
  for (const span of spans) {
    if (!children.has(span.parent)) children.set(span.parent, []);
    children.get(span.parent).push(span);
  }
  return children;
}

// ---- a thread: graph with the path taken, timeline, diff, fork ---------------------------------------

function drawGraph(container, thread, nodeSpans, onPick) {
  const shape = thread.graph || { nodes: [...new Set(thread.writes.map((w) => w.node))], edges: [] };
  const stepNodes = new Map();  // step -> nodes that ran in it
  for (const w of thread.writes) {
    if (!stepNodes.has(w.step)) stepNodes.set(w.step, new Set());
    stepNodes.get(w.step).add(w.node);
  }
  const taken = new Set();
  const steps = [...stepNodes.keys()].sort((a, b) => a - b);
  steps.forEach((step, i) => {
    const before = i === 0 ? ["__start__"] : [...stepNodes.get(steps[i - 1])];
    for (const a of before) for (const b of stepNodes.get(step)) taken.add(a + "->" + b);
  });
  if (thread.status === "done" && steps.length) for (const a of stepNodes.get(steps.at(-1))) taken.add(a + "->__end__");
  const label = (n) => {
    const runs = nodeSpans.filter((s) => s.name === n && s.ended != null);
    const total = runs.reduce((t, s) => t + s.ended - s.started, 0);
    const name = { __start__: "START", __end__: "END" }[n] || n;
    return runs.length ? `${name}\n${runs.length}× ${seconds(total)}` : name;
  };
  const ran = new Set(thread.writes.map((w) => w.node));
  const last = thread.checkpoints.at(-1);
  const next = new Set(["running", "pending", "interrupted"].includes(thread.status) && last ? last.next : []);
  const elements = [
    ...shape.nodes.map((n) => ({ data: { id: n, label: label(n) },
      classes: (ran.has(n) ? "ran" : "") + (next.has(n) ? " next" : "") })),
    ...shape.edges.filter(([a, b]) => shape.nodes.includes(a) && shape.nodes.includes(b)).map(([a, b, kind]) => ({
      data: { id: a + "->" + b, source: a, target: b }, classes: (kind || "edge") + (taken.has(a + "->" + b) ? " taken" : ""),
    })),
  ];
  const cy = cytoscape({
    container, elements, maxZoom: 1.3, layout: { name: "dagre", rankDir: "TB", nodeSep: 30, rankSep: 40 },
    style: [
      { selector: "node", style: { label: "data(label)", "text-wrap": "wrap", "text-valign": "center", shape: "round-rectangle",
        width: 110, height: 40, "font-size": 11, "background-color": "#e5e7eb", "border-width": 1, "border-color": "#9ca3af" } },
      { selector: "node.ran", style: { "background-color": "#bbf7d0", "border-color": "#15803d" } },
      { selector: "node.next", style: { "border-width": 3, "border-style": "dashed", "border-color": "#d97706" } },
      { selector: "node:selected", style: { "border-width": 3, "border-color": "#1d4ed8" } },
      { selector: "edge", style: { "curve-style": "bezier", "target-arrow-shape": "triangle", width: 1, "line-color": "#9ca3af",
        "target-arrow-color": "#9ca3af" } },
      { selector: "edge.route", style: { "line-style": "dashed" } },
      { selector: "edge:loop", style: { "loop-direction": "90deg", "loop-sweep": "-50deg", "control-point-step-size": 70 } },
      { selector: "edge.taken", style: { width: 3, "line-color": "#15803d", "target-arrow-color": "#15803d" } },
    ],
  });
  cy.on("tap", "node", (event) => onPick(event.target.id()));
  return cy;
}

function nodeDetail(thread, nodeSpans, node) {
  const outputs = thread.writes.filter((w) => w.node === node);
  return el("div", { class: "panel", "data-testid": "node-detail" }, el("b", {}, `node ${node}`),
    ` · ran ${outputs.length} time(s)`,
    el("table", {}, el("tr", {}, el("th", {}, "step"), el("th", {}, "time"), el("th", {}, "output")),
      outputs.map((w) => {
        const span = nodeSpans.find((s) => s.attrs.step === w.step && s.attrs.task === w.task);
        return el("tr", { "data-testid": "node-run" }, el("td", {}, String(w.step)),
          el("td", {}, span ? duration(span) : ""), el("td", {}, json(w.data)));
      })));
}

function timeline(thread, nodeSpans, children) {
  const rows = thread.checkpoints.map((c) => {
    const outputs = thread.writes.filter((w) => w.step === c.step);
    return el("tr", { "data-testid": "step-row" }, el("td", {}, String(c.step)),
      el("td", {}, outputs.map((w) => {
        const span = nodeSpans.find((s) => s.attrs.step === w.step && s.attrs.task === w.task);
        return el("div", {}, el("b", { class: w.kind === "error" ? "error" : "" }, w.node),
          span ? ` · ${duration(span)}` : "", json(w.data),
          span ? (children.get(span.id) || []).map((s) => spanTree(s, children)) : null);
      })),
      el("td", {}, c.next.join(", ") || "—", thread.spans.filter((s) => s.kind === "route" && s.attrs.step === c.step)
        .map(routeLine)), el("td", {}, new Date(c.created * 1000).toLocaleTimeString()));
  });
  return el("table", { "data-testid": "timeline" },
    el("tr", {}, el("th", {}, "step"), el("th", {}, "nodes: output, agent, model and tool calls"),
      el("th", {}, "next"), el("th", {}, "committed")), rows);
}

// A routing decision: which router chose what after which node, with its scores and reason when it gave them.
function routeLine(span) {
  const a = span.attrs;
  const scores = Object.entries(a.scores || {}).map(([t, v]) => `${t} ${typeof v === "number" ? v.toFixed(2) : v}`);
  return el("div", { class: "route", "data-testid": "route" }, `${a.router} on ${span.name} → ${a.choice.join(", ")}` +
    (scores.length ? ` (${scores.join(", ")})` : "") + (a.reason ? ` · ${a.reason}` : ""));
}

// The fields that differ between two states; a list that grew shows only what was added.
function diffStates(a, b) {
  const rows = [];
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const before = JSON.stringify(a[key]), after = JSON.stringify(b[key]);
    if (before === after) continue;
    const grew = Array.isArray(a[key]) && Array.isArray(b[key]) && b[key].length > a[key].length &&
      JSON.stringify(b[key].slice(0, a[key].length)) === before;
    rows.push(grew ? { key, change: "appended", before: `${a[key].length} items`, after: b[key].slice(a[key].length) }
      : { key, change: key in a ? (key in b ? "changed" : "removed") : "added", before: a[key], after: b[key] });
  }
  return rows;
}

function checkpointTools(thread) {
  const options = () => thread.checkpoints.map((c) => el("option", { value: c.id }, `step ${c.step} (#${c.id})`));
  const a = el("select", { "data-testid": "diff-a" }, options());
  const b = el("select", { "data-testid": "diff-b" }, options());
  b.selectedIndex = thread.checkpoints.length - 1;
  const out = el("div", {});
  const diff = async () => {
    const [sa, sb] = await Promise.all([api("/api/state/" + a.value), api("/api/state/" + b.value)]);
    const rows = diffStates(sa.state, sb.state);
    fill(out, el("table", { "data-testid": "diff" },
      el("tr", {}, el("th", {}, "field"), el("th", {}, "change"), el("th", {}, `step ${sa.step}`), el("th", {}, `step ${sb.step}`)),
      rows.map((r) => el("tr", { "data-testid": "diff-row" }, el("td", {}, r.key), el("td", {}, r.change),
        el("td", {}, json(r.before)), el("td", {}, json(r.after))))),
    rows.length ? null : el("p", {}, "The two states are equal."),
    sa.exact && sb.exact ? null : el("p", {}, "(replayed without the graph's reducers: pass --app for exact states)"));
  };
  const panel = el("div", { class: "panel" }, el("h3", {}, "Checkpoint diff"),
    el("div", { class: "row" }, a, "→", b, el("button", { onclick: diff, "data-testid": "diff-button" }, "Diff")), out);
  if (EXPORTED) return panel;
  const from = el("select", { "data-testid": "fork-from" }, options());
  from.selectedIndex = thread.checkpoints.length - 1;
  const update = el("input", { placeholder: '{"field": "new value"} (optional)', size: 40, "data-testid": "fork-update" });
  const result = el("span", { "data-testid": "fork-result" });
  const fork = async () => {
    let body;
    try {
      body = { checkpoint: Number(from.value), update: update.value.trim() ? JSON.parse(update.value) : null };
    } catch (e) {
      fill(result, el("span", { class: "error" }, "update: not JSON: " + e.message));
      return;
    }
    const response = await fetch("/api/fork", { method: "POST", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json" } });
    const answer = await response.json();
    fill(result, response.ok ? link("thread/" + enc(answer.thread), "new thread " + answer.thread)
      : el("span", { class: "error" }, answer.error));
    if (response.ok) showRuns();
  };
  return [panel, el("div", { class: "panel" }, el("h3", {}, "Fork"), el("div", { class: "row" }, "from", from, update,
    el("button", { onclick: fork, "data-testid": "fork-button" }, "Fork"), result),
  el("p", {}, "A new pending thread: `baobab run FILE.py:graph --resume NAME` or app.resume(NAME) runs it on."))];
}

async function showThread(name, again = false) {
  const thread = await api("/api/thread/" + enc(name));
  const nodeSpans = thread.spans.filter((s) => s.kind === "node");
  const children = childrenOf(thread.spans);
  const key = JSON.stringify([thread.status, thread.checkpoints.length, thread.spans.length]);
  if (again && key === viewer.key) return scheduleLive(thread.status, () => showThread(name, true), !thread.settled);
  viewer.key = key;
  if (again) showRuns().catch(showError);  // the run list shows statuses too
  const detail = el("div", {});
  const graphBox = el("div", { class: "canvas", "data-testid": "graph" });
  const forked = thread.forked_from ? ` · forked from checkpoint #${thread.forked_from}` : "";
  setView(el("h2", {}, `thread ${thread.name} `, badge(thread.status)),
    el("p", {}, `graph ${thread.graph_name} · ${thread.checkpoints.length} checkpoints${forked}`),
    thread.detail ? json(thread.detail) : null, graphBox, detail,
    el("h3", {}, "Timeline"), timeline(thread, nodeSpans, children), checkpointTools(thread));
  viewer.cy = drawGraph(graphBox, thread, nodeSpans, (node) => fill(detail, nodeDetail(thread, nodeSpans, node)));
  viewer.ready = "thread";
  scheduleLive(thread.status, () => showThread(name, true), !thread.settled);
}

// ---- a search tree ----------------------------------------------------------------------------------

// Tree positions: leaves side by side in depth-first order, parents centred over their children, one row
// per depth, rows spaced so that the tree is about half as tall as wide. Linear in the nodes; cytoscape's
// breadthfirst layout takes about a second at 5,000. Also returns the width, to size marks for the first view.
function treePositions(nodes) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const at = new Map();
  let nextLeaf = 0;
  const stack = [[nodes[0], false]];
  while (stack.length) {
    const [node, visited] = stack.pop();
    const kids = node.children.filter((c) => byId.has(c));
    if (!kids.length) at.set(node.id, { x: 24 * nextLeaf++, y: node.depth });
    else if (visited) {
      const xs = kids.map((c) => at.get(c).x);
      at.set(node.id, { x: (Math.min(...xs) + Math.max(...xs)) / 2, y: node.depth });
    } else {
      stack.push([node, true]);
      for (let i = kids.length - 1; i >= 0; i--) stack.push([byId.get(kids[i]), false]);
    }
  }
  const width = 24 * nextLeaf, depth = Math.max(...nodes.map((n) => n.depth), 1);
  const row = Math.max(60, width / 2 / depth);
  for (const p of at.values()) p.y *= row;
  return { at, width };
}

async function showSearch(name, again = false) {
  const run = await api("/api/search/" + enc(name));
  const key = JSON.stringify([run.status, run.nodes.length, run.spent]);
  if (again && key === viewer.key) return scheduleLive(run.status, () => showSearch(name, true));
  viewer.key = key;
  if (again) showRuns().catch(showError);  // the run list shows statuses too
  const best = new Set(run.best);
  const values = run.nodes.map((n) => n.value);
  const [low, high] = [Math.min(...values, 0), Math.max(...values, 1e-9)];
  // ten colour bands from red (lowest value) to green: a class per band styles faster than a colour per node
  const band = (v) => "v" + Math.min(9, Math.floor((10 * (v - low)) / (high - low)));
  const bands = [...Array(10).keys()].map((i) => ({ selector: "node.v" + i,
    style: { "background-color": `hsl(${i * 13}, 70%, 50%)` } }));
  const box = el("div", { class: "canvas big", "data-testid": "tree" });
  const detail = el("div", {});
  const depth = el("input", { type: "number", min: 0, placeholder: "max depth", "data-testid": "filter-depth" });
  const value = el("input", { type: "number", step: "any", placeholder: "min value", "data-testid": "filter-value" });
  const shown = el("span", { "data-testid": "tree-shown" });
  setView(el("h2", {}, `search ${run.name} `, badge(run.status)),
    el("p", {}, el("span", { "data-testid": "tree-count" }, `${run.nodes.length} nodes`),
      ` · ${run.strategy} · chosen path ${run.best.join(" → ")} · stopped by ${run.result ? run.result.stopped_by : "—"}`),
    el("div", { class: "row" }, "filter:", depth, value, shown), box, detail);
  const { at, width } = treePositions(run.nodes);
  const scale = Math.max(1, width / 1000);  // marks drawn at least a few pixels wide when the whole tree fits
  const big = run.nodes.length > 500;  // labels cost a text measurement per node: only on small trees
  const cy = cytoscape({
    container: box, minZoom: 0.01, maxZoom: 4, textureOnViewport: true, hideEdgesOnViewport: big, pixelRatio: 1,
    elements: {
      nodes: run.nodes.map((n) => ({ data: { id: "n" + n.id, label: String(n.id) }, position: at.get(n.id),
        classes: band(n.value) + (best.has(n.id) ? " best" : "") })),
      edges: run.nodes.filter((n) => n.parent !== null).map((n) => ({
        data: { id: "e" + n.id, source: "n" + n.parent, target: "n" + n.id },
        classes: best.has(n.id) && best.has(n.parent) ? "best" : "" })),
    },
    layout: { name: "preset", fit: true, padding: 10 },
    style: [
      { selector: "node", style: { width: 14 * Math.sqrt(scale), height: 14 * Math.sqrt(scale) } }, ...bands,
      big ? null : { selector: "node", style: { label: "data(label)", "font-size": 8 } },
      { selector: "node.best", style: { "border-width": 3 * scale, "border-color": "#1d4ed8" } },
      { selector: "node:selected", style: { "border-width": 4, "border-color": "#f59e0b" } },
      { selector: "edge", style: { width: scale, "line-color": "#cbd5e1", "curve-style": "haystack" } },
      { selector: "edge.best", style: { width: 4 * scale, "line-color": "#1d4ed8" } },
      { selector: ".hidden", style: { display: "none" } },
    ].filter(Boolean),
  });
  const byId = new Map(run.nodes.map((n) => [n.id, n]));
  const filter = () => {
    if (depth.value === "" && value.value === "" && !cy.nodes(".hidden").length) {
      shown.textContent = `${run.nodes.length} shown`;  // nothing to hide: spare a style pass over every node
      return;
    }
    const maxDepth = depth.value === "" ? Infinity : Number(depth.value);
    const minValue = value.value === "" ? -Infinity : Number(value.value);
    cy.batch(() => cy.nodes().forEach((node) => {
      const n = byId.get(Number(node.id().slice(1)));
      node.toggleClass("hidden", n.depth > maxDepth || (n.id !== 0 && n.value < minValue));
    }));
    shown.textContent = `${cy.nodes().not(".hidden").length} shown`;
  };
  depth.addEventListener("input", filter);
  value.addEventListener("input", filter);
  filter();
  cy.on("tap", "node", (event) => {
    const n = byId.get(Number(event.target.id().slice(1)));
    fill(detail, el("table", { class: "panel", "data-testid": "tree-detail" }, Object.entries(n)
      .filter(([k]) => k !== "children").map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, json(v))))));
  });
  viewer.cy = cy;
  viewer.ready = "search";
  scheduleLive(run.status, () => showSearch(name, true));
}

// ---- an agent run's spans, and the memory graph -----------------------------------------------------

async function showTrace(run) {
  const trace = await api("/api/trace/" + enc(run));
  const children = childrenOf(trace.spans);
  setView(el("h2", {}, `agent run ${run}`), (children.get(null) || []).map((s) => spanTree(s, children)));
  viewer.ready = "trace";
}

// Notes as dots coloured by their first tag; a memory of more than BIG_MEMORY notes draws a note's links
// when it is picked (10,000 notes have tens of thousands of links: all at once would not stay responsive).
const BIG_MEMORY = 1500;

async function showMemory() {
  const memory = await api("/api/memory");
  const big = memory.notes.length > BIG_MEMORY;
  const box = el("div", { class: "canvas big", "data-testid": "memory" });
  const detail = el("div", {});
  const find = el("input", { placeholder: "find a word in notes", size: 30, "data-testid": "memory-find" });
  const found = el("span", { "data-testid": "memory-found" });
  setView(el("h2", {}, "memory"), el("p", { "data-testid": "memory-count" },
    `${memory.notes.length} notes · ${memory.links.length} links` + (big ? " (a note's links show when picked)" : "")),
  el("div", { class: "row" }, find, found), box, detail);
  const byId = new Map(memory.notes.map((n) => [n.id, n]));
  const linksOf = new Map(memory.notes.map((n) => [n.id, []]));
  for (const l of memory.links) if (byId.has(l.source) && byId.has(l.target)) {
    linksOf.get(l.source).push(l);
    linksOf.get(l.target).push(l);
  }
  const tags = [...new Set(memory.notes.map((n) => (n.tags || [])[0] || ""))];
  const tagClass = new Map(tags.map((t, i) => [t, "t" + (i % 10)]));
  const edge = (l) => ({ data: { id: `${l.source}->${l.target}`, source: l.source, target: l.target } });
  // a big memory sits on a square grid, notes of one tag together (cytoscape's grid layout takes ~1 s more)
  const side = Math.ceil(Math.sqrt(memory.notes.length));
  const order = big ? memory.notes.map((n, i) => [(n.tags || [])[0] || "", i]).sort().map(([, i]) => i) : [];
  const at = new Map(order.map((i, k) => [memory.notes[i].id, { x: 20 * (k % side), y: 20 * Math.floor(k / side) }]));
  const cy = cytoscape({
    container: box, minZoom: 0.01, textureOnViewport: true, hideEdgesOnViewport: true, pixelRatio: 1,
    elements: {
      nodes: memory.notes.map((n) => ({ data: { id: n.id, label: (n.keywords || []).slice(0, 2).join(", ") },
        classes: tagClass.get((n.tags || [])[0] || ""), position: at.get(n.id) })),
      edges: big ? [] : memory.links.filter((l) => byId.has(l.source) && byId.has(l.target)).map(edge),
    },
    layout: big ? { name: "preset" } : { name: "cose", animate: false },
    style: [
      { selector: "node", style: { width: 12, height: 12 } },
      big ? null : { selector: "node", style: { label: "data(label)", "font-size": 7 } },
      ...[...Array(10).keys()].map((i) => ({ selector: "node.t" + i,
        style: { "background-color": `hsl(${i * 36}, 65%, 50%)` } })),
      { selector: "node.found", style: { "border-width": 3, "border-color": "#111827" } },
      { selector: "node:selected", style: { "border-width": 4, "border-color": "#f59e0b" } },
      { selector: "edge", style: { width: 1, "line-color": "#94a3b8", "curve-style": "haystack" } },
    ].filter(Boolean),
  });
  find.addEventListener("input", () => {
    const word = find.value.trim().toLowerCase();
    const hit = (n) => word && JSON.stringify([n.content, n.keywords, n.tags, n.context]).toLowerCase().includes(word);
    cy.batch(() => cy.nodes().forEach((node) => node.toggleClass("found", Boolean(hit(byId.get(node.id()))))));
    found.textContent = word ? `${cy.nodes(".found").length} found` : "";
  });
  cy.on("tap", "node", async (event) => {
    const note = byId.get(event.target.id());
    const links = linksOf.get(note.id);
    if (big) cy.batch(() => { cy.edges().remove(); cy.add(links.map(edge)); });
    const other = (l) => (l.source === note.id ? l.target : l.source);
    const { version, content, keywords, tags: noteTags, context, ...rest } = note;
    const history = el("div", {}, "…");
    fill(detail, el("div", { class: "panel", "data-testid": "note-detail" },
      el("h3", {}, `note ${note.id} (version ${version ?? "?"})`), el("p", {}, content),
      el("table", {}, [["keywords", keywords], ["tags", noteTags], ["context", context], ...Object.entries(rest)]
        .map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, json(v ?? ""))))),
      el("h4", {}, `links (${links.length})`), links.map((l) => el("div", { "data-testid": "note-link" },
        `${l.source === note.id ? "→" : "←"} ${other(l)} (${l.kind || "link"}) ${l.reason || ""}`)),
      el("h4", {}, "evolution history"), history));
    try {
      const answer = await api("/api/memory/history/" + enc(note.id));
      fill(history, answer.history.length ? answer.history.map((h) => json(h)) : "never changed");
    } catch (error) {
      fill(history, String(error.message));
    }
  });
  viewer.cy = cy;
  viewer.ready = "memory";
}

// ---- routing and live updates -----------------------------------------------------------------------

// Read the run again while it runs, and a little after (`settling`: its last spans are still being written).
function scheduleLive(status, again, settling = false) {
  const live = status === "running" && !EXPORTED;
  document.getElementById("live").textContent = live ? "● live" : "";
  if ((live || settling) && !EXPORTED) liveTimer = setTimeout(() => again().catch(showError), LIVE_MS);
}

function showError(error) {
  setView(el("p", { class: "error", "data-testid": "error" }, String(error.message || error)));
  viewer.ready = "error";
}

async function route() {
  clearTimeout(liveTimer);
  viewer.ready = "";
  viewer.key = null;
  const hash = location.hash.replace(/^#\/?/, "") || (EXPORTED ? EXPORTED.route : "");
  const [kind, ...rest] = hash.split("/");
  const name = decodeURIComponent(rest.join("/"));
  const views = { thread: showThread, search: showSearch, trace: showTrace, memory: showMemory };
  try {
    await Promise.all([showRuns(), views[kind] ? views[kind](name) : Promise.resolve()]);
  } catch (error) {
    showError(error);
  }
}

window.addEventListener("hashchange", route);
route();
