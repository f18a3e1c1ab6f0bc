/* kbengine inspection page: plain ES2020, no framework, no build, no network beyond this server.
 *
 * Every text from the server goes into the page through textContent (never innerHTML). Images
 * behind the API key are fetched with the Authorization header and shown as object URLs. */
"use strict";

(() => {
  const KEY_STORAGE = "kbengine.apiKey";
  const DEFAULT_QUESTION = "Is there a defect, and what type?";
  const PAGE_SIZE = 24;
  const POLL_MS = 1000;

  // ------------------------------------------------------------------ helpers

  const $ = (id) => document.getElementById(id);

  /** Create an element: el("p", {className: "x"}, "text", child, ...). */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "dataset") Object.assign(node.dataset, value);
      else if (name in node && name !== "list") node[name] = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const fmt = (x, digits = 3) => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "–");
  const pct = (x) => (typeof x === "number" && Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : "–");
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  /** The last two parts of a file path (the whole path goes in a tooltip). */
  const shortPath = (path) => (path ? String(path).split(/[\\/]/).filter(Boolean).slice(-2).join("/") : "");
  const label = (name) => (name === "good" ? "normal (good)" : String(name ?? "").replace(/_/g, " "));

  function apiKey() {
    try {
      return localStorage.getItem(KEY_STORAGE) || "";
    } catch {
      return "";
    }
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /** A readable reason from a FastAPI error body: a string detail or a validation list. */
  function detailText(body, fallback) {
    const detail = body && typeof body === "object" ? body.detail : body;
    if (typeof detail === "string" && detail) return detail;
    if (Array.isArray(detail)) {
      return detail
        .map((d) => (d && typeof d === "object" ? [(d.loc || []).slice(1).join("."), d.msg].filter(Boolean).join(": ") : String(d)))
        .join("; ");
    }
    if (detail && typeof detail === "object") return JSON.stringify(detail);
    return fallback;
  }

  /** What to tell the user about a failed call. */
  function explain(status, reason) {
    if (status === 401) return `An API key is needed: enter it under "API key" at the top. (${reason})`;
    if (status === 403) return `This API key is not allowed to do that. (${reason})`;
    if (status === 503) return `The server is busy; please retry in a moment. (${reason})`;
    if (status === 413) return `The upload is too large. (${reason})`;
    return reason;
  }

  /** fetch on this server with the API key; throws ApiError with a readable message on failure. */
  async function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    const key = apiKey();
    if (key) headers.set("Authorization", `Bearer ${key}`);
    let response;
    try {
      response = await fetch(path, { ...options, headers });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiError(0, "Cannot reach the server. Check the connection and retry.");
    }
    if (!response.ok) {
      let body = null;
      try {
        body = await response.json();
      } catch {
        /* not JSON */
      }
      const reason = detailText(body, `${response.status} ${response.statusText || "error"}`);
      if (response.status === 401 || response.status === 403) askForKey();
      throw new ApiError(response.status, explain(response.status, reason));
    }
    return response;
  }

  const apiJson = async (path, options) => (await api(path, options)).json();

  function errorMessage(err) {
    if (err instanceof ApiError) return err.message;
    return (err && err.message) || String(err);
  }

  // Blobs (thumbnails) are fetched once per page life and kept as object URLs.
  const blobUrls = new Map();
  function blobName(imagePath) {
    if (!imagePath) return null;
    const parts = String(imagePath).split(/[\\/]/);
    return parts[parts.length - 1] || null;
  }
  function loadBlob(name) {
    if (!blobUrls.has(name)) {
      const promise = api(`v1/blobs/${encodeURIComponent(name)}`)
        .then((r) => r.blob())
        .then((b) => URL.createObjectURL(b));
      promise.catch(() => blobUrls.delete(name)); // a later view may retry
      blobUrls.set(name, promise);
    }
    return blobUrls.get(name);
  }

  /** A thumbnail <img> (or a placeholder) for a blob path; filled in when it arrives. */
  function thumbnail(imagePath, alt) {
    const name = blobName(imagePath);
    if (!name) return el("div", { className: "thumb missing" }, "no image");
    const img = el("img", { className: "thumb", alt: alt || "", loading: "lazy", decoding: "async" });
    loadBlob(name).then(
      (url) => {
        img.src = url;
      },
      () => {
        img.replaceWith(el("div", { className: "thumb missing" }, "image unavailable"));
      },
    );
    return img;
  }

  // ------------------------------------------------------------------ notices, key, server info

  function notice(text) {
    const node = $("notice");
    node.textContent = text || "";
    node.hidden = !text;
  }

  function askForKey() {
    const box = $("keybox");
    if (!box.open) box.open = true;
    $("api-key").focus();
  }

  function showKeyState() {
    const key = apiKey();
    $("key-summary").textContent = key ? "API key ✓" : "API key";
    $("api-key").value = key;
    checkScope();
  }

  // A read-only key cannot ingest: say so on the Ingest tab instead of failing with 403 later.
  async function checkScope() {
    const submit = $("ingest-submit");
    const note = $("ingest-scope");
    try {
      const who = await apiJson("v1/whoami");
      const canWrite = !who.keys || who.scope === "write";
      submit.disabled = !canWrite;
      note.hidden = canWrite;
      note.textContent = who.scope === "read"
        ? "This API key is read-only: ingesting needs a key with the write scope."
        : "Ingesting needs an API key with the write scope (set it with the API key button).";
    } catch {
      submit.disabled = false;
      note.hidden = true;
    }
  }

  function setupKey() {
    showKeyState();
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      try {
        const value = $("api-key").value.trim();
        if (value) localStorage.setItem(KEY_STORAGE, value);
        else localStorage.removeItem(KEY_STORAGE);
      } catch {
        notice("This browser does not allow storing the key.");
      }
      showKeyState();
      $("keybox").open = false;
      notice("");
      refreshInfo();
    });
    $("key-clear").addEventListener("click", () => {
      try {
        localStorage.removeItem(KEY_STORAGE);
      } catch {
        /* nothing stored */
      }
      showKeyState();
      refreshInfo();
    });
  }

  async function checkHealth() {
    const dot = $("server-status");
    try {
      const response = await fetch("readyz");
      dot.className = response.ok ? "dot ok" : "dot bad";
      dot.title = response.ok ? "server ready" : "server not ready";
    } catch {
      dot.className = "dot bad";
      dot.title = "server unreachable";
    }
  }

  // /v1/info is shared by all tabs: categories for the selects, the knowledge table.
  let info = null;
  let infoPromise = null;

  function refreshInfo() {
    infoPromise = apiJson("v1/info").then(
      (data) => {
        info = data;
        fillFromInfo(data);
        return data;
      },
      (err) => {
        notice(errorMessage(err));
        throw err;
      },
    );
    infoPromise.catch(() => {});
    return infoPromise;
  }

  function categories(data) {
    return [...new Set((data.entries || []).map((e) => e.category))].sort();
  }
  function typesOf(data, category) {
    return [
      ...new Set((data.entries || []).filter((e) => !category || e.category === category).map((e) => e.defect_type)),
    ].sort();
  }

  function fillSelect(select, values, firstLabel, labeller = (v) => v) {
    const keep = select.value;
    select.replaceChildren(el("option", { value: "" }, firstLabel));
    for (const value of values) select.append(el("option", { value }, labeller(value)));
    if (values.includes(keep)) select.value = keep;
  }

  function fillDatalist(list, values) {
    list.replaceChildren(...values.map((value) => el("option", { value })));
  }

  function fillFromInfo(data) {
    const cats = categories(data);
    fillSelect($("inspect-category"), cats, "Infer from the knowledge base");
    fillSelect($("doc-category"), cats, "All");
    fillSelect($("doc-type"), typesOf(data, $("doc-category").value), "All", label);
    fillDatalist($("domain-list"), data.domains || []);
    fillDatalist($("category-list"), cats);
    fillDatalist($("type-list"), typesOf(data, ""));
    $("server-info").textContent =
      `${data.documents} documents · ${data.locks} locks · encoder ${data.encoder} · ${data.store}`;
    renderKnowledgeTable(data);
  }

  // ------------------------------------------------------------------ tabs

  const TABS = ["inspect", "knowledge", "ingest"];
  const tabLoaded = new Set();

  function showTab(name, focus = false) {
    if (!TABS.includes(name)) name = "inspect";
    for (const tab of TABS) {
      const button = $(`tab-${tab}`);
      const selected = tab === name;
      button.setAttribute("aria-selected", String(selected));
      button.tabIndex = selected ? 0 : -1;
      $(`panel-${tab}`).hidden = !selected;
    }
    if (focus) $(`tab-${name}`).focus();
    if (name === "knowledge" && !tabLoaded.has(name)) {
      tabLoaded.add(name);
      loadDocuments(0);
    }
    if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  }

  function setupTabs() {
    for (const tab of TABS) $(`tab-${tab}`).addEventListener("click", () => showTab(tab));
    $("tab-inspect").parentElement.addEventListener("keydown", (event) => {
      const current = TABS.findIndex((t) => $(`tab-${t}`).getAttribute("aria-selected") === "true");
      let next = null;
      if (event.key === "ArrowRight") next = (current + 1) % TABS.length;
      else if (event.key === "ArrowLeft") next = (current + TABS.length - 1) % TABS.length;
      else if (event.key === "Home") next = 0;
      else if (event.key === "End") next = TABS.length - 1;
      if (next !== null) {
        event.preventDefault();
        showTab(TABS[next], true);
      }
    });
    window.addEventListener("hashchange", () => showTab(location.hash.slice(1)));
    showTab(location.hash.slice(1) || "inspect");
  }

  // ------------------------------------------------------------------ Inspect

  let run = null; // {controller, urls: [object URLs to revoke]}

  function setState(state) {
    const result = $("inspect-result");
    result.dataset.state = state;
    result.setAttribute("aria-busy", String(state === "running"));
    $("inspect-submit").disabled = state === "running";
  }

  function progress(text) {
    $("inspect-progress").textContent = text || "";
  }

  function showError(message) {
    const node = $("error");
    node.textContent = message;
    node.hidden = false;
    if (!$("verdict").textContent) $("result-grid").hidden = true; // no detection to show
    setState("error");
    progress("");
    $("answer").classList.remove("streaming");
  }

  function resetResult() {
    $("error").hidden = true;
    $("error").textContent = "";
    $("result-grid").hidden = true;
    $("answer-card").hidden = true;
    $("hits-card").hidden = true;
    $("verdict").textContent = "";
    $("verdict").className = "verdict";
    $("score").replaceChildren();
    $("defect-type").replaceChildren();
    $("regions").replaceChildren();
    $("boxes").replaceChildren();
    $("evidence").hidden = true;
    $("evidence-list").replaceChildren();
    $("answer").replaceChildren();
    $("answer").classList.remove("streaming");
    $("answer-notes").replaceChildren();
    $("hits").replaceChildren();
    $("feedback-card").hidden = true;
    $("feedback-status").textContent = "";
    const heatmap = $("heatmap");
    heatmap.removeAttribute("src");
    heatmap.hidden = true;
    const photo = $("photo-view");
    photo.removeAttribute("src");
    photo.classList.remove("raw");
  }

  function previewChosen() {
    const file = $("photo").files[0];
    const preview = $("drop-preview");
    if (preview.src) URL.revokeObjectURL(preview.src);
    if (!file) {
      preview.hidden = true;
      preview.removeAttribute("src");
      $("drop-label").textContent = "Take or choose a photo";
      return;
    }
    preview.hidden = false;
    preview.onerror = () => {
      preview.hidden = true;
    };
    preview.src = URL.createObjectURL(file);
    $("drop-label").textContent = file.name || "photo";
  }

  function setupDrop() {
    const drop = $("drop");
    const input = $("photo");
    input.addEventListener("change", previewChosen);
    for (const type of ["dragenter", "dragover"]) {
      drop.addEventListener(type, () => drop.classList.add("over"));
    }
    for (const type of ["dragleave", "drop"]) {
      drop.addEventListener(type, () => drop.classList.remove("over"));
    }
  }

  /** Render a Detection: verdict, score, type, regions, heat map and boxes. */
  function renderDetection(det) {
    $("result-grid").hidden = false;
    const width = det.width || 1;
    const height = det.height || 1;
    $("stage").style.setProperty("--ar", String(width / height));
    fixOrientation(width, height);

    const verdict = $("verdict");
    if (det.is_anomalous === true) {
      verdict.textContent = "Defective";
      verdict.className = "verdict bad";
    } else if (det.is_anomalous === false) {
      verdict.textContent = "Normal";
      verdict.className = "verdict good";
    } else {
      verdict.textContent = "Score only (not calibrated)";
      verdict.className = "verdict unknown";
    }

    // score against the threshold: the bar spans 0 .. 2 × threshold (or 0 .. 1 without one)
    const score = $("score");
    const hasThreshold = typeof det.threshold === "number";
    const span = hasThreshold && det.threshold > 0 ? 2 * det.threshold : Math.max(1, det.score || 0);
    const fill = Math.max(0, Math.min(1, (det.score || 0) / span));
    const meter = el(
      "div",
      { className: "meter", role: "img", "aria-label": `anomaly score ${fmt(det.score)}` },
      el("div", { className: `meter-fill${det.is_anomalous ? " over" : ""}` }),
    );
    meter.firstChild.style.width = `${(100 * fill).toFixed(1)}%`;
    if (hasThreshold) {
      const mark = el("div", { className: "meter-mark", title: "threshold" });
      mark.style.left = `${((100 * det.threshold) / span).toFixed(1)}%`;
      meter.append(mark);
    }
    score.replaceChildren(
      el(
        "div",
        {},
        el("span", { className: "field-name" }, "Anomaly score "),
        fmt(det.score),
        hasThreshold ? ` (threshold ${fmt(det.threshold)})` : " (no calibrated threshold)",
      ),
      meter,
    );
    if (det.category) {
      score.append(el("div", { className: "muted" }, `Category: ${label(det.category)}`));
    }

    // predicted defect type
    const typeBox = $("defect-type");
    const pred = det.predicted_defect_type;
    if (pred) {
      const runners = (pred.ranking || [])
        .filter((r) => !(r.category === pred.category && r.defect_type === pred.defect_type))
        .slice(0, 3)
        .map((r) => `${label(r.defect_type)} ${fmt(r.fused ?? r.similarity, 2)}`);
      typeBox.replaceChildren(
        el("div", { className: "field-name" }, det.is_anomalous === false ? "Nearest defect type" : "Predicted defect type"),
        el("div", { className: "type-name" }, label(pred.defect_type), el("span", { className: "muted" }, ` · ${label(pred.category)}`)),
        el(
          "div",
          { className: "muted" },
          `similarity ${fmt(pred.similarity)} · margin ${pred.margin === null || pred.margin === undefined ? "n/a" : fmt(pred.margin)}` +
            (pred.key ? ` · key ${pred.key}` : ""),
        ),
        runners.length ? el("div", { className: "muted" }, `runners-up: ${runners.join(", ")}`) : null,
      );
    } else {
      typeBox.replaceChildren(el("div", { className: "muted" }, "No defect type predicted."));
    }

    // regions: a list for everyone, boxes over the photo
    const list = $("regions");
    const boxes = $("boxes");
    list.replaceChildren();
    boxes.replaceChildren();
    (det.regions || []).forEach((region, i) => {
      const [x0, y0, x1, y1] = region.bbox;
      list.append(
        el("li", {}, `${region.location || "region"}: ${pct(region.area_fraction)} of the image, peak ${fmt(region.peak)}`),
      );
      const box = el("div", { className: "box" }, el("span", { className: "box-label" }, String(i + 1)));
      box.style.left = `${(100 * x0) / width}%`;
      box.style.top = `${(100 * y0) / height}%`;
      box.style.width = `${(100 * Math.max(1, x1 - x0)) / width}%`;
      box.style.height = `${(100 * Math.max(1, y1 - y0)) / height}%`;
      if (y0 / height < 0.08) box.classList.add("top-edge");
      boxes.append(box);
    });
    if (!(det.regions || []).length) list.append(el("li", { className: "muted" }, "No suspicious region."));
    boxes.classList.toggle("faint", det.is_anomalous === false); // below the threshold: only suspicious
    boxes.hidden = !$("toggle-boxes").checked;

    // heat map
    const heatmap = $("heatmap");
    if (det.heatmap) heatmap.src = det.heatmap;
    heatmap.hidden = !$("toggle-heatmap").checked || !det.heatmap;

    // evidence
    const ev = det.evidence || {};
    const facts = [];
    if (ev.references) facts.push(`${plural(ev.references, "normal reference")} in the memory bank`);
    if (ev.zero_shot) facts.push("zero-shot prompts scored the patches");
    if (ev.fusion) facts.push(`fusion: ${ev.fusion}`);
    if (ev.calibrated) facts.push("threshold calibrated on normal references");
    if (ev.domain) facts.push(`domain: ${ev.domain}`);
    for (const note of ev.notes || []) facts.push(note);
    const timings = Object.entries(det.timings_ms || {}).map(([k, v]) => `${k} ${Math.round(v)} ms`);
    if (timings.length) facts.push(`timings: ${timings.join(", ")}`);
    $("evidence-list").replaceChildren(...facts.map((f) => el("li", {}, f)));
    $("evidence").hidden = !facts.length;
  }

  /** Browsers turn photos by their EXIF orientation; the server reads raw pixels. When the server's
   *  width/height are the displayed ones swapped, show the raw pixels so the heat map lines up. */
  function fixOrientation(width, height) {
    const photo = $("photo-view");
    const check = () => {
      const w = photo.naturalWidth;
      const h = photo.naturalHeight;
      if (!w || !h || w === h) return;
      const sameShape = Math.abs(w / h - width / height) < 0.02;
      const swapped = Math.abs(h / w - width / height) < 0.02;
      if (swapped && !sameShape) photo.classList.add("raw");
    };
    if (photo.complete) check();
    else photo.addEventListener("load", check, { once: true });
  }

  /** Turn "[n]" in the answer text into links to the hit cards. */
  function renderAnswerText(text, ranks) {
    const answer = $("answer");
    const nodes = [];
    const pattern = /\[(\d+)\]/g;
    let last = 0;
    let match;
    while ((match = pattern.exec(text)) !== null) {
      const rank = Number(match[1]);
      if (!ranks.has(rank)) continue;
      if (match.index > last) nodes.push(document.createTextNode(text.slice(last, match.index)));
      const link = el("a", { className: "cite", href: `#hit-${rank}`, title: `Knowledge card ${rank}` }, match[0]);
      link.addEventListener("click", (event) => {
        event.preventDefault();
        const card = $(`hit-${rank}`);
        if (!card) return;
        card.scrollIntoView({ behavior: "smooth", block: "center" });
        card.classList.add("flash");
        card.focus({ preventScroll: true });
        setTimeout(() => card.classList.remove("flash"), 1500);
      });
      nodes.push(link);
      last = pattern.lastIndex;
    }
    if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
    answer.replaceChildren(...nodes);
  }

  function hitCard(hit) {
    const s = hit.sections || {};
    const where = [shortPath(hit.source) || null, hit.page ? `page ${hit.page}` : null].filter(Boolean);
    const section = (name, text) => (text ? el("p", {}, el("span", { className: "field-name" }, `${name}: `), text) : null);
    return el(
      "li",
      { className: "hit", id: `hit-${hit.rank}`, tabIndex: -1 },
      thumbnail(hit.image_path, `Knowledge image for ${hit.title}`),
      el(
        "div",
        { className: "card-body" },
        el("h3", {}, el("span", { className: "rank" }, `[${hit.rank}]`), el("span", { className: "hit-title" }, hit.title || hit.doc_id)),
        el(
          "div",
          { className: "tags" },
          el("span", { className: "tag" }, label(hit.category)),
          el("span", { className: `tag type${hit.defect_type === "good" ? " good" : ""}` }, label(hit.defect_type)),
          el("span", { className: "tag", title: "similarity" }, `score ${fmt(hit.score, 2)}`),
        ),
        section("Description", s.description),
        section("Causes", s.causes),
        section("Consequences", s.consequences),
        where.length ? el("p", { className: "source", title: hit.source || "" }, where.join(" · ")) : null,
      ),
    );
  }

  function renderAnswer(answer) {
    const hits = answer.hits || [];
    $("hits").replaceChildren(...hits.map(hitCard));
    $("hits-card").hidden = false;
    if (!hits.length) $("hits").append(el("li", { className: "muted" }, "No knowledge documents were retrieved."));
    renderAnswerText(answer.text || "", new Set(hits.map((h) => h.rank)));
    const notes = [...(answer.notes || [])];
    if (answer.llm) notes.unshift(answer.llm === "none" ? "Written as a grounded report (no language model)." : `Written by ${answer.llm}.`);
    $("answer-notes").replaceChildren(...notes.map((n) => el("li", {}, n)));
  }

  /** Read a text/event-stream body: yields {event, data} with data JSON-parsed when it can be. */
  async function* readEvents(response, signal) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    const parse = (block) => {
      let event = "message";
      const data = [];
      for (const line of block.split(/\r\n|\r|\n/)) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
      }
      if (!data.length) return null;
      const raw = data.join("\n");
      try {
        return { event, data: JSON.parse(raw) };
      } catch {
        return { event, data: raw };
      }
    };
    try {
      for (;;) {
        if (signal && signal.aborted) return;
        const { value, done } = await reader.read();
        buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
        let cut;
        while ((cut = buffer.search(/\r\n\r\n|\n\n|\r\r/)) >= 0) {
          const sep = buffer.slice(cut).match(/^(\r\n\r\n|\n\n|\r\r)/)[0].length;
          const item = parse(buffer.slice(0, cut));
          buffer = buffer.slice(cut + sep);
          if (item) yield item;
        }
        if (done) {
          const item = parse(buffer);
          if (item) yield item;
          return;
        }
      }
    } finally {
      reader.releaseLock();
    }
  }

  async function inspect(event) {
    event.preventDefault();
    const file = $("photo").files[0];
    if (!file) {
      resetResult();
      showError("Choose or take a photo first.");
      $("photo").focus();
      return;
    }
    if (run) run.controller.abort();
    const controller = new AbortController();
    const current = { controller, urls: [] };
    if (run) run.urls.forEach((u) => URL.revokeObjectURL(u));
    run = current;
    const signal = controller.signal;
    const alive = () => run === current && !signal.aborted;

    resetResult();
    setState("running");
    const category = $("inspect-category").value;
    const question = $("question").value.trim() || DEFAULT_QUESTION;

    // the photo, at once (its aspect ratio until the detection gives the server's)
    const url = URL.createObjectURL(file);
    current.urls.push(url);
    const photo = $("photo-view");
    photo.src = url;
    photo.addEventListener(
      "load",
      () => {
        if (alive() && !$("verdict").textContent && photo.naturalHeight) {
          $("stage").style.setProperty("--ar", String(photo.naturalWidth / photo.naturalHeight));
        }
      },
      { once: true },
    );
    $("result-grid").hidden = false;

    try {
      // one request: the detection (with its heatmap) arrives first, then the answer's tokens
      progress("Looking for anomalies…");
      const answerBox = $("answer");
      const askForm = new FormData();
      askForm.append("image", file, file.name || "photo");
      askForm.append("question", question);
      if (category) askForm.append("category", category);
      askForm.append("stream", "true");
      askForm.append("heatmap", "true");
      const response = await api("v1/ask", {
        method: "POST",
        body: askForm,
        signal,
        headers: { Accept: "text/event-stream" },
      });
      lastInspection = { id: response.headers.get("X-Inspection-Id"), file, category, det: null };
      const detected = (det) => {
        lastInspection.det = det;
        renderDetection(det);
        progress("Retrieving knowledge and writing the answer…");
        $("answer-card").hidden = false;
        answerBox.classList.add("streaming");
      };
      let answer = null;
      const type = response.headers.get("content-type") || "";
      if (!type.includes("text/event-stream")) {
        answer = await response.json(); // a server that does not stream answers with the JSON
      } else {
        let streamed = "";
        for await (const item of readEvents(response, signal)) {
          if (!alive()) return;
          if (item.event === "detection") {
            detected(item.data);
          } else if (item.event === "token") {
            streamed += item.data && typeof item.data === "object" ? item.data.text || "" : String(item.data);
            answerBox.textContent = streamed;
          } else if (item.event === "answer") {
            answer = item.data;
          } else if (item.event === "error") {
            throw new ApiError(500, detailText(item.data, "The answer failed."));
          }
        }
      }
      if (!alive()) return;
      if (!answer || typeof answer !== "object") throw new Error("The answer stream ended before the answer.");
      if (!$("verdict").textContent && answer.detection) detected(answer.detection);
      answerBox.classList.remove("streaming");
      renderAnswer(answer);
      showFeedback();
      progress("");
      setState("done");
    } catch (err) {
      if (err && err.name === "AbortError") return;
      if (alive()) showError(errorMessage(err));
    }
  }

  // ------------------------------------------------------------------ Feedback

  let lastInspection = null; // {id, file, category, det}

  function feedbackCategory() {
    const li = lastInspection || {};
    return (li.det && li.det.category) || li.category || "";
  }

  function showFeedback() {
    if (!lastInspection) return;
    const category = feedbackCategory();
    const det = lastInspection.det || {};
    const pred = det.predicted_defect_type;
    const shown = det.is_anomalous === false ? "good" : pred ? pred.defect_type : "";
    $("feedback-card").hidden = false;
    $("feedback-confirm").dataset.type = shown;
    $("feedback-confirm").disabled = !shown || !category;
    $("feedback-confirm").textContent = shown ? `Confirm (${label(shown)})` : "Confirm";
    const types = info ? typesOf(info, category).filter((t) => t !== shown) : [];
    fillSelect($("feedback-type"), types, "Choose a type", label);
    $("feedback-status").textContent = category ? "" : "No category known for this result: choose one and inspect again.";
  }

  async function sendFeedback(defectType) {
    const li = lastInspection;
    const category = feedbackCategory();
    const status = $("feedback-status");
    if (!li || !category || !defectType) {
      status.textContent = !defectType ? "Choose or type a defect type first." : "A category is needed.";
      return;
    }
    const form = new FormData();
    form.append("category", category);
    form.append("defect_type", defectType);
    const note = $("feedback-note").value.trim();
    if (note) form.append("note", note);
    if (li.id) form.append("inspection", li.id);
    else form.append("image", li.file, li.file.name || "photo");
    status.textContent = "Sending…";
    status.dataset.state = "running";
    try {
      const report = await apiJson("v1/feedback", { method: "POST", body: form });
      const what = report.normal_reference ? "a normal reference" : `a ${label(report.defect_type)} example`;
      const words = { added: "Stored as", relabelled: "Relabelled as", updated: "Updated:", unchanged: "Unchanged:" };
      status.textContent =
        `${words[report.status] || report.status} ${what} of ${label(report.category)}` +
        (report.previous ? ` (was ${report.previous})` : "") + ` · ${report.source}`;
      status.dataset.state = report.status;
      status.dataset.docId = report.doc_id || "";
      refreshInfo();
      tabLoaded.delete("knowledge");
    } catch (err) {
      status.textContent = errorMessage(err);
      status.dataset.state = "error";
    }
  }

  function setupFeedback() {
    $("feedback-confirm").addEventListener("click", () => sendFeedback($("feedback-confirm").dataset.type));
    $("feedback-good").addEventListener("click", () => sendFeedback("good"));
    $("feedback-correct").addEventListener("click", () =>
      sendFeedback($("feedback-new").value.trim() || $("feedback-type").value),
    );
  }

  function setupInspect() {
    setupFeedback();
    setupDrop();
    $("inspect-form").addEventListener("submit", inspect);
    $("toggle-heatmap").addEventListener("change", (e) => {
      $("heatmap").hidden = !e.target.checked || !$("heatmap").getAttribute("src");
    });
    $("toggle-boxes").addEventListener("change", (e) => {
      $("boxes").hidden = !e.target.checked;
    });
    const opacity = $("heatmap-opacity");
    const setOpacity = () => {
      $("heatmap").style.opacity = String(Number(opacity.value) / 100);
    };
    opacity.addEventListener("input", setOpacity);
    setOpacity();
  }

  // ------------------------------------------------------------------ Knowledge

  let docOffset = 0;

  function renderKnowledgeTable(data) {
    $("kb-summary").textContent =
      `${plural(data.documents, "document")} from ${plural(data.sources, "source")}, ` +
      `${plural(data.locks, "lock")} · domains: ${(data.domains || []).join(", ") || "–"} · ` +
      `encoder ${data.encoder} (${data.image_dim}-d) · store ${data.store} · ${data.location}`;
    const warnings = [];
    if ((data.without_references || []).length) {
      warnings.push(
        `No normal references (defect type "good") for: ${data.without_references.join(", ")}; ` +
          "detection there is zero-shot or uncalibrated.",
      );
    }
    $("kb-warnings").textContent = warnings.join(" ");
    $("kb-warnings").hidden = !warnings.length;

    const rows = [...(data.entries || [])].sort(
      (a, b) =>
        a.category.localeCompare(b.category) ||
        (a.defect_type === "good" ? -1 : b.defect_type === "good" ? 1 : a.defect_type.localeCompare(b.defect_type)),
    );
    const body = $("kb-table").tBodies[0];
    body.replaceChildren(
      ...rows.map((entry) => {
        const locks = Object.entries(entry.locks || {})
          .map(([kind, n]) => `${kind} ${n}`)
          .join(", ");
        const row = el(
          "tr",
          { tabIndex: 0, title: "Show these documents" },
          el("td", {}, label(entry.category)),
          el("td", {}, label(entry.defect_type)),
          el("td", {}, String(entry.documents)),
          el("td", { className: "muted" }, locks),
        );
        const pick = () => {
          $("doc-category").value = entry.category;
          fillSelect($("doc-type"), typesOf(data, entry.category), "All", label);
          $("doc-type").value = entry.defect_type;
          loadDocuments(0);
        };
        row.addEventListener("click", pick);
        row.addEventListener("keydown", (e) => {
          if (e.key === "Enter" || e.key === " ") {
            e.preventDefault();
            pick();
          }
        });
        return row;
      }),
    );
    if (!rows.length) body.append(el("tr", {}, el("td", { colSpan: 4, className: "muted" }, "The knowledge base is empty.")));
  }

  function docCard(doc) {
    const kinds = Object.entries(doc.kinds || {})
      .map(([kind, n]) => `${kind} ${n}`)
      .join(", ");
    const pages = (doc.pages || []).length ? `pages ${doc.pages.join(", ")}` : null;
    return el(
      "li",
      { className: doc.feedback ? "doc fed" : "doc" },
      thumbnail(doc.image_path, `Image of ${doc.title}`),
      el(
        "div",
        { className: "card-body" },
        el("h3", { className: "doc-title" }, doc.title || doc.doc_id),
        el(
          "div",
          { className: "tags" },
          el("span", { className: "tag" }, doc.domain),
          el("span", { className: "tag" }, label(doc.category)),
          el("span", { className: `tag type${doc.defect_type === "good" ? " good" : ""}` }, label(doc.defect_type)),
        ),
        kinds ? el("p", { className: "muted" }, kinds) : null,
        el("p", { className: "source", title: doc.source || "" }, [shortPath(doc.source), pages].filter(Boolean).join(" · ")),
        doc.feedback
          ? el(
              "p",
              { className: "fed-back" },
              el("span", { className: "tag badge" }, "fed back"),
              ` ${doc.feedback.at || ""}`,
              doc.feedback.note ? ` · ${doc.feedback.note}` : "",
            )
          : null,
      ),
    );
  }

  let docRequest = 0;

  async function loadDocuments(offset) {
    const ticket = ++docRequest;
    const params = new URLSearchParams({ offset: String(Math.max(0, offset)), limit: String(PAGE_SIZE) });
    const category = $("doc-category").value;
    const type = $("doc-type").value;
    if (category) params.set("category", category);
    if (type) params.set("defect_type", type);
    $("doc-status").textContent = "Loading…";
    try {
      const page = await apiJson(`v1/documents?${params}`);
      if (ticket !== docRequest) return;
      docOffset = page.offset || 0;
      const docs = page.documents || [];
      $("doc-list").replaceChildren(...docs.map(docCard));
      const total = page.total || 0;
      $("doc-status").textContent = total ? "" : "No documents match.";
      $("doc-page").textContent = total ? `${docOffset + 1}–${docOffset + docs.length} of ${total}` : "";
      $("doc-prev").disabled = docOffset <= 0;
      $("doc-next").disabled = docOffset + docs.length >= total;
    } catch (err) {
      if (ticket !== docRequest) return;
      $("doc-status").textContent = errorMessage(err);
    }
  }

  function setupKnowledge() {
    $("doc-category").addEventListener("change", () => {
      if (info) fillSelect($("doc-type"), typesOf(info, $("doc-category").value), "All", label);
    });
    $("doc-filter").addEventListener("submit", (e) => {
      e.preventDefault();
      loadDocuments(0);
    });
    $("doc-prev").addEventListener("click", () => loadDocuments(docOffset - PAGE_SIZE));
    $("doc-next").addEventListener("click", () => loadDocuments(docOffset + PAGE_SIZE));
    $("kb-refresh").addEventListener("click", () => {
      refreshInfo();
      loadDocuments(docOffset);
    });
  }

  // ------------------------------------------------------------------ Ingest

  let polling = null;

  function renderJob(job) {
    const total = job.total || 0;
    const done = job.done || 0;
    const bar = $("ingest-progress");
    bar.max = Math.max(1, total);
    if (job.state === "queued") bar.removeAttribute("value"); // indeterminate
    else bar.value = job.state === "done" ? bar.max : done;
    const states = { queued: "Queued…", running: "Ingesting…", done: "Done.", failed: "Failed." };
    $("ingest-status").textContent = `${states[job.state] || job.state} ${total ? `${done} of ${plural(total, "file")}` : ""}`;
    $("ingest-result").dataset.state = job.state;
    const errorBox = $("ingest-error");
    errorBox.textContent = job.error || "";
    errorBox.hidden = !job.error;
    if (job.report) renderReport(job.report);
  }

  function renderReport(report) {
    const facts = [
      ["Documents", report.documents],
      ["Locks added", report.locks_added],
      ["Locks removed", report.locks_removed],
      ["Regions added", report.regions_added],
      ["Pages", report.pages],
      ["Figures", report.figures],
      ["Images", report.images],
      ["Seconds", typeof report.seconds === "number" ? report.seconds.toFixed(1) : undefined],
    ].filter(([, v]) => v !== undefined && v !== null);
    const parts = [el("h3", {}, "Report"), el("dl", {}, ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]))];
    const failed = report.failed || [];
    if (failed.length) {
      parts.push(
        el("h3", {}, `Failed (${failed.length})`),
        el("ul", {}, ...failed.map((f) => el("li", {}, el("span", { className: "field-name" }, blobName(f.path) || f.path), `: ${f.reason}`))),
      );
    }
    const sources = report.sources || [];
    if (sources.length) {
      parts.push(
        el("h3", {}, "Files"),
        el(
          "ul",
          {},
          ...sources.map((s) =>
            el("li", {}, `${blobName(s.path) || s.path}: ${s.status}`, s.documents ? ` · ${plural(s.documents, "document")}` : "", s.reason ? ` (${s.reason})` : ""),
          ),
        ),
      );
    }
    const unlabeled = report.unlabeled || [];
    if (unlabeled.length) {
      parts.push(
        el("h3", {}, "Needs labels"),
        el("ul", {}, ...unlabeled.map((u) => el("li", {}, `${u.title}: missing ${(u.missing || []).join(", ")}${u.hint ? `. ${u.hint}` : ""}`))),
      );
    }
    if ((report.without_references || []).length) {
      parts.push(el("p", { className: "warn" }, `No normal references for: ${report.without_references.join(", ")}`));
    }
    if ((report.notes || []).length) parts.push(el("ul", { className: "notes" }, ...report.notes.map((n) => el("li", {}, n))));
    $("ingest-report").replaceChildren(el("div", { className: "report" }, ...parts));
  }

  async function ingest(event) {
    event.preventDefault();
    const files = [...$("ingest-files").files];
    $("ingest-result").hidden = false;
    $("ingest-report").replaceChildren();
    if (!files.length) {
      $("ingest-status").textContent = "";
      $("ingest-error").textContent = "Choose one or more files first.";
      $("ingest-error").hidden = false;
      return;
    }
    if (polling) clearTimeout(polling);
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    for (const [field, id] of [["domain", "ingest-domain"], ["category", "ingest-category"], ["defect_type", "ingest-type"]]) {
      const value = $(id).value.trim();
      if (value) form.append(field, value);
    }
    const button = $("ingest-submit");
    button.disabled = true;
    $("ingest-error").hidden = true;
    $("ingest-status").textContent = `Uploading ${plural(files.length, "file")}…`;
    $("ingest-progress").removeAttribute("value");
    try {
      let job = await apiJson("v1/ingest", { method: "POST", body: form });
      renderJob(job);
      while (job.state === "queued" || job.state === "running") {
        await new Promise((resolve) => {
          polling = setTimeout(resolve, POLL_MS);
        });
        job = await apiJson(`v1/jobs/${encodeURIComponent(job.id)}`);
        renderJob(job);
      }
      if (job.state === "done") {
        refreshInfo();
        tabLoaded.delete("knowledge"); // the documents list reloads on the next visit
      }
    } catch (err) {
      $("ingest-status").textContent = "Not ingested.";
      $("ingest-error").textContent = errorMessage(err);
      $("ingest-error").hidden = false;
      $("ingest-result").dataset.state = "error";
    } finally {
      button.disabled = false;
    }
  }

  function setupIngest() {
    $("ingest-form").addEventListener("submit", ingest);
  }

  // ------------------------------------------------------------------ start

  function start() {
    setupKey();
    setupInspect();
    setupKnowledge();
    setupIngest();
    setupTabs();
    checkHealth();
    refreshInfo();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
