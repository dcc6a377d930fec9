// The live page: one EventSource for state, events, bars and stats; commands by POST.
"use strict";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.hash.slice(1));
if (params.get("token")) sessionStorage.setItem("edge-token", params.get("token"));
const token = sessionStorage.getItem("edge-token") || "";
const q = token ? "?token=" + encodeURIComponent(token) : "";
const WINDOW_S = 600;
const COLOURS = ["#4fc3f7", "#ffb74d", "#81c784", "#e57373", "#ba68c8", "#fff176", "#4db6ac", "#f06292"];
const colourOf = {};
const timeline = []; // [{label, from, to}] in wall seconds
let mode = null;
let lastEventId = 0;

function colour(label) {
  if (label == null) return "#2b333b";
  if (!(label in colourOf)) colourOf[label] = COLOURS[Object.keys(colourOf).length % COLOURS.length];
  return colourOf[label];
}

function pct(x) { return (100 * (x || 0)).toFixed(1) + "%"; }

function ago(ts) {
  if (!ts) return "–";
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  return new Date(ts * 1000).toLocaleTimeString();
}

function setMode(m) {
  if (!m || m === mode) return;
  mode = m;
  document.body.className = m;
  $("mode").textContent = m;
  $("teach-hint").textContent = m === "video"
    ? "Teach records the next seconds of the live camera as examples of the label."
    : "Teach takes a photo now and keeps it as an example of the label.";
}

function bars(top) {
  const box = $("bars");
  box.replaceChildren(...(top || []).slice(0, 5).map((s) => {
    const row = document.createElement("div");
    row.className = "bar";
    row.innerHTML = '<span class="name"></span><span class="track"><span class="fill"></span></span><span class="v"></span>';
    row.querySelector(".name").textContent = s.label;
    row.querySelector(".fill").style.width = pct(s.score);
    row.querySelector(".fill").style.background = colour(s.label);
    row.querySelector(".v").textContent = pct(s.score);
    return row;
  }));
}

let state = null;
function showState(s) {
  state = s;
  setMode(s.mode);
  $("label").textContent = s.label == null ? "none" : s.label;
  if (!document.body.dataset.firstStateMs) document.body.dataset.firstStateMs = String(Math.round(performance.now()));
  $("score").textContent = s.label == null ? "–" : pct(s.score);
  $("since").textContent = ago(s.since);
  const cam = s.camera || "ok";
  $("camera").textContent = "camera " + cam;
  $("camera").className = "pill " + (cam === "ok" ? "ok" : "bad");
  if (s.model && s.model.name) $("device").title = "model " + s.model.name;
  if (s.top && s.top.length) bars(s.top);
  const now = s.ts || Date.now() / 1000;
  const last = timeline[timeline.length - 1];
  if (!last || last.label !== s.label) {
    if (last) last.to = now;
    timeline.push({ label: s.label, from: s.since || now, to: null });
  }
  drawTimeline();
}

function drawTimeline() {
  const now = Date.now() / 1000, start = now - WINDOW_S;
  while (timeline.length > 1 && (timeline[0].to || now) < start) timeline.shift();
  const box = $("timeline");
  const parts = [];
  let t = start;
  for (const seg of timeline) {
    const from = Math.max(seg.from, start), to = seg.to || now;
    if (to <= t) continue;
    if (from > t) parts.push({ label: null, w: from - t });
    parts.push({ label: seg.label, w: to - Math.max(from, t) });
    t = to;
  }
  box.replaceChildren(...parts.map((p) => {
    const d = document.createElement("div");
    d.style.flex = String(p.w);
    d.style.background = colour(p.label);
    d.title = p.label == null ? "none" : p.label;
    return d;
  }));
  const seen = [...new Set(timeline.map((s) => s.label).filter((l) => l != null))];
  $("timeline-legend").replaceChildren(...seen.map((l) => {
    const span = document.createElement("span");
    span.style.color = colour(l);
    span.textContent = "■ " + l + "  ";
    return span;
  }));
}

function showStats(st) {
  const mb = (x) => (x == null ? "–" : x + " MB");
  const rows = [
    ["camera", st.camera_fps == null ? "–" : st.camera_fps + " frames/s"],
    ["model", st.model_fps == null ? "–" : st.model_fps + " steps/s"],
    ["inference p50 / p95", st.inference_ms ? st.inference_ms.p50 + " / " + st.inference_ms.p95 + " ms" : "–"],
    ["dropped / skipped frames", (st.dropped_frames ?? "–") + " / " + (st.skipped_frames ?? "–")],
    ["camera reconnects", st.reconnects ?? "–"],
    ["outbox", (st.outbox_depth ?? "–") + " waiting, " + (st.outbox_dropped ?? 0) + " dropped"],
    ["mqtt", st.mqtt_connected ? "connected" : "not connected"],
    ["cpu", st.cpu_percent == null ? "–" : st.cpu_percent + " %"],
    ["memory (rss)", mb(st.rss_mb)],
    ["uptime", st.uptime_s == null ? "–" : Math.round(st.uptime_s) + " s"],
  ];
  $("stats").replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k; dd.textContent = String(v);
    return [dt, dd];
  }));
  $("mqtt").textContent = st.mqtt_connected ? "mqtt up" : "mqtt down";
  $("mqtt").className = "pill " + (st.mqtt_connected ? "ok" : "bad");
  if (st.mode) setMode(st.mode);
}

function describe(e) {
  const what = e.label ? e.type + " " + e.label : e.type;
  const extra = e.camera || e.error || e.message || e.command || "";
  return what + (extra ? " – " + extra : "");
}

function addEvent(e) {
  if (e.id) lastEventId = Math.max(lastEventId, e.id);
  const li = document.createElement("li");
  li.textContent = new Date((e.ts || Date.now() / 1000) * 1000).toLocaleTimeString() + "  " + describe(e);
  $("events").prepend(li);
  while ($("events").children.length > 100) $("events").lastChild.remove();
  if (["taught", "forgot"].includes(e.type)) loadClasses();
}

function addResult(r) {
  const li = document.createElement("li");
  const label = r.label == null ? "none" : r.label;
  li.textContent = new Date((r.ts || 0) * 1000).toLocaleTimeString() + "  " + label +
    (r.score != null ? " " + pct(r.score) : "") + (r.image ? "  " + r.image : "");
  $("results").prepend(li);
  while ($("results").children.length > 20) $("results").lastChild.remove();
}

async function command(name, args, quiet) {
  const say = (text) => { if (!quiet) $("reply").textContent = text; };
  say(name + "…");
  try {
    const r = await fetch("/api/cmd/" + name, {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/json" },
        token ? { Authorization: "Bearer " + token } : {}),
      body: JSON.stringify(args || {}),
    });
    const body = await r.json();
    say(name + ": " + (body.ok ? "ok" : body.error));
    return body;
  } catch (err) {
    say(name + ": " + err);
    return { ok: false, error: String(err) };
  }
}

async function loadClasses() {
  const reply = await command("classes", { thumbnails: true }, true);
  if (!reply.ok) { $("classes").replaceChildren(); return; }
  const list = reply.classes || [];
  $("classes").replaceChildren(...list.map((c) => {
    const li = document.createElement("li");
    if (c.thumbnail) {
      const img = document.createElement("img");
      img.src = "data:image/jpeg;base64," + c.thumbnail;
      img.alt = c.label;
      li.append(img);
    }
    const span = document.createElement("span");
    span.textContent = c.label + " (" + c.examples + ")";
    const forget = document.createElement("button");
    forget.className = "small";
    forget.textContent = "forget";
    forget.onclick = async () => { await command("forget", { label: c.label }); loadClasses(); };
    li.append(span, forget);
    return li;
  }));
}

async function snapshot() {
  const r = await fetch("/api/snapshot.jpg" + q + (q ? "&" : "?") + "t=" + Date.now());
  if (!r.ok) { $("snapshot-none").textContent = "No frame yet."; return; }
  $("snapshot").src = URL.createObjectURL(await r.blob());
  $("snapshot").hidden = false;
  $("snapshot-none").hidden = true;
}

document.querySelectorAll("button[data-cmd]").forEach((b) => {
  b.onclick = () => command(b.dataset.cmd, {});
});
$("snap-btn").onclick = snapshot;
$("teach").onsubmit = async (ev) => {
  ev.preventDefault();
  const args = { label: $("teach-label").value.trim() };
  if (mode === "video") args.seconds = Number($("teach-seconds").value);
  $("teach-btn").disabled = true;
  await command("teach", args);
  $("teach-btn").disabled = false;
  loadClasses();
};

async function start() {
  const get = (p) => fetch(p + q).then((r) => (r.ok ? r.json() : null));
  const [st, stats, events, results] = await Promise.all(
    [get("/api/state"), get("/api/stats"), get("/api/events"), get("/api/results")]);
  if (st && st.ts) showState(st);
  if (stats) showStats(stats);
  (events || []).forEach(addEvent);
  (results || []).forEach(addResult);
  loadClasses();
  const es = new EventSource("/api/stream" + q);
  es.onopen = () => { $("live").textContent = "live"; $("live").className = "pill ok"; };
  es.onerror = () => { $("live").textContent = "reconnecting…"; $("live").className = "pill bad"; };
  es.addEventListener("state", (m) => showState(JSON.parse(m.data)));
  es.addEventListener("stats", (m) => showStats(JSON.parse(m.data)));
  es.addEventListener("event", (m) => addEvent(JSON.parse(m.data)));
  es.addEventListener("result", (m) => addResult(JSON.parse(m.data)));
  es.addEventListener("prediction", (m) => {
    const p = JSON.parse(m.data);
    if (p.smoothed && p.smoothed.length) bars(p.smoothed);
  });
  setInterval(() => { if (state) $("since").textContent = ago(state.since); drawTimeline(); }, 1000);
}
start();
