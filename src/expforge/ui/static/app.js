// expforge ui: the little behaviour the pages need. No framework; every page works without it except plots.
"use strict";

const STATES = ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "SKIPPED", "UPSTREAM_FAILED", "CANCELLED"];
const POLL_MS = 2000;

function setState(el, state) {
  STATES.forEach((s) => el.classList.remove(s));
  el.classList.add(state);
}

// -- Runs: select rows, then Compare ------------------------------------------------------------------------
function initRuns() {
  const button = document.getElementById("compare-button");
  if (!button) return;
  const picked = () => [...document.querySelectorAll("input.pick:checked")].map((i) => i.value);
  document.querySelectorAll("input.pick").forEach((box) =>
    box.addEventListener("change", () => { button.disabled = picked().length < 2; }));
  button.addEventListener("click", () => {
    const ids = picked();
    if (ids.length >= 2) window.location = "/compare?" + ids.map((i) => "ids=" + encodeURIComponent(i)).join("&");
  });
}

// -- Run: click a task, note/tags, live states -----------------------------------------------------------------
async function showTask(runId, key) {
  const panel = document.getElementById("task-panel");
  if (!panel) return;
  document.querySelectorAll("svg.graph .selected").forEach((el) => el.classList.remove("selected"));
  document.querySelectorAll(`svg.graph [data-key="${CSS.escape(key)}"]`).forEach((el) => el.classList.add("selected"));
  panel.dataset.selected = key;
  const response = await fetch(`/fragments/task?run=${encodeURIComponent(runId)}&key=${encodeURIComponent(key)}`);
  if (response.ok) {
    panel.innerHTML = await response.text();  // server-rendered, escaped by the template
  } else {
    const error = document.createElement("p");
    error.className = "error";
    error.textContent = `${response.status}: could not load ${key}`;
    panel.replaceChildren(error);
  }
  const url = new URL(window.location);
  url.searchParams.set("task", key);
  history.replaceState(null, "", url);
}

function nodeSummary(node, tasks) {
  const keys = [...node.querySelectorAll(".chip")].map((c) => c.dataset.key);
  if (!keys.length) return null;
  const done = keys.filter((k) => tasks[k] && tasks[k].state === "SUCCEEDED").length;
  return `${done}/${keys.length} succeeded`;
}

function worst(states) {
  const order = ["FAILED", "UPSTREAM_FAILED", "CANCELLED", "RUNNING", "PENDING", "SUCCEEDED", "SKIPPED"];
  return order.find((s) => states.includes(s)) || "PENDING";
}

async function poll(runId) {
  const response = await fetch(`/api/runs/${encodeURIComponent(runId)}/status`);
  if (!response.ok) return true;
  const status = await response.json();
  const known = new Set([...document.querySelectorAll("svg.graph [data-key]")].map((e) => e.dataset.key));
  const appeared = Object.keys(status.tasks).some((k) => !known.has(k));
  document.querySelectorAll("svg.graph .node").forEach((node) => {
    const chips = [...node.querySelectorAll(".chip")];
    if (chips.length) {
      chips.forEach((chip) => { const t = status.tasks[chip.dataset.key]; if (t) setState(chip, t.state); });
      setState(node, worst(chips.map((c) => (status.tasks[c.dataset.key] || {}).state || "PENDING")));
      const sub = node.querySelector("text.sub"); const text = nodeSummary(node, status.tasks);
      if (sub && text) sub.textContent = text;
    } else {
      const t = status.tasks[node.dataset.key];
      if (t) setState(node, t.state);
    }
  });
  const badge = document.getElementById("run-state");
  if (badge) { setState(badge, status.state); badge.textContent = status.state.toLowerCase(); }
  if (status.state !== "RUNNING" || appeared) { window.location.reload(); return false; }
  return true;
}

function initRun() {
  const head = document.getElementById("run-head");
  if (!head) return;
  const runId = head.dataset.run;
  document.querySelectorAll("svg.graph .node").forEach((node) => {
    node.addEventListener("click", (event) => {
      const target = event.target.closest("[data-key]");
      if (target) showTask(runId, target.dataset.key);
    });
    node.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && node.dataset.key) showTask(runId, node.dataset.key);
    });
  });
  const panel = document.getElementById("task-panel");
  if (panel && panel.dataset.selected) showTask(runId, panel.dataset.selected);
  initNoteForm();
  if (head.dataset.state === "RUNNING") {
    const tick = async () => { if (await poll(runId)) setTimeout(tick, POLL_MS); };
    setTimeout(tick, POLL_MS);
  }
}

function initNoteForm() {
  const form = document.getElementById("note-form");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { note: form.note.value, tags: {} };
    const tag = form.tag.value.trim();
    if (tag) {
      const at = tag.indexOf("=");
      if (at < 1) { document.getElementById("note-status").textContent = "a tag is key=value"; return; }
      body.tags[tag.slice(0, at).trim()] = tag.slice(at + 1).trim();
    }
    const response = await fetch(`/api/runs/${encodeURIComponent(form.dataset.run)}`, {
      method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const status = document.getElementById("note-status");
    if (!response.ok) { status.textContent = (await response.json()).detail; return; }
    const saved = await response.json();
    form.tag.value = "";
    const tags = document.getElementById("tags");
    tags.replaceChildren(...Object.entries(saved.tags).sort().map(([k, v]) => {
      const span = document.createElement("span");
      span.className = "tag";
      span.textContent = `${k}=${v}`;
      return span;
    }));
    status.textContent = "saved";
  });
}

// -- Compare: overlaid curves ------------------------------------------------------------------------------------
const PALETTE = ["#2f6fde", "#e4572e", "#17a398", "#f3a712", "#8e5ad7", "#5c6b73", "#d1495b", "#00798c", "#66a182", "#edae49"];

function shortId(runId) {
  // mnist-baseline-20261201-090101-b50ec0 → b50ec0 (the CLI's short id)
  const match = runId.match(/-\d{8}-\d{6}-([0-9a-f]{4,})(\/.*)?$/);
  return match ? match[1] + (match[2] || "") : runId;
}

function initCompare() {
  const source = document.getElementById("compare-data");
  if (!source || !window.Plotly) return;
  const data = JSON.parse(source.textContent);
  const colour = {};
  data.run_ids.forEach((id, i) => { colour[id] = PALETTE[i % PALETTE.length]; });
  const estimated = data.curves.some((c) => c.time_estimated);
  const draw = (axis) => {
    document.getElementById("time-note").textContent =
      axis === "time" && estimated ? "some runs record no per-epoch time: their epochs are spread over the task's runtime" : "";
    for (const [plot, kind] of [["loss-plot", "loss"], ["accuracy-plot", "accuracy"]]) {
      const traces = data.curves.filter((c) => c.metric.endsWith(kind)).map((c) => ({
        x: axis === "time" ? c.seconds : c.epochs, y: c.values, mode: "lines+markers", type: "scatter",
        name: `${shortId(c.run_id)}${c.source ? " " + c.source : ""} · ${c.metric}`,
        line: { color: colour[c.run_id], dash: c.metric.startsWith("train") ? "dot" : "solid", width: 2 },
        marker: { size: 5 },
      }));
      Plotly.react(plot, traces, {
        title: { text: kind === "loss" ? "Loss (train dotted, val solid)" : "Accuracy (train dotted, val solid)", font: { size: 14 } },
        xaxis: { title: axis === "time" ? "wall time (s)" : "epoch", dtick: axis === "time" ? undefined : 1 },
        yaxis: { title: kind },
        // the legend sits below the axes, inside the plot's own height, one row per two curves
        margin: { l: 55, r: 10, t: 40, b: 70 + 18 * Math.ceil(traces.length / 2) },
        legend: { orientation: "h", x: 0, y: -0.2, yanchor: "top", font: { size: 11 } },
        height: 390 + 18 * Math.ceil(traces.length / 2),
      }, { displaylogo: false, responsive: true, displayModeBar: false });
    }
  };
  document.querySelectorAll('input[name="xaxis"]').forEach((r) => r.addEventListener("change", () => draw(r.value)));
  draw("epoch");
}

// -- Hyperband: parallel coordinates and the rung chart ------------------------------------------------------------
function initHyperband() {
  const source = document.getElementById("hyperband-data");
  if (!source || !window.Plotly) return;
  const view = JSON.parse(source.textContent);
  const pc = view.parallel_coordinates;
  Plotly.newPlot("parcoords-plot", [{
    type: "parcoords",
    line: {
      color: pc.color, colorscale: "Viridis", showscale: true, colorbar: { title: "val_accuracy" },
      cmin: Math.min(...pc.color) - (Math.max(...pc.color) === Math.min(...pc.color) ? 0.05 : 0),
      cmax: Math.max(...pc.color) + (Math.max(...pc.color) === Math.min(...pc.color) ? 0.05 : 0),
    },
    dimensions: pc.dimensions,
  }], { margin: { l: 60, r: 60, t: 40, b: 20 }, height: 380 }, { displaylogo: false, responsive: true });
  const groups = [...new Set(view.rung_chart.map((l) => l.group))];
  const traces = view.rung_chart.map((line) => ({
    x: line.epochs, y: line.values, type: "scatter", mode: "lines+markers", name: `${line.trial_id} (${line.group})`,
    legendgroup: line.group,
    line: { color: PALETTE[groups.indexOf(line.group) % PALETTE.length], width: line.promoted ? 2.5 : 1.2, dash: line.promoted ? "solid" : "dot" },
    marker: { size: line.epochs.map((e) => (line.rung_ends.includes(e) ? 9 : 4)) },
  }));
  Plotly.newPlot("rung-plot", traces, {
    xaxis: { title: "epoch", dtick: 1 }, yaxis: { title: "val_accuracy", range: [0, 1.02] }, height: 400,
    margin: { l: 55, r: 10, t: 20, b: 45 }, legend: { font: { size: 11 } },
  }, { displaylogo: false, responsive: true });
}

document.addEventListener("DOMContentLoaded", () => {
  initRuns();
  initRun();
  initCompare();
  initHyperband();
});
