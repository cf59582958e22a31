// Atelier web chat: a conversation over one edit session of the service's agent API. Each message is sent
// with `Prefer: respond-async`, its generation's events are read from the SSE stream (with fetch, so an API
// key can be sent and the stream's own `error` event is not confused with a connection error), and the
// finished generation (plan, images, trace) is drawn as the assistant's turn. Same origin only.

const $ = (id) => document.getElementById(id);
const SETTINGS_KEY = "atelier.settings";

const state = {
  sessionId: null,
  /** The last assistant image: {url, width, height} (the mask is painted over it). */
  lastImage: null,
  running: null,
  engine: null,
};

// Settings, kept in localStorage.

const fields = ["seed", "steps", "guidance", "sampler", "rounds", "strength", "preview", "api-key"];

function loadSettings() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? "{}");
  } catch {}
  for (const name of fields) {
    const input = $(name);
    if (!(name in saved)) continue;
    if (input.type === "checkbox") input.checked = saved[name];
    else input.value = saved[name];
  }
}

function saveSettings() {
  const values = {};
  for (const name of fields) {
    const input = $(name);
    values[name] = input.type === "checkbox" ? input.checked : input.value;
  }
  localStorage.setItem(SETTINGS_KEY, JSON.stringify(values));
}

/** The message's generation settings; empty fields are left to the server. */
function messageSettings() {
  const out = {};
  const number = (name, parse) => {
    const text = $(name).value.trim();
    if (text !== "") out[name] = parse(text);
  };
  number("seed", (v) => Number.parseInt(v, 10));
  number("steps", (v) => Number.parseInt(v, 10));
  number("guidance", Number);
  number("rounds", (v) => Number.parseInt(v, 10));
  if (state.lastImage) number("strength", Number);
  if ($("sampler").value) out.sampler = $("sampler").value;
  if ($("preview").checked) out.preview = true;
  return out;
}

// HTTP.

function headers(extra = {}) {
  const key = $("api-key").value.trim();
  return { ...(key ? { authorization: `Bearer ${key}` } : {}), ...extra };
}

async function api(path, init = {}) {
  const response = await fetch(path, {
    ...init,
    headers: headers({ ...(init.body ? { "content-type": "application/json" } : {}), ...init.headers }),
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(body?.error?.message ?? `HTTP ${response.status}`);
  return body;
}

/** Reads a generation's server-sent events until `done` or `error` (or the stream ends). */
async function followEvents(id, onEvent, signal) {
  const response = await fetch(`/v1/generations/${id}/events`, { headers: headers(), signal });
  if (!response.ok) throw new Error(`events: HTTP ${response.status}`);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end = buffer.indexOf("\n\n");
    while (end >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      end = buffer.indexOf("\n\n");
      let type = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length === 0) continue;
      const event = { ...JSON.parse(data.join("\n")), type };
      onEvent(event);
      if (type === "done" || type === "error") {
        reader.cancel().catch(() => {});
        return;
      }
    }
  }
}

// Plans: the planning tokens as chips, and the same plan read field by field.

const SECTION_NAMES = {
  "<STYLE>": "Style",
  "<LAYOUT>": "Layout",
  "<OBJECT>": "Objects",
  "<COLOR>": "Colours",
  "<LIGHTING>": "Lighting",
};

function planSections(plan) {
  const sections = [];
  let current = null;
  for (const token of plan.split(/\s+/)) {
    if (token === "<IMG_BEGIN>" || token === "<IMG_END>") continue;
    if (SECTION_NAMES[token]) {
      current = { name: SECTION_NAMES[token], words: [] };
      sections.push(current);
    } else if (current) current.words.push(token);
  }
  // The colour section ends with "; background <name>".
  const colours = sections.find((s) => s.name === "Colours");
  if (colours) {
    const text = colours.words.join(" ");
    const match = /^(.*?)\s*;?\s*background\s+(.+)$/.exec(text);
    if (match) {
      colours.words = match[1].split(/\s+/).filter(Boolean);
      sections.splice(sections.indexOf(colours) + 1, 0, { name: "Background", words: match[2].split(/\s+/) });
    }
  }
  return sections.map((s) => ({
    name: s.name,
    items: s.words
      .join(" ")
      .split(/\s*;\s*/)
      .filter(Boolean),
  }));
}

function renderPlanFields(dl, plan) {
  dl.replaceChildren();
  for (const section of planSections(plan)) {
    const dt = document.createElement("dt");
    dt.textContent = section.name;
    const dd = document.createElement("dd");
    dd.textContent = section.items.join(" · ");
    dl.append(dt, dd);
  }
}

function renderTokens(p, plan) {
  p.replaceChildren();
  for (const token of plan.split(/\s+/).filter(Boolean)) {
    const span = document.createElement("span");
    span.className = /^<[A-Z_]+>$/.test(token) ? "token special" : "token";
    span.textContent = token;
    p.append(span, " ");
  }
}

// The conversation.

function scrollDown() {
  const main = $("conversation");
  main.scrollTop = main.scrollHeight;
}

function addUserTurn(text, maskDataUrl) {
  $("welcome")?.remove();
  const node = $("tpl-user").content.firstElementChild.cloneNode(true);
  node.querySelector(".text").textContent = text;
  if (maskDataUrl) {
    const thumb = node.querySelector(".mask-thumb");
    thumb.src = maskDataUrl;
    thumb.hidden = false;
  }
  $("conversation").append(node);
  scrollDown();
  return node;
}

function addAssistantTurn() {
  const node = $("tpl-assistant").content.firstElementChild.cloneNode(true);
  $("conversation").append(node);
  scrollDown();
  return node;
}

const NODE_LABELS = {
  queued: (e) => `queued${e.position ? ` (${e.position} ahead)` : ""}`,
  planning: (e) => `round ${e.round} · planning`,
  plan: (e) => `round ${e.round} · plan ready, conditioning`,
  conditioning: (e) =>
    `round ${e.round} · conditioned via ${e.via === "projection" ? "projection layers" : "text encoder"}${e.lock ? " (layout lock)" : ""}`,
  step: (e) => `round ${e.round} · denoising step ${e.step}/${e.steps}`,
  describing: (e) => `round ${e.round} · describing the image`,
  critique: (e) => `round ${e.round} · agreement ${e.agreement.toFixed(2)}`,
  revised: (e) => `round ${e.round} · revised the plan`,
  done: () => "done",
};

function showProgress(turn, event) {
  const label = NODE_LABELS[event.type];
  if (label) turn.querySelector(".node").textContent = label(event);
  turn.dataset.node = event.type;
  const bar = turn.querySelector(".bar");
  if (event.type === "step") {
    bar.max = event.steps;
    bar.value = event.step;
    turn.dataset.step = `${event.step}/${event.steps}`;
    if (event.preview) {
      const preview = turn.querySelector(".preview");
      preview.src = `data:image/png;base64,${event.preview}`;
      preview.hidden = false;
    }
  } else if (event.type === "planning" || event.type === "revised") {
    bar.removeAttribute("value");
  }
}

function showError(turn, message) {
  turn.querySelector(".live").hidden = true;
  const box = turn.querySelector(".error");
  box.textContent = message;
  box.hidden = false;
  turn.classList.add("failed");
}

function roundItem(round, chosenIds) {
  const li = document.createElement("li");
  const chosen = round.images.some((image) => image && chosenIds.has(image.id));
  if (chosen) li.classList.add("chosen");
  const image = round.images.find(Boolean);
  if (image) {
    const img = document.createElement("img");
    img.src = image.url;
    img.alt = `round ${round.round}`;
    li.append(img);
  }
  const text = document.createElement("div");
  const head = document.createElement("strong");
  const agreement = round.critique ? `agreement ${round.critique.agreement.toFixed(2)}` : "no critique";
  head.textContent = `Round ${round.round} · ${agreement}${chosen ? " · chosen" : ""}`;
  head.className = "agreement";
  text.append(head);
  if (round.critique?.text) {
    const p = document.createElement("p");
    p.textContent = round.critique.text;
    text.append(p);
  }
  const settings = document.createElement("p");
  settings.className = "hint";
  settings.textContent = `${round.mode} · seed ${round.seeds.join(", ")} · ${round.settings.sampler}, ${round.settings.steps} steps, guidance ${round.settings.guidance}`;
  text.append(settings);
  if (round.repair) {
    const repair = document.createElement("p");
    repair.className = "hint";
    const from = round.repair.from === 0 ? "the session's image" : `round ${round.repair.from}'s image`;
    repair.textContent = `Repaired ${from}: ${round.repair.reason}`;
    text.append(repair);
  }
  if (round.plan) {
    const tokens = document.createElement("p");
    tokens.className = "plan-tokens small";
    renderTokens(tokens, round.plan);
    text.append(tokens);
  }
  li.append(text);
  return li;
}

function renderResult(turn, generation) {
  turn.querySelector(".live").hidden = true;
  const result = turn.querySelector(".result");
  const image = generation.images[0];
  const plan = generation.plans[0];
  const chosenIds = new Set(generation.images.map((i) => i.id));
  const best = generation.trace.find((r) => r.images.some((i) => i && chosenIds.has(i.id)));
  const img = result.querySelector(".image");
  img.src = image.url;
  img.dataset.seed = String(image.seed);
  result.querySelector(".caption").textContent = best?.caption ?? "";
  if (plan) {
    renderPlanFields(result.querySelector(".plan-fields"), plan);
    renderTokens(result.querySelector(".plan-tokens"), plan);
  } else {
    result.querySelector(".plan-fields").textContent = "(no planner: the request went to the text encoder)";
  }
  const settings = best?.settings ?? {};
  const total = generation.timings.total;
  result.querySelector(".meta").textContent = [
    `seed ${image.seed}`,
    settings.sampler,
    settings.steps && `${settings.steps} steps`,
    settings.guidance !== undefined && `guidance ${settings.guidance}`,
    best?.mode,
    total && `${(total / 1000).toFixed(2)} s`,
  ]
    .filter(Boolean)
    .join(" · ");
  const link = (className, text, href, name) => {
    const a = document.createElement("a");
    a.className = className;
    a.textContent = text;
    a.href = href;
    a.download = name;
    return a;
  };
  const traceUrl = URL.createObjectURL(
    new Blob([JSON.stringify(generation, null, 2)], { type: "application/json" }),
  );
  result
    .querySelector(".downloads")
    .replaceChildren(
      link("download", "Download PNG", image.url, `atelier-${generation.id}.png`),
      " · ",
      link("download-trace", "Trace (JSON)", traceUrl, `atelier-${generation.id}.json`),
    );
  const list = result.querySelector(".round-list");
  list.replaceChildren(...generation.trace.map((round) => roundItem(round, chosenIds)));
  result.querySelector(".rounds summary").textContent =
    `Critique rounds (${generation.trace.length})${best?.critique ? ` · agreement ${best.critique.agreement.toFixed(2)}` : ""}`;
  result.hidden = false;
  turn.classList.add("finished");
  turn.dataset.generation = generation.id;
  img.addEventListener("load", scrollDown, { once: true });
  return image;
}

function setLastImage(image) {
  state.lastImage = image ? { url: image.url } : null;
  $("mask-toggle").disabled = !image;
  mask.reset();
}

// Mask painting on the last image: painted pixels become transparent in the PNG sent (= repaint).

const mask = {
  width: 0,
  height: 0,
  painted: null,
  image: null,
  count: 0,
  drawing: false,

  reset() {
    this.painted = null;
    this.count = 0;
    this.image = null;
    $("mask-panel").hidden = true;
    this.status();
  },

  async open() {
    if (!state.lastImage) return;
    if (!this.image || this.image.dataset.url !== state.lastImage.url) {
      const image = new Image();
      image.dataset.url = state.lastImage.url;
      image.src = state.lastImage.url;
      await image.decode();
      this.image = image;
      this.width = image.naturalWidth;
      this.height = image.naturalHeight;
      this.painted = new Uint8Array(this.width * this.height);
      this.count = 0;
      const canvas = $("mask-canvas");
      canvas.width = this.width;
      canvas.height = this.height;
    }
    $("mask-panel").hidden = false;
    this.draw();
  },

  draw() {
    const canvas = $("mask-canvas");
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.image, 0, 0);
    const overlay = ctx.getImageData(0, 0, this.width, this.height);
    for (let i = 0; i < this.painted.length; i++) {
      if (!this.painted[i]) continue;
      overlay.data[i * 4] = (overlay.data[i * 4] + 255) / 2;
      overlay.data[i * 4 + 1] = overlay.data[i * 4 + 1] / 2;
      overlay.data[i * 4 + 2] = overlay.data[i * 4 + 2] / 2;
    }
    ctx.putImageData(overlay, 0, 0);
  },

  paintAt(event) {
    const canvas = $("mask-canvas");
    const box = canvas.getBoundingClientRect();
    const cx = ((event.clientX - box.left) / box.width) * this.width;
    const cy = ((event.clientY - box.top) / box.height) * this.height;
    const radius = (Number($("brush").value) / 2) * (this.width / 64);
    for (let y = Math.floor(cy - radius); y <= cy + radius; y++)
      for (let x = Math.floor(cx - radius); x <= cx + radius; x++) {
        if (x < 0 || y < 0 || x >= this.width || y >= this.height) continue;
        if ((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 > radius * radius) continue;
        const i = y * this.width + x;
        if (!this.painted[i]) this.count++;
        this.painted[i] = 1;
      }
    this.draw();
    this.status();
  },

  clear() {
    if (this.painted) this.painted.fill(0);
    this.count = 0;
    if (this.image) this.draw();
    this.status();
  },

  status() {
    $("mask-status").textContent = this.count ? `${this.count} pixels to repaint` : "nothing painted";
    $("mask-toggle").classList.toggle("active", this.count > 0);
  },

  /** The mask as a PNG data URL (transparent = repaint), or null when nothing is painted. */
  png() {
    if (!this.count) return null;
    const canvas = document.createElement("canvas");
    canvas.width = this.width;
    canvas.height = this.height;
    const ctx = canvas.getContext("2d");
    const data = ctx.createImageData(this.width, this.height);
    for (let i = 0; i < this.painted.length; i++) data.data[i * 4 + 3] = this.painted[i] ? 0 : 255;
    ctx.putImageData(data, 0, 0);
    return canvas.toDataURL("image/png");
  },
};

// Sending a message.

async function ensureSession(title) {
  if (state.sessionId) return state.sessionId;
  const session = await api("/v1/sessions", {
    method: "POST",
    body: JSON.stringify({ title: title.slice(0, 200) }),
  });
  state.sessionId = session.id;
  history.replaceState(null, "", `#${session.id}`);
  return session.id;
}

async function send(text) {
  const maskUrl = mask.png();
  addUserTurn(text, maskUrl);
  const turn = addAssistantTurn();
  const controller = new AbortController();
  state.running = { controller, id: null };
  setBusy(true);
  try {
    const session = await ensureSession(text);
    const body = { text, ...messageSettings(), ...(maskUrl ? { mask: maskUrl } : {}) };
    const created = await api(`/v1/sessions/${session}/messages`, {
      method: "POST",
      body: JSON.stringify(body),
      headers: { prefer: "respond-async" },
    });
    state.running.id = created.id;
    turn.querySelector(".cancel").addEventListener("click", () => {
      api(`/v1/generations/${created.id}/cancel`, { method: "POST" }).catch(() => {});
    });
    let failure = null;
    await followEvents(
      created.id,
      (event) => {
        if (event.type === "error") failure = event.error?.message ?? "the generation failed";
        else showProgress(turn, event);
      },
      controller.signal,
    );
    const generation = await api(`/v1/generations/${created.id}`);
    if (generation.status !== "succeeded")
      throw new Error(failure ?? generation.error?.message ?? generation.status);
    setLastImage(renderResult(turn, generation));
  } catch (error) {
    showError(turn, error.message);
  } finally {
    state.running = null;
    setBusy(false);
  }
}

function setBusy(busy) {
  $("send").disabled = busy;
  document.body.classList.toggle("busy", busy);
}

// Restoring a session from the address (#sess_…).

async function restore(sessionId) {
  let session;
  try {
    session = await api(`/v1/sessions/${sessionId}`);
  } catch {
    history.replaceState(null, "", location.pathname);
    return;
  }
  state.sessionId = session.id;
  let last = null;
  for (const message of session.messages) {
    if (message.role === "user") {
      addUserTurn(message.text, message.mask?.url ?? null);
      continue;
    }
    const turn = addAssistantTurn();
    try {
      last = renderResult(turn, await api(`/v1/generations/${message.generation_id}`));
    } catch (error) {
      showError(turn, error.message);
    }
  }
  setLastImage(last);
}

function newChat() {
  if (state.running) return;
  state.sessionId = null;
  history.replaceState(null, "", location.pathname);
  $("conversation").replaceChildren();
  setLastImage(null);
}

// Start.

async function start() {
  loadSettings();
  for (const name of fields) $(name).addEventListener("change", saveSettings);
  $("toggle-settings").addEventListener("click", () => {
    const panel = $("settings");
    panel.hidden = !panel.hidden;
    $("toggle-settings").setAttribute("aria-expanded", String(!panel.hidden));
  });
  $("new-chat").addEventListener("click", newChat);
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("message").value.trim();
    if (!text || state.running) return;
    $("message").value = "";
    send(text);
  });
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("mask-toggle").addEventListener("click", () => {
    if ($("mask-panel").hidden) mask.open();
    else $("mask-panel").hidden = true;
  });
  $("mask-close").addEventListener("click", () => {
    $("mask-panel").hidden = true;
  });
  $("mask-clear").addEventListener("click", () => mask.clear());
  const canvas = $("mask-canvas");
  canvas.addEventListener("pointerdown", (event) => {
    mask.drawing = true;
    canvas.setPointerCapture(event.pointerId);
    mask.paintAt(event);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (mask.drawing) mask.paintAt(event);
  });
  canvas.addEventListener("pointerup", () => {
    mask.drawing = false;
  });

  try {
    const health = await fetch("/health").then((r) => r.json());
    const engine = health.engine;
    state.engine = engine;
    if (engine?.name) {
      $("engine").textContent =
        `${engine.name}${engine.critique ? " + critique" : ""} · ${engine.sizes.map((s) => `${s.width}×${s.height}`).join(", ")}`;
      const select = $("sampler");
      const saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) ?? "{}").sampler ?? "";
      for (const name of engine.samplers) {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = name === engine.defaultSampler ? `${name} (default)` : name;
        select.append(option);
      }
      select.value = saved;
    } else {
      $("engine").textContent = `no model loaded: ${engine?.problem ?? "unknown"}`;
      $("engine").classList.add("problem");
    }
  } catch {
    $("engine").textContent = "server unreachable";
    $("engine").classList.add("problem");
  }
  const hash = location.hash.slice(1);
  if (/^sess_/.test(hash)) await restore(hash);
  document.body.dataset.ready = "true";
}

start();
