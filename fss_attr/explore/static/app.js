// fss-attr explore: the page. Plain JS and canvas, no dependencies, no network beyond this server.
// window.explorer exposes the state for automation (tests, benchmarks): the last maps, the request that made
// them, and the click-to-screen latencies.
"use strict";

const $ = (id) => document.getElementById(id);
const E = window.explorer = {
  cfg: null, ep: null, index: 0,
  region: { kind: "prediction" }, mask: null,      // mask: Uint8Array H·W of the painted region
  maps: null, zero: null, levelWeights: null, levelMaps: null, lastExplain: null,
  reverse: null, lastReverse: null,
  version: 0, changedAt: {}, latencies: [], renders: 0, reverses: 0,
  inFlight: false, pending: false,
};

function decodeBytes(b64) {
  if (Uint8Array.fromBase64) return Uint8Array.fromBase64(b64);     // native where the browser has it
  const s = atob(b64), out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
const decodeF32 = (b64) => new Float32Array(decodeBytes(b64).buffer);

function say(text) { $("message").textContent = text || ""; }

async function api(path, body) {
  const init = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" },
                                          body: JSON.stringify(body) };
  const r = await fetch(path, init);
  if (!r.ok) {
    let msg = `${r.status}`;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    const err = new Error(msg); err.status = r.status; throw err;
  }
  return r;
}

// ---------------------------------------------------------------------------------------------- drawing
function lutIndex(v) { return v >= 1 ? 255 : v <= 0 ? 0 : Math.floor(v * 256); }

// Colour a [H·W] slice of values in [0, 1]: viridis, or for signed maps RdBu_r centred on `zero`.
function paintHeat(canvas, values, offset, h, w, zero) {
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(w, h), px = img.data;
  const signed = zero !== null && zero !== undefined;
  const lut = signed ? COLORMAPS.RdBu_r : COLORMAPS.viridis;
  const half = signed ? 2 * Math.max(zero, 1 - zero) : 1;
  for (let i = 0; i < h * w; i++) {
    let v = values[offset + i];
    if (signed) v = 0.5 + (v - zero) / half;
    const k = 3 * lutIndex(v);
    px[4 * i] = lut[k]; px[4 * i + 1] = lut[k + 1]; px[4 * i + 2] = lut[k + 2]; px[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function paintRGB(canvas, bytes, h, w) {
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(w, h), px = img.data;
  for (let i = 0; i < h * w; i++) {
    px[4 * i] = bytes[3 * i]; px[4 * i + 1] = bytes[3 * i + 1]; px[4 * i + 2] = bytes[3 * i + 2]; px[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

// Outline of a 0/1 mask (pixels inside with a neighbour outside) in an RGBA colour.
function outline(px, mask, h, w, rgba) {
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const i = y * w + x;
    if (!mask[i]) continue;
    if (x === 0 || y === 0 || x === w - 1 || y === h - 1 || !mask[i - 1] || !mask[i + 1] || !mask[i - w] || !mask[i + w]) {
      px.set(rgba, 4 * i);
    }
  }
}

function regionMask() {
  const { height: h, width: w } = E.ep, r = E.region, m = new Uint8Array(h * w);
  if (r.kind === "point") m[r.y * w + r.x] = 1;
  else if (r.kind === "box") {
    const [x0, x1] = [Math.min(r.x0, r.x1), Math.max(r.x0, r.x1)], [y0, y1] = [Math.min(r.y0, r.y1), Math.max(r.y0, r.y1)];
    for (let y = y0; y <= y1; y++) m.fill(1, y * w + x0, y * w + x1 + 1);
  } else if (r.kind === "mask") m.set(E.mask);
  else if (r.kind === "prediction") m.set(E.ep.prediction);
  else if (r.kind === "gt" && E.ep.ground_truth) m.set(E.ep.ground_truth);
  return m;
}

function drawQueryOverlay() {
  const { height: h, width: w } = E.ep, c = $("query"), ctx = c.getContext("2d");
  const img = ctx.createImageData(w, h), px = img.data;
  if ($("show-pred").checked) outline(px, E.ep.prediction, h, w, [255, 204, 0, 255]);
  if ($("show-gt").checked && E.ep.ground_truth) outline(px, E.ep.ground_truth, h, w, [0, 200, 240, 255]);
  const m = regionMask();
  if (E.region.kind === "point") {
    for (let d = -3; d <= 3; d++) for (const [x, y] of [[E.region.x + d, E.region.y], [E.region.x, E.region.y + d]]) {
      if (x >= 0 && y >= 0 && x < w && y < h && d !== 0) px.set([232, 23, 93, 255], 4 * (y * w + x));
    }
  } else outline(px, m, h, w, [232, 23, 93, 255]);
  ctx.putImageData(img, 0, 0);
}

function drawSupportOverlays() {
  const { height: h, width: w } = E.ep;
  E.ep.support_masks.forEach((mask, n) => {
    const c = $(`support-top-${n}`), ctx = c.getContext("2d"), img = ctx.createImageData(w, h);
    outline(img.data, mask, h, w, [255, 255, 255, 255]);
    if (E.reverse && E.reverse.shot === n) {
      for (let d = -4; d <= 4; d++) for (const [x, y] of [[E.reverse.x + d, E.reverse.y], [E.reverse.x, E.reverse.y + d]]) {
        if (x >= 0 && y >= 0 && x < w && y < h && d !== 0) img.data.set([232, 23, 93, 255], 4 * (y * w + x));
      }
    }
    ctx.putImageData(img, 0, 0);
  });
}

function drawMaps() {
  const { height: h, width: w, n_shots: n } = E.ep;
  for (let s = 0; s < n; s++) paintHeat($(`support-${s}`), E.maps, s * h * w, h, w, E.zero);
  drawLegend();
  drawLevels();
}

function drawReverse() {
  const { height: h, width: w } = E.ep, c = $("reverse");
  if (!E.reverse) { c.getContext("2d").clearRect(0, 0, w, h); c.style.visibility = "hidden"; return; }
  c.style.visibility = "visible";
  paintHeat(c, E.reverse.map, 0, h, w, null);
  $("reverse-caption").textContent = `Query overlay: where support ${E.reverse.shot} pixel (${E.reverse.x}, ${E.reverse.y}) ` +
    "is matched, all levels weighted (viridis, min-max: dark = not matched, yellow = matched most). Click it again to clear.";
  drawLevels();
}

function drawLegend() {
  const bar = $("legend-bar"), ctx = bar.getContext("2d"), img = ctx.createImageData(256, 14);
  const signed = E.zero !== null;
  const lut = signed ? COLORMAPS.RdBu_r : COLORMAPS.viridis;
  for (let x = 0; x < 256; x++) for (let y = 0; y < 14; y++) {
    img.data.set([lut[3 * x], lut[3 * x + 1], lut[3 * x + 2], 255], 4 * (y * 256 + x));
  }
  ctx.putImageData(img, 0, 0);
  const variant = $("variant").value;
  if (signed) {
    $("legend-lo").textContent = "against"; $("legend-mid").textContent = "0"; $("legend-hi").textContent = "for";
    $("legend-text").textContent = "Signed AffEx: red = support pixels that drew the query region mostly on the " +
      "support foreground (evidence for), blue = on the background (evidence against), white = zero; " +
      "colour strength is proportional to the signed value.";
  } else {
    $("legend-lo").textContent = "0"; $("legend-mid").textContent = ""; $("legend-hi").textContent = "1";
    $("legend-text").textContent = `${variant === "masked" ? "Masked" : "Unmasked"} AffEx: how much each support ` +
      "pixel was matched by the query region, min-max scaled over all supports (dark = not at all, yellow = most)" +
      (variant === "masked" ? ", weighted by the blurred support mask." : ".");
  }
}

function drawLevels() {
  const panel = $("levels-panel");
  panel.hidden = !$("per-level").checked;
  if (panel.hidden || !E.ep) return;
  const { height: h, width: w, n_shots: n } = E.ep, root = $("levels");
  root.textContent = "";
  const head = document.createElement("div"); head.className = "level head";
  const names = [""].concat(E.levelMaps ? Array.from({ length: n }, (_, s) => `support ${s}`) : [])
    .concat(E.reverse ? [`query: matches of support ${E.reverse.shot} (${E.reverse.x}, ${E.reverse.y})`] : []);
  for (const t of names) { const d = document.createElement("div"); d.textContent = t; head.appendChild(d); }
  root.appendChild(head);
  E.ep.levels.forEach((lv, l) => {
    const row = document.createElement("div"); row.className = "level";
    const label = document.createElement("div"); label.className = "label";
    const wl = E.levelWeights ? E.levelWeights[l].toFixed(3) : "?";
    label.textContent = `level ${l}: ${lv.query_hw.join("×")} query grid, weight ${wl}`;
    row.appendChild(label);
    if (E.levelMaps) for (let s = 0; s < n; s++) {
      const c = document.createElement("canvas"); c.width = w; c.height = h; c.id = `level-${l}-support-${s}`;
      paintHeat(c, E.levelMaps[l], s * h * w, h, w, null); row.appendChild(c);
    }
    if (E.reverse) {
      const c = document.createElement("canvas"); c.width = w; c.height = h; c.id = `level-${l}-reverse`;
      c.title = "matches of the chosen support pixel at this level";
      paintHeat(c, E.reverse.levelMaps[l], 0, h, w, null); row.appendChild(c);
    }
    root.appendChild(row);
  });
}

// ---------------------------------------------------------------------------------------------- requests
// The AffEx options; throws (with the message the page shows) on a bad top-k, which the server would refuse.
function options() {
  const raw = $("top-k").value.trim(), k = raw === "" ? 0 : Number(raw);
  if (!Number.isInteger(k) || k < 0) throw new Error(`top_k must be an integer >= 0 (0 = off), got ${raw}`);
  return { variant: $("variant").value, softmax: $("softmax").checked, top_k: k, weights: $("weights").value };
}

function regionSpec() {
  const r = E.region;
  if (r.kind !== "mask") return { ...r };
  let s = ""; const CH = 0x8000;
  for (let i = 0; i < E.mask.length; i += CH) s += String.fromCharCode.apply(null, E.mask.subarray(i, i + CH));
  return { kind: "mask", data: btoa(s) };
}

function explainBody() {
  return { episode: E.index, region: regionSpec(), ...options(), per_level: $("per-level").checked };
}

// A region or option change: remember when it happened, then ask for maps (one request at a time; while one
// is in flight, the latest change waits and goes next).
function changed(t0) {
  E.version += 1;
  E.changedAt[E.version] = t0 === undefined ? performance.now() : t0;
  drawQueryOverlay();
  requestExplain();
}

async function requestExplain() {
  if (E.inFlight) { E.pending = true; return; }
  E.inFlight = true; E.pending = false;
  const version = E.version, index = E.index;
  let body = null;
  try {
    body = explainBody();
    const res = await api("/api/explain.bin", body);
    const out = JSON.parse(res.headers.get("X-Explorer-Meta")), buf = await res.arrayBuffer();
    if (index !== E.index) return;
    const size = out.shape.reduce((a, b) => a * b, 1);
    E.maps = new Float32Array(buf, 0, size); E.zero = out.zero === undefined ? null : out.zero;
    E.levelWeights = out.level_weights;
    E.levelMaps = out.n_level_maps ? Array.from({ length: out.n_level_maps },
                                                (_, l) => new Float32Array(buf, 4 * size * (l + 1), size)) : null;
    E.lastExplain = { body, response: out, version };
    drawMaps();
    say("");
    requestAnimationFrame(() => {           // the frame that shows the new maps is being painted
      const t1 = performance.now(), t0 = E.changedAt[version];
      if (t0 !== undefined) E.latencies.push({ version, total_ms: t1 - t0, server_ms: out.compute_ms });
      for (const v of Object.keys(E.changedAt)) if (+v <= version) delete E.changedAt[v];
      $("timing").textContent = `maps on screen ${(t1 - t0).toFixed(0)} ms after the change ` +
        `(server compute ${out.compute_ms.toFixed(1)} ms); region ${out.region_pixels} px; ` +
        `level weights ${out.level_weights.map((x) => x.toFixed(2)).join(", ")}`;
      E.renders += 1; document.body.dataset.renderCount = String(E.renders);
    });
    if (E.reverse) requestReverse(E.reverse.shot, E.reverse.x, E.reverse.y);
  } catch (e) {
    say(e.message);
    E.renders += 1; document.body.dataset.renderCount = String(E.renders);
  } finally {
    E.inFlight = false;
    if (E.pending) requestExplain();
  }
}

async function requestReverse(shot, x, y) {
  try {
    const body = { episode: E.index, shot, x, y, softmax: $("softmax").checked, top_k: options().top_k,
                   weights: $("weights").value, region: regionSpec() };
    const out = await (await api("/api/reverse", body)).json();
    E.reverse = { shot, x, y, map: decodeF32(out.map), levelMaps: out.level_maps.map(decodeF32),
                  levelWeights: out.level_weights };
    E.lastReverse = { body, response: out };
    drawReverse(); drawSupportOverlays();
  } catch (e) { say(e.message); }
  E.reverses += 1; document.body.dataset.reverseCount = String(E.reverses);
}

// ---------------------------------------------------------------------------------------------- episodes
function makeCanvas(id, w, h, cls, scale) {
  const c = document.createElement("canvas");
  c.id = id; c.width = w; c.height = h; if (cls) c.className = cls;
  c.style.width = `${w * scale}px`; c.style.height = `${h * scale}px`;
  return c;
}

async function loadEpisode(index) {
  say("loading episode …");
  let info;
  try { info = await (await api(`/api/episodes/${index}`)).json(); } catch (e) { say(e.message); return; }
  const h = info.height, w = info.width;
  info.query = decodeBytes(info.query); info.supports = info.supports.map(decodeBytes);
  info.support_masks = info.support_masks.map(decodeBytes); info.prediction = decodeBytes(info.prediction);
  info.ground_truth = info.ground_truth ? decodeBytes(info.ground_truth) : null;
  E.ep = info; E.index = info.index; E.reverse = null; E.maps = null;
  $("episode").value = info.index; $("n-episodes").textContent = info.n_episodes - 1;
  $("class-name").textContent = info.class_name ? `class “${info.class_name}”` : "";
  $("use-gt").disabled = !info.ground_truth; $("show-gt").disabled = !info.ground_truth;
  const qs = Math.max(1, Math.floor(384 / Math.max(h, w))), ss = Math.max(1, Math.floor(192 / Math.max(h, w)));
  for (const id of ["query-image", "reverse", "query"]) {
    const c = $(id); c.width = w; c.height = h; c.style.width = `${w * qs}px`; c.style.height = `${h * qs}px`;
  }
  $("reverse").style.opacity = $("opacity").value;
  paintRGB($("query-image"), info.query, h, w);
  const root = $("supports"); root.textContent = "";
  info.supports.forEach((rgb, n) => {
    const fig = document.createElement("figure"); fig.className = "support";
    const stack = document.createElement("div"); stack.className = "stack";
    const img = makeCanvas(`support-image-${n}`, w, h, "", ss);
    const heat = makeCanvas(`support-${n}`, w, h, "heat", ss); heat.style.opacity = $("opacity").value;
    const top = makeCanvas(`support-top-${n}`, w, h, "top", ss);
    heat.addEventListener("pointerdown", (ev) => supportClick(ev, n));   // the overlay above lets clicks through
    stack.append(img, heat, top); paintRGB(img, rgb, h, w);
    const cap = document.createElement("figcaption"); cap.textContent = `support ${n} (white: its mask)`;
    fig.append(stack, cap); root.appendChild(fig);
  });
  if (E.region.kind === "gt" && !info.ground_truth) E.region = { kind: "prediction" };
  if (E.region.kind === "mask" && (!E.mask || E.mask.length !== h * w)) E.region = { kind: "prediction" };
  if (!["prediction", "gt", "mask"].includes(E.region.kind)) E.region = { kind: "prediction" };
  if (!info.prediction.some((v) => v)) E.region = { kind: "all" };
  drawSupportOverlays(); drawReverse();
  say("");
  changed();
}

// ---------------------------------------------------------------------------------------------- input
function pixelAt(ev, canvas) {
  const r = canvas.getBoundingClientRect();
  const x = Math.floor((ev.clientX - r.left) * canvas.width / r.width);
  const y = Math.floor((ev.clientY - r.top) * canvas.height / r.height);
  return [Math.min(canvas.width - 1, Math.max(0, x)), Math.min(canvas.height - 1, Math.max(0, y))];
}

let drag = null;
function paintAt(x, y) {
  const { height: h, width: w } = E.ep, rad = Math.max(1, parseInt($("brush").value, 10) || 6);
  for (let yy = Math.max(0, y - rad); yy <= Math.min(h - 1, y + rad); yy++)
    for (let xx = Math.max(0, x - rad); xx <= Math.min(w - 1, x + rad); xx++)
      if ((xx - x) ** 2 + (yy - y) ** 2 <= rad * rad) E.mask[yy * w + xx] = 1;
}

function queryDown(ev) {
  if (!E.ep) return;
  const t0 = performance.now(), [x, y] = pixelAt(ev, $("query")), mode = document.querySelector("input[name=mode]:checked").value;
  $("query").setPointerCapture(ev.pointerId);
  if (mode === "point") { E.region = { kind: "point", x, y }; changed(t0); return; }
  if (mode === "box") { drag = { mode, x, y }; E.region = { kind: "box", x0: x, y0: y, x1: x, y1: y }; changed(t0); return; }
  drag = { mode };
  if (E.region.kind !== "mask" || !ev.shiftKey) E.mask = new Uint8Array(E.ep.height * E.ep.width);
  E.region = { kind: "mask" }; paintAt(x, y); changed(t0);
}

function queryMove(ev) {
  if (!drag) return;
  const t0 = performance.now(), [x, y] = pixelAt(ev, $("query"));
  if (drag.mode === "box") E.region = { kind: "box", x0: drag.x, y0: drag.y, x1: x, y1: y };
  else paintAt(x, y);
  changed(t0);
}

function supportClick(ev, n) {
  const [x, y] = pixelAt(ev, ev.currentTarget);
  if (E.reverse && E.reverse.shot === n && E.reverse.x === x && E.reverse.y === y) {
    E.reverse = null; drawReverse(); drawSupportOverlays();
    $("reverse-caption").textContent = "Click a support pixel to see which query positions it matches.";
    return;
  }
  requestReverse(n, x, y);
}

function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob); a.download = name; document.body.appendChild(a); a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

function downloadPng() {
  if (!E.ep || !E.maps) return;
  const { height: h, width: w, n_shots: n } = E.ep, pad = 4;
  const c = document.createElement("canvas"); c.width = n * (w + pad) - pad; c.height = h + 22;
  const ctx = c.getContext("2d"); ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, c.width, c.height);
  for (let s = 0; s < n; s++) {
    ctx.globalAlpha = 1; ctx.drawImage($(`support-image-${s}`), s * (w + pad), 0);
    ctx.globalAlpha = parseFloat($("opacity").value); ctx.drawImage($(`support-${s}`), s * (w + pad), 0);
  }
  ctx.globalAlpha = 1; ctx.drawImage($("legend-bar"), 0, h + 4, Math.min(256, c.width), 14);
  c.toBlob((b) => download(b, `affex_episode${E.index}_${$("variant").value}.png`), "image/png");
}

async function downloadNpy() {
  try {
    const body = explainBody(); delete body.per_level;
    const r = await api("/api/explain.npy", body);
    download(await r.blob(), `affex_episode${E.index}_${body.variant}.npy`);
  } catch (e) { say(e.message); }
}

function gotoEpisode(i) {
  if (!E.cfg) return;
  if (!Number.isInteger(i) || i < 0 || i >= E.cfg.n_episodes) { say(`episode must be 0 … ${E.cfg.n_episodes - 1}`); return; }
  loadEpisode(i);
}

function setOpacity() {
  const o = $("opacity").value;
  document.querySelectorAll(".heat").forEach((c) => { c.style.opacity = o; });
}

async function init() {
  const q = $("query");
  q.addEventListener("pointerdown", queryDown);
  q.addEventListener("pointermove", queryMove);
  q.addEventListener("pointerup", () => { drag = null; });
  $("use-prediction").addEventListener("click", () => { E.region = { kind: "prediction" }; changed(); });
  $("use-gt").addEventListener("click", () => { E.region = { kind: "gt" }; changed(); });
  for (const id of ["variant", "top-k", "softmax", "weights", "per-level"]) $(id).addEventListener("change", () => changed());
  for (const id of ["show-pred", "show-gt"]) $(id).addEventListener("change", drawQueryOverlay);
  $("opacity").addEventListener("input", setOpacity);
  $("prev").addEventListener("click", () => gotoEpisode(E.index - 1));
  $("next").addEventListener("click", () => gotoEpisode(E.index + 1));
  $("episode").addEventListener("change", () => gotoEpisode(parseInt($("episode").value, 10)));
  $("download-png").addEventListener("click", downloadPng);
  $("download-npy").addEventListener("click", downloadNpy);
  document.addEventListener("keydown", (ev) => {
    if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
    if (ev.key === "ArrowLeft") gotoEpisode(E.index - 1);
    if (ev.key === "ArrowRight") gotoEpisode(E.index + 1);
  });
  try { E.cfg = await (await api("/api/config")).json(); } catch (e) { say(e.message); return; }
  $("model").textContent = `model ${E.cfg.model}, AffEx backend ${E.cfg.backend}`;
  $("episode").max = E.cfg.n_episodes - 1;
  await loadEpisode(0);
}

init();
