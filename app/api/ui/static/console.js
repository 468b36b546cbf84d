// docvec console: what JavaScript adds to pages that work without it. Plain ES2017, no build.
// - project page: drag-and-drop upload, one request per file with its answer in words; the
//   documents table and progress bar live over Server-Sent Events, polling when they fail;
// - ask page: the answer streamed in, each [n] a link that opens its source;
// - index versions: build progress refreshed while a version builds;
// - every form with data-confirm asks first.
"use strict";

(function () {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
  const $ = (sel, root) => (root || document).querySelector(sel);
  const el = (tag, attrs, text) => {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  };

  // Forms that destroy something ask first.
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  }, true);

  // ---- project page --------------------------------------------------------------------
  function projectPage() {
    const projectId = document.body.dataset.projectId;
    const offset = document.body.dataset.offset || "0";
    const form = $("#upload-form");
    const input = $("#files");
    const zone = $("#drop-zone");
    const results = $("#upload-results");
    const liveStatus = $("#live-status");

    function showProgress(p) {
      const bar = $("#progress");
      bar.max = p.total || 1;
      bar.value = p.total ? p.done : 0;
      const text = $("#progress-text");
      text.textContent = "";
      text.append(el("strong", {}, `${p.done} of ${p.total}`));
      text.append(` documents done (${p.percent} %): ${p.vectorized} vectorized, ` +
        `${p.failed} failed, ${p.pending + p.processing} in progress`);
    }

    let shown = document.body.dataset.fingerprint;
    function showState(data) {
      if (data.fingerprint === shown) return; // nothing changed: keep the DOM (and the focus)
      shown = data.fingerprint;
      // Keep the keyboard focus on the same control of the same row across the redraw.
      const active = document.activeElement;
      const row = active && active.closest ? active.closest("#documents-body tr") : null;
      const controls = row ? Array.from(row.querySelectorAll("a, button")) : [];
      const where = row ? [row.id, controls.indexOf(active)] : null;
      // The rows are rendered on the server (the same template as the page), escaped there.
      $("#documents-body").innerHTML = data.rows_html;
      showProgress(data.progress);
      if (where) {
        const again = document.getElementById(where[0]);
        const target = again && again.querySelectorAll("a, button")[where[1]];
        if (target) target.focus();
      }
    }

    // Live updates: SSE first; on repeated errors, polling every 3 s.
    let polling = null;
    function poll() {
      if (polling) return;
      liveStatus.textContent = "Live updates: polling every 3 seconds.";
      const tick = () => fetch(`/ui/projects/${projectId}/state?offset=${offset}`,
        { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
        .then(showState)
        .catch((status) => {
          liveStatus.textContent = status === 401 || status === 404
            ? "Live updates stopped: your sign-in ended or the project is gone; reload the page."
            : "Live updates: the server does not answer; retrying.";
        });
      tick();
      polling = window.setInterval(tick, 3000);
    }
    if (window.EventSource && !window.DOCVEC_NO_SSE) {
      const source = new EventSource(`/ui/projects/${projectId}/events?offset=${offset}`);
      let failures = 0;
      liveStatus.textContent = "Live updates: connecting…";
      source.addEventListener("open", () => {
        failures = 0;
        liveStatus.textContent = "Live updates: on.";
      });
      source.addEventListener("state", (event) => showState(JSON.parse(event.data)));
      source.addEventListener("gone", () => {
        source.close();
        liveStatus.textContent = "This project was deleted.";
      });
      source.addEventListener("error", () => {
        failures += 1;
        if (failures >= 3 || source.readyState === EventSource.CLOSED) {
          source.close();
          poll();
        } else {
          liveStatus.textContent = "Live updates: reconnecting…";
        }
      });
    } else {
      poll();
    }

    // Uploads: one request per file, so that each gets its own answer.
    async function uploadOne(file) {
      const item = el("li", { class: "outcome-uploading" });
      item.append(el("span", { class: "file" }, file.name), ": uploading…");
      results.prepend(item);
      const body = new FormData();
      body.append("files", file, file.name);
      let answer;
      try {
        const response = await fetch(form.action, {
          method: "POST", body, credentials: "same-origin",
          headers: { Accept: "application/json", "X-CSRF-Token": csrf() },
        });
        if (response.status === 413) {
          answer = { outcome: "too-large", words: "refused: too large — over the server's upload limit" };
        } else if ((response.headers.get("content-type") || "").includes("application/json")) {
          const data = await response.json();
          answer = data.results ? data.results[0] : { outcome: "refused", words: `refused — ${data.detail || response.status}` };
        } else {
          answer = { outcome: "refused", words: `refused — HTTP ${response.status}` };
        }
      } catch (err) {
        answer = { outcome: "refused", words: "not sent — the server could not be reached" };
      }
      item.className = `outcome-${answer.outcome}`;
      item.textContent = "";
      item.append(el("span", { class: "file" }, file.name), `: ${answer.words} `);
      if (answer.document_url) item.append(el("a", { href: answer.document_url }, "open"));
    }
    async function uploadAll(files) {
      const button = $("button[type=submit]", form);
      button.disabled = true;
      // Two at a time: the server stores while the next one streams in.
      const queue = Array.from(files);
      const runners = [0, 1].map(async () => {
        while (queue.length) await uploadOne(queue.shift());
      });
      await Promise.all(runners);
      button.disabled = false;
      form.reset();
      if (polling) fetch(`/ui/projects/${projectId}/state?offset=${offset}`,
        { headers: { Accept: "application/json" } }).then((r) => r.json()).then(showState);
    }
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (input.files.length) uploadAll(input.files);
    });
    input.addEventListener("change", () => { if (input.files.length) uploadAll(input.files); });
    ["dragenter", "dragover"].forEach((name) => zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    }));
    ["dragleave", "drop"].forEach((name) => zone.addEventListener(name, () => zone.classList.remove("over")));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) uploadAll(event.dataTransfer.files);
    });
  }

  // ---- ask page ------------------------------------------------------------------------
  function linkify(text, known) {
    // The answer as nodes: text, and each [n] that names a source a link to it.
    const frag = document.createDocumentFragment();
    let pos = 0;
    const re = /\[(\d{1,3})\]/g;
    let m;
    while ((m = re.exec(text)) !== null) {
      const n = Number(m[1]);
      if (!known.has(n)) continue;
      frag.append(text.slice(pos, m.index));
      frag.append(el("a", { class: "cite", href: `#source-${n}`, "data-n": String(n) }, `[${n}]`));
      pos = m.index + m[0].length;
    }
    frag.append(text.slice(pos));
    return frag;
  }

  function openSource(n) {
    document.querySelectorAll(".source.opened").forEach((s) => s.classList.remove("opened"));
    const target = document.getElementById(`source-${n}`);
    if (!target) return;
    target.classList.add("opened");
    target.scrollIntoView({ block: "center" });
    target.focus({ preventScroll: true });
  }

  function renderSource(s) {
    const item = el("li", { id: `source-${s.n}`, class: "source", value: String(s.n), tabindex: "-1" });
    const meta = el("p", { class: "meta" }, `[${s.n}] `);
    meta.append(el("a", { href: `/ui/documents/${s.document_id}?chunk=${s.chunk_index}#chunk-${s.chunk_index}` }, s.file_name));
    const where = [s.page !== null && s.page !== undefined ? `page ${s.page}` : null,
      `chunk ${s.chunk_index}`, typeof s.score === "number" ? `score ${s.score.toFixed(4)}` : null];
    meta.append(" · " + where.filter(Boolean).join(" · "));
    item.append(meta, el("p", { class: "text" }, s.text || ""));
    return item;
  }

  function parseEvents(buffer, onEvent) {
    // Server-Sent Events framing: blocks separated by a blank line; "event:" and "data:" fields;
    // lines starting with ":" are comments (keep-alives).
    const blocks = buffer.split(/\r?\n\r?\n/);
    const rest = blocks.pop();
    for (const block of blocks) {
      let name = "message";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith(":")) continue;
        const [field, ...value] = line.split(":");
        const v = value.join(":").replace(/^ /, "");
        if (field === "event") name = v;
        else if (field === "data") data.push(v);
      }
      if (data.length) onEvent(name, data.join("\n"));
    }
    return rest;
  }

  function askPage() {
    const projectId = document.body.dataset.projectId;
    const form = $("#ask-form");
    const status = $("#ask-status");
    const box = $("#answer-box");
    const answerEl = $("#answer");
    const sourcesEl = $("#sources");
    const errorEl = $("#ask-error");
    const meta = $("#answer-meta");

    document.addEventListener("click", (event) => {
      const cite = event.target.closest && event.target.closest("a.cite");
      if (cite) {
        event.preventDefault();
        openSource(cite.dataset.n);
      }
    });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = $("button[type=submit]", form);
      button.disabled = true;
      errorEl.hidden = true;
      box.hidden = false;
      answerEl.textContent = "";
      answerEl.classList.add("streaming");
      sourcesEl.textContent = "";
      meta.textContent = "";
      status.textContent = "Finding sources…";
      const threshold = $("#score_threshold").value.trim();
      const body = {
        question: $("#question").value,
        top_k: Number($("#top_k").value || 5),
        mode: $("#mode").value,
        score_threshold: threshold === "" ? null : Number(threshold),
      };
      let text = "";
      const known = new Set();
      const show = () => { answerEl.textContent = ""; answerEl.append(linkify(text, known)); };
      const fail = (message) => {
        errorEl.textContent = `✗ ${message}`;
        errorEl.hidden = false;
        status.textContent = "The answer failed.";
      };
      try {
        const response = await fetch(`/ui/projects/${projectId}/answer-stream`, {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", Accept: "text/event-stream", "X-CSRF-Token": csrf() },
          body: JSON.stringify(body),
        });
        if (!response.ok || !(response.headers.get("content-type") || "").includes("text/event-stream")) {
          let detail = `HTTP ${response.status}`;
          try {
            const data = await response.json();
            detail = typeof data.detail === "string" ? data.detail
              : Array.isArray(data.detail) ? data.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ")
              : JSON.stringify(data.detail);
          } catch (err) { /* not JSON */ }
          fail(detail);
          return;
        }
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        const onEvent = (name, raw) => {
          const data = JSON.parse(raw);
          if (name === "sources") {
            data.forEach((s) => { known.add(Number(s.n)); sourcesEl.append(renderSource(s)); });
            status.textContent = `${data.length} sources found; writing the answer…`;
          } else if (name === "delta") {
            text += data.text || "";
            show();
          } else if (name === "citation") {
            known.add(Number(data.n));
            show();
          } else if (name === "done") {
            text = data.answer || text;
            (data.sources || []).forEach((s) => known.add(Number(s.n)));
            show();
            if (data.no_answer) answerEl.prepend(el("p", { class: "notice" }, "The sources do not answer this question."));
            meta.textContent = [data.provider, data.model,
              typeof data.latency_ms === "number" ? `${Math.round(data.latency_ms)} ms` : null].filter(Boolean).join(" · ");
            status.textContent = "Answer complete.";
          } else if (name === "error") {
            fail(`${data.error || "the answer failed"}${data.error_class ? ` (${data.error_class})` : ""}`);
          }
        };
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer = parseEvents(buffer + decoder.decode(value, { stream: true }), onEvent);
        }
        parseEvents(buffer + "\n\n", onEvent);
      } catch (err) {
        fail("the server could not be reached");
      } finally {
        answerEl.classList.remove("streaming");
        button.disabled = false;
      }
    });
  }

  // ---- index versions ------------------------------------------------------------------
  function indexVersionsPage() {
    const projectId = document.body.dataset.projectId;
    const status = $("#versions-status");
    const building = () => document.querySelector('tr[data-state="building"]');
    if (!building()) return;
    status.textContent = "A version is building: progress refreshes every 2 seconds.";
    const timer = window.setInterval(async () => {
      let listing;
      try {
        const response = await fetch(`/ui/projects/${projectId}/index-versions.json`, { headers: { Accept: "application/json" } });
        if (!response.ok) return;
        listing = await response.json();
      } catch (err) { return; }
      for (const v of listing.versions || []) {
        const row = document.getElementById(`version-${v.version}`);
        if (!row || row.dataset.state !== v.state) {
          window.clearInterval(timer);
          window.location.reload(); // a state changed: the actions differ, render anew
          return;
        }
        const p = v.progress || {};
        const bar = $("progress", row);
        bar.max = p.documents_total || 1;
        bar.value = p.documents_done || 0;
        $(".progress-words", row).textContent = `${p.documents_done || 0} of ${p.documents_total || 0} documents, ` +
          `${p.chunks || 0} chunks${p.failures ? `, ${p.failures} failed` : ""}` +
          `${p.eta_s ? `, about ${Math.round(p.eta_s)} s left` : ""}`;
      }
      if (!(listing.versions || []).some((v) => v.state === "building")) {
        window.clearInterval(timer);
        status.textContent = "No version is building.";
      }
    }, 2000);
  }

  const pages = { project: projectPage, ask: askPage, "index-versions": indexVersionsPage };
  const start = pages[document.body.dataset.page];
  if (start) start();
})();
