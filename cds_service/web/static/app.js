// Test page: runs an example or a pasted Bundle through POST /ui/evaluate and renders the
// cards as an EHR would, with the decision trace beside them. No framework, no build step.
// Everything from the service is inserted as text; card detail goes through a small Markdown
// subset that escapes HTML first, so a card can never inject markup.
"use strict";

const SEVERITY = { critical: 0, warning: 1, info: 2 };
const $ = (id) => document.getElementById(id);
let currentService = null;

// A silent rule's "why" is either a reason ("overridden by ...", "data unknown: ...") or the first
// condition the rule needs that does not hold; the latter is shown as a need, not as a fact.
// The reasons' openings are cds_service.engine.SILENCING_REASONS.
const REASONS = ["data unknown: ", "overridden by rule ", "may be overridden by rule "];
function whySilent(why) {
  const text = typeof why === "string" ? why : JSON.stringify(why);
  return REASONS.some((start) => text.startsWith(start)) ? text : `needs ${text}, which does not hold`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "className") node.className = value;
    else if (key.startsWith("data")) node.setAttribute(key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function safeUrl(url) {
  return /^https?:\/\//i.test(url) || url.startsWith("/") ? url : null;
}

// Inline Markdown on already-escaped text: code, bold, italics, http(s) links.
function inline(escaped) {
  return escaped
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[\s(])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>")
    .replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, (match, label, url) => {
      const target = safeUrl(url.replace(/&amp;/g, "&"));
      return target ? `<a href="${escapeHtml(target)}" target="_blank" rel="noopener noreferrer">${label}</a>` : label;
    });
}

// A safe subset of GitHub Markdown: paragraphs, headings, bullet and numbered lists, inline marks.
function renderMarkdown(markdown) {
  const html = [];
  let list = null;
  const closeList = () => { if (list) { html.push(`</${list}>`); list = null; } };
  let paragraph = [];
  const flush = () => { if (paragraph.length) { html.push(`<p>${paragraph.join(" ")}</p>`); paragraph = []; } };
  for (const raw of String(markdown || "").split(/\r?\n/)) {
    const line = escapeHtml(raw.trimEnd());
    let m;
    if (!line.trim()) { flush(); closeList(); continue; }
    if ((m = line.match(/^(#{1,6})\s+(.*)$/))) { flush(); closeList(); html.push(`<h4>${inline(m[2])}</h4>`); continue; }
    if ((m = line.match(/^\s*[-*]\s+(.*)$/)) || (m = line.match(/^\s*\d+[.)]\s+(.*)$/))) {
      flush();
      const kind = /^\s*\d/.test(line) ? "ol" : "ul";
      if (list !== kind) { closeList(); html.push(`<${kind}>`); list = kind; }
      html.push(`<li>${inline(m[1])}</li>`);
      continue;
    }
    closeList();
    paragraph.push(inline(line));
  }
  flush(); closeList();
  return html.join("");
}

async function postJson(url, body) {
  const response = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  return { ok: response.ok, status: response.status, data };
}

async function sendFeedback(card, item, statusNode) {
  const feedback = { card: card.uuid, outcomeTimestamp: new Date().toISOString(), ...item };
  const result = await postJson(`/cds-services/${encodeURIComponent(currentService)}/feedback`, { feedback: [feedback] });
  statusNode.textContent = result.ok
    ? `${item.outcome} (feedback recorded)`
    : `feedback failed: HTTP ${result.status} ${result.data ? JSON.stringify(result.data.detail || result.data) : ""}`;
  statusNode.className = "feedback " + (result.ok ? "ok" : "error");
  return result.ok;
}

function renderCard(card) {
  const code = card.source && card.source.topic ? card.source.topic.code : "";
  const node = el("article", { className: `card card--${card.indicator}`, dataOutcome: code, dataIndicator: card.indicator });
  const status = el("p", { className: "feedback", role: "status" });
  node.append(
    el("div", { className: "card__head" },
      el("span", { className: `badge badge--${card.indicator}` }, card.indicator),
      el("strong", { className: "card__summary" }, card.summary)),
  );
  if (card.source) {
    const url = card.source.url && safeUrl(card.source.url);
    const label = url ? el("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, card.source.label) : el("span", {}, card.source.label);
    const icon = card.source.icon && safeUrl(card.source.icon);
    // "From", not "Source": the card's detail has its own Source heading (the citations).
    node.append(el("div", { className: "card__source" },
      icon ? el("img", { className: "card__icon", src: icon, alt: "", width: 20, height: 20 }) : null,
      "From ", label, code ? el("code", { className: "outcome" }, code) : null));
  }
  if (card.detail) {
    const detail = el("div", { className: "card__detail" });
    detail.innerHTML = renderMarkdown(card.detail);
    node.append(detail);
  }
  const actions = el("div", { className: "card__actions" });
  for (const suggestion of card.suggestions || []) {
    const button = el("button", { type: "button", className: "suggestion" + (suggestion.isRecommended ? " recommended" : "") }, suggestion.label);
    const described = (suggestion.actions || []).map((a) => `${a.type}: ${a.description}`).join("\n");
    if (described) button.title = described;
    button.addEventListener("click", async () => {
      const item = { outcome: "accepted" };
      if (suggestion.uuid) item.acceptedSuggestions = [{ id: suggestion.uuid }];
      if (await sendFeedback(card, item, status)) button.disabled = true;
    });
    actions.append(button);
  }
  for (const link of card.links || []) {
    const url = safeUrl(link.url);
    if (url) actions.append(el("a", { className: "link-button", href: url, target: "_blank", rel: "noopener noreferrer" }, link.label));
  }
  if (card.uuid) {
    const reasons = card.overrideReasons || [];
    let reasonSelect = null;
    if (reasons.length) {
      reasonSelect = el("select", { className: "override-reason", "aria-label": "override reason" });
      // nothing chosen for the clinician: the reason is theirs to give (or not)
      reasonSelect.append(el("option", { value: "" }, "reason for dismissing (optional)"));
      reasons.forEach((r, i) => reasonSelect.append(el("option", { value: String(i) }, r.display || r.code)));
      actions.append(reasonSelect);
    }
    const dismiss = el("button", { type: "button", className: "dismiss" }, "Dismiss");
    dismiss.addEventListener("click", async () => {
      const item = { outcome: "overridden" };
      if (reasonSelect && reasonSelect.value !== "") item.overrideReason = { reason: reasons[Number(reasonSelect.value)] };
      if (await sendFeedback(card, item, status)) node.classList.add("card--dismissed");
    });
    actions.append(dismiss);
  }
  node.append(actions, status);
  return node;
}

function table(headers, rows) {
  const head = el("tr", {}, ...headers.map((h) => el("th", {}, h)));
  const body = rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", {}, c))));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
}

function factsText(facts) {
  return Object.entries(facts || {}).map(([fact, sources]) => `${fact}: ${sources.join(", ") || "-"}`).join("\n");
}

function fieldsText(fields) {
  return Object.entries(fields || {}).filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
}

function renderTrace(trace, facts) {
  const box = $("trace");
  box.replaceChildren();
  box.append(el("p", { className: "muted small" },
    `decision ${trace.decision_id} · ${trace.profile} · engine ${trace.engine} · as of ${trace.now.slice(0, 10)}`));
  if (facts) {
    const details = el("details", { className: "facts" }, el("summary", {}, "Facts the rules saw"));
    details.append(table(["fact", "fields"], Object.entries(facts).map(([name, fields]) => [name, fieldsText(fields)])));
    box.append(details);
  }
  box.append(el("h3", {}, `Fired rules (${trace.fired.length})`));
  box.append(trace.fired.length
    ? table(["rule", "outcome", "facts (resources)"], trace.fired.map((f) => [f.rule, f.outcome, el("pre", {}, factsText(f.facts))]))
    : el("p", { className: "muted" }, "none"));
  box.append(el("h3", {}, `Silent rules (${trace.silent.length})`));
  box.append(trace.silent.length
    ? table(["rule", "why silent"], trace.silent.map((s) => [s.rule, whySilent(s.why)]))
    : el("p", { className: "muted" }, "none"));
  box.append(el("h3", {}, `Excluded resources (${trace.excluded.length})`));
  box.append(trace.excluded.length
    ? table(["resource", "reason"], trace.excluded.map((e) => [e.resource, e.reason]))
    : el("p", { className: "muted" }, "none"));
  if ((trace.unreadable || []).length) {
    box.append(el("h3", {}, `Unreadable resources (${trace.unreadable.length})`));
    box.append(table(["resource", "would have told", "element that could not be read"], trace.unreadable.map((u) => [u.resource, u.fact, u.element])));
  }
  if ((trace.unknown || []).length) box.append(el("p", {}, `Unknown facts: ${trace.unknown.join(", ")}`));
  if ((trace.withheld || []).length) box.append(el("p", {}, `Withheld (depends on unknown data): ${trace.withheld.join(", ")}`));
  if ((trace.notes || []).length) {
    box.append(el("h3", {}, "Notes"));
    box.append(el("ul", {}, ...trace.notes.map((n) => el("li", {}, typeof n === "string" ? n : JSON.stringify(n)))));
  }
}

function renderCards(cards) {
  const box = $("cards");
  box.replaceChildren();
  if (!cards.length) {
    box.append(el("p", { className: "no-cards" }, "No card: nothing to advise for this chart (see the trace for why)."));
    return;
  }
  [...cards].sort((a, b) => SEVERITY[a.indicator] - SEVERITY[b.indicator]).forEach((c) => box.append(renderCard(c)));
}

async function run(event) {
  event.preventDefault();
  const status = $("status");
  const body = { hook: $("hook").value, service: $("service").value || null, draft: $("draft").value || null,
                 patient: $("patient").value.trim() || null, now: $("now").value || null };
  const pasted = $("bundle").value.trim();
  if (pasted) {
    try { body.bundle = JSON.parse(pasted); } catch (e) { status.textContent = `The pasted text is not JSON: ${e.message}`; status.className = "status error"; return; }
    if (body.bundle && typeof body.bundle.hook === "string") {
      body.hook = body.bundle.hook;  // a pasted CDS Hooks request is sent as is, with its own hook
      $("hook").value = body.bundle.hook;
    }
  } else {
    body.example = $("example").value || null;
  }
  status.textContent = "Running…";
  status.className = "status";
  $("run").disabled = true;
  try {
    const result = await postJson("/ui/evaluate", body);
    if (!result.ok) {
      const detail = result.data ? result.data.detail : null;
      status.textContent = `HTTP ${result.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`;
      status.className = "status error";
      return;
    }
    currentService = result.data.service;
    $("service-id").textContent = `${result.data.service}, as of ${result.data.now.slice(0, 10)}`;
    renderCards(result.data.response.cards);
    renderTrace(result.data.trace, result.data.facts);
    // server-rendered SVG of numbers and dates only (cds_service/tooling/timeline.py)
    $("timeline").innerHTML = result.data.timeline || "";
    $("request-json").textContent = JSON.stringify(result.data.request, null, 2);
    $("response-json").textContent = JSON.stringify(result.data.response, null, 2);
    const n = result.data.response.cards.length;
    status.textContent = `${n} card${n === 1 ? "" : "s"}`;
    status.className = "status ok";
  } catch (e) {
    status.textContent = `The service did not answer: ${e.message}`;
    status.className = "status error";
  } finally {
    $("run").disabled = false;
  }
}

function onExample() {
  const option = $("example").selectedOptions[0];
  if (!option || !option.value) { $("expected").textContent = ""; return; }
  $("hook").value = option.dataset.hook;
  $("draft").value = option.dataset.draft || "";
  $("now").value = option.dataset.now || "";
  $("bundle").value = "";
  $("expected").textContent = `Should give (article): ${option.dataset.expected}`;
}

document.addEventListener("DOMContentLoaded", () => {
  $("form").addEventListener("submit", run);
  $("example").addEventListener("change", onExample);
  onExample();
});

