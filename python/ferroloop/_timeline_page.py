"""The HTML page of a timeline: one file, inline style and script, no
network access. ``__TITLE__`` and ``__DATA__`` (the JSON of
``Timeline.html``) are filled in.

One lane per task (and one per event loop: waits in the poller, blocking
episodes) on a common time axis, drawn on a canvas; labels are plain
elements. Hover shows a segment's details; the wheel zooms around the
pointer, a drag zooms to the dragged span, a double click (or the button)
shows everything again.
"""

PAGE = r'''<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
  body { font: 13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 16px; color: #222; }
  h1 { font-size: 17px; margin: 0 0 4px; }
  #summary { color: #555; margin-bottom: 8px; }
  #legend span { display: inline-block; margin-right: 14px; }
  #legend i { display: inline-block; width: 14px; height: 10px; margin-right: 4px; vertical-align: middle; border-radius: 2px; }
  #chart { display: flex; border: 1px solid #ddd; margin-top: 8px; user-select: none; }
  #labels { flex: 0 0 240px; border-right: 1px solid #ddd; padding-top: 24px; }
  .lane-label { height: 28px; line-height: 28px; padding: 0 8px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; border-top: 1px solid #f0f0f0; }
  .lane-label .coroutine { color: #777; margin-left: 6px; font-family: ui-monospace, monospace; font-size: 12px; }
  .lane-label.loop { font-style: italic; color: #555; }
  #plot { flex: 1 1 auto; position: relative; min-width: 200px; }
  canvas { display: block; cursor: crosshair; }
  #tip { position: fixed; pointer-events: none; background: #fffde7; border: 1px solid #bbb; padding: 6px 8px; border-radius: 3px; box-shadow: 0 2px 6px rgba(0,0,0,.15); display: none; max-width: 520px; white-space: pre-wrap; font-size: 12px; }
  button { font: inherit; margin-left: 12px; }
</style>
</head>
<body>
<h1>__TITLE__</h1>
<div id="summary"></div>
<div id="legend">
  <span><i style="background:#2e7d32"></i>running</span>
  <span><i style="background:#ffb300"></i>ready, waiting for the loop</span>
  <span><i style="background:#cfd8dc"></i>waiting (awaiting something)</span>
  <span><i style="background:#d32f2f"></i>blocking the loop</span>
  <span><i style="background:#90caf9"></i>loop waiting in the poller</span>
  <button id="reset" type="button">Show all</button>
</div>
<div id="chart"><div id="labels"></div><div id="plot"><canvas id="canvas"></canvas></div></div>
<div id="tip"></div>
<script type="application/json" id="timeline-data">__DATA__</script>
<script>
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("timeline-data").textContent);
  const ROW = 28, AXIS = 24;
  const COLORS = { run: "#2e7d32", scheduled: "#ffb300", wait: "#cfd8dc", blocking: "#d32f2f", poll: "#90caf9" };
  const HEIGHTS = { run: 18, blocking: 20, scheduled: 12, wait: 8, poll: 12 };
  const labels = document.getElementById("labels");
  const plot = document.getElementById("plot");
  const canvas = document.getElementById("canvas");
  const tip = document.getElementById("tip");
  const ctx = canvas.getContext("2d");
  let view = [0, data.duration];
  let drag = null;

  function fmt(seconds) {
    const a = Math.abs(seconds);
    if (a >= 1) return seconds.toFixed(3) + " s";
    if (a >= 1e-3) return (seconds * 1e3).toFixed(2) + " ms";
    return (seconds * 1e6).toFixed(1) + " µs";
  }

  const tasks = data.lanes.filter(function (l) { return l.id !== 0; }).length;
  document.getElementById("summary").textContent =
    tasks + " task" + (tasks === 1 ? "" : "s") + ", " + fmt(data.duration) + " recorded";

  data.lanes.forEach(function (lane) {
    const div = document.createElement("div");
    div.className = "lane-label" + (lane.id === 0 ? " loop" : "");
    div.dataset.task = lane.name;
    div.title = lane.name + (lane.coroutine ? " — " + lane.coroutine : "");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = lane.name;
    div.appendChild(name);
    if (lane.coroutine) {
      const coroutine = document.createElement("span");
      coroutine.className = "coroutine";
      coroutine.textContent = lane.coroutine;
      div.appendChild(coroutine);
    }
    labels.appendChild(div);
  });

  function size() {
    const width = Math.max(200, plot.clientWidth);
    const height = AXIS + ROW * data.lanes.length + 1;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return [width, height];
  }

  function x(t, width) { return (t - view[0]) / (view[1] - view[0]) * width; }
  function timeAt(px, width) { return view[0] + px / width * (view[1] - view[0]); }

  function ticks(width) {
    const span = view[1] - view[0];
    const raw = span / Math.max(2, width / 90);
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(function (m) { return m * power; }).find(function (s) { return s >= raw; });
    const out = [];
    for (let t = Math.ceil(view[0] / step) * step; t <= view[1]; t += step) out.push(t);
    return out;
  }

  function draw() {
    const [width, height] = size();
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#555";
    ctx.strokeStyle = "#eee";
    ticks(width).forEach(function (t) {
      const px = Math.round(x(t, width)) + 0.5;
      ctx.beginPath(); ctx.moveTo(px, AXIS - 4); ctx.lineTo(px, height); ctx.stroke();
      ctx.fillText(fmt(t), px + 3, 14);
    });
    data.lanes.forEach(function (lane, i) {
      ctx.strokeStyle = "#f0f0f0";
      ctx.beginPath(); ctx.moveTo(0, AXIS + i * ROW + 0.5); ctx.lineTo(width, AXIS + i * ROW + 0.5); ctx.stroke();
    });
    ["wait", "poll", "scheduled", "run", "blocking"].forEach(function (kind) {
      ctx.fillStyle = COLORS[kind];
      data.segments.forEach(function (s) {
        if (s[1] !== kind || s[3] < view[0] || s[2] > view[1]) return;
        const x0 = x(s[2], width), x1 = x(s[3], width);
        const h = HEIGHTS[kind];
        const y = AXIS + s[0] * ROW + (ROW - h) / 2;
        ctx.fillRect(x0, y, Math.max(1, x1 - x0), h);
      });
    });
    ctx.fillStyle = "#333";
    data.marks.forEach(function (m) {
      if (m[1] < view[0] || m[1] > view[1]) return;
      const px = x(m[1], width), y = AXIS + m[0] * ROW + 3;
      ctx.beginPath(); ctx.moveTo(px - 3, y); ctx.lineTo(px + 3, y); ctx.lineTo(px, y + 5); ctx.fill();
    });
    if (drag && drag.moved) {
      ctx.fillStyle = "rgba(33, 150, 243, 0.15)";
      const a = Math.min(drag.from, drag.to), b = Math.max(drag.from, drag.to);
      ctx.fillRect(a, AXIS, b - a, height - AXIS);
    }
  }

  function hit(px, py) {
    const width = canvas.clientWidth;
    const lane = Math.floor((py - AXIS) / ROW);
    if (lane < 0 || lane >= data.lanes.length) return null;
    const t = timeAt(px, width), slack = 3 / width * (view[1] - view[0]);
    let best = null, rank = { blocking: 4, run: 3, scheduled: 2, poll: 1, wait: 0 };
    data.segments.forEach(function (s) {
      if (s[0] !== lane || t < s[2] - slack || t > s[3] + slack) return;
      if (!best || rank[s[1]] > rank[best[1]]) best = s;
    });
    return best ? { lane: data.lanes[lane], segment: best } : null;
  }

  function showTip(event) {
    const rect = canvas.getBoundingClientRect();
    const found = hit(event.clientX - rect.left, event.clientY - rect.top);
    if (!found) { tip.style.display = "none"; return; }
    const s = found.segment, lane = found.lane;
    let text = lane.name + (lane.coroutine ? " (" + lane.coroutine + ")" : "") + "\n" + s[4];
    if (s[5]) text += "\n" + s[5];
    text += "\nfrom " + fmt(s[2]) + ", for " + fmt(s[3] - s[2]);
    if (lane.stats) {
      text += "\n\ntask: " + lane.stats.steps + " steps, busy " + fmt(lane.stats.busy) +
        ", scheduled " + fmt(lane.stats.scheduled) + ", idle " + fmt(lane.stats.idle) +
        "\nslowest step " + fmt(lane.stats.slowest_step) + " at " + lane.stats.slowest_at;
    }
    tip.textContent = text;
    tip.style.display = "block";
    tip.style.left = Math.min(event.clientX + 14, window.innerWidth - 540) + "px";
    tip.style.top = (event.clientY + 14) + "px";
  }

  canvas.addEventListener("mousemove", function (event) {
    if (drag) {
      drag.to = event.clientX - canvas.getBoundingClientRect().left;
      drag.moved = drag.moved || Math.abs(drag.to - drag.from) > 3;
      draw();
      return;
    }
    showTip(event);
  });
  canvas.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  canvas.addEventListener("mousedown", function (event) {
    const px = event.clientX - canvas.getBoundingClientRect().left;
    drag = { from: px, to: px, moved: false };
  });
  window.addEventListener("mouseup", function () {
    if (drag && drag.moved) {
      const width = canvas.clientWidth;
      const a = timeAt(Math.min(drag.from, drag.to), width), b = timeAt(Math.max(drag.from, drag.to), width);
      if (b - a > 1e-9) view = [a, b];
    }
    drag = null;
    draw();
  });
  canvas.addEventListener("wheel", function (event) {
    event.preventDefault();
    const width = canvas.clientWidth;
    const at = timeAt(event.clientX - canvas.getBoundingClientRect().left, width);
    const factor = event.deltaY < 0 ? 0.8 : 1.25;
    const a = at - (at - view[0]) * factor, b = at + (view[1] - at) * factor;
    view = [Math.max(-data.duration * 0.05, a), Math.min(data.duration * 1.05, b)];
    if (view[1] - view[0] < 1e-9) view[1] = view[0] + 1e-9;
    draw();
  }, { passive: false });
  function reset() { view = [0, data.duration]; draw(); }
  canvas.addEventListener("dblclick", reset);
  document.getElementById("reset").addEventListener("click", reset);
  window.addEventListener("resize", draw);
  draw();
})();
</script>
</body>
</html>
'''
