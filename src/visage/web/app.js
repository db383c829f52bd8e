// Visage console: plain JavaScript over the REST API; the API key lives in sessionStorage (this tab only).
"use strict";

const PAGE = 25;
const state = { key: sessionStorage.getItem("visage-key"), gallery: null, peopleOffset: 0, auditOffset: 0 };
const $ = (selector) => document.querySelector(selector);

function say(message) { $("#status").textContent = message; }
function fail(message) { $("#error").textContent = message; }

// Every call: the key as a bearer token; errors arrive as {code, message}.
async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.key}`, ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new Error(body && body.message ? `${body.message} (${body.code})` : `HTTP ${response.status}`);
    error.status = response.status;
    error.body = body;
    throw error;
  }
  return body;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  row.appendChild(td);
  return td;
}

function show(view) {
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = section.id !== `view-${view}`;
  }
  for (const button of document.querySelectorAll("#nav [data-view]")) {
    if (button.dataset.view === view) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  fail("");
  if (view === "audit") loadAudit();
  if (view === "report") loadReport();
  if (view === "alerts") loadAlerts();
  const heading = document.querySelector(`#view-${view} h2`);
  if (heading) { heading.tabIndex = -1; heading.focus(); }
}

async function signIn(key) {
  state.key = key;
  try {
    await api("/v1/galleries");
  } catch (error) {
    state.key = null;
    sessionStorage.removeItem("visage-key");
    fail(error.status === 401 ? "That key is unknown or revoked." : error.message);
    return;
  }
  sessionStorage.setItem("visage-key", key);
  $("#nav").hidden = false;
  say("Signed in.");
  await loadGalleries();
  show("galleries");
}

function signOut() {
  stopAlertFeed();
  sessionStorage.removeItem("visage-key");
  state.key = null;
  $("#nav").hidden = true;
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== "view-signin";
  say("Signed out.");
  $("#api-key").value = "";
  $("#api-key").focus();
}

async function loadGalleries() {
  const galleries = await api("/v1/galleries");
  for (const select of [$("#gallery-select"), $("#search-gallery")]) {
    select.replaceChildren(...galleries.map((g) => new Option(`${g.name}${g.watchlist ? " (watchlist)" : ""}`, g.name)));
  }
  if (!galleries.some((g) => g.name === state.gallery)) state.gallery = galleries.length ? galleries[0].name : null;
  if (state.gallery) {
    $("#gallery-select").value = state.gallery;
    $("#search-gallery").value = state.gallery;
  }
  state.peopleOffset = 0;
  await loadPeople();
}

const galleryPath = () => `/v1/galleries/${encodeURIComponent(state.gallery)}`;

async function loadPeople() {
  const body = $("#people-table tbody");
  body.replaceChildren();
  if (!state.gallery) { $("#people-page").textContent = "No gallery yet."; return; }
  const page = await api(`${galleryPath()}/persons?offset=${state.peopleOffset}&limit=${PAGE}`);
  for (const person of page.items) {
    const row = document.createElement("tr");
    cell(row, person.external_id);
    cell(row, person.display_name);
    cell(row, person.templates);
    cell(row, consentText(person));
    cell(row, new Date(person.created_at).toLocaleString());
    const erase = document.createElement("button");
    erase.type = "button";
    erase.className = "danger";
    erase.textContent = "Erase";
    erase.setAttribute("aria-label", `Erase ${person.external_id}`);
    erase.addEventListener("click", () => erasePerson(person.external_id));
    cell(row, "").appendChild(erase);
    body.appendChild(row);
  }
  const last = Math.min(page.total, state.peopleOffset + page.items.length);
  $("#people-page").textContent = page.total ? `${state.peopleOffset + 1}–${last} of ${page.total}` : "Nobody enrolled.";
  $("#people-prev").disabled = state.peopleOffset === 0;
  $("#people-next").disabled = last >= page.total;
}

function consentText(person) {
  const consent = person.consent;
  if (!consent) return "gallery's basis";
  if (consent.withdrawn_at) return `withdrawn ${new Date(consent.withdrawn_at).toLocaleDateString()} (not matched)`;
  const until = consent.expires_at ? ` until ${new Date(consent.expires_at).toLocaleDateString()}` : "";
  return `${consent.basis.replace("_", " ")}${until}${person.matchable ? "" : " (expired, not matched)"}`;
}

async function erasePerson(externalId) {
  if (!window.confirm(`Erase ${externalId}? Their templates and vectors are removed for good.`)) return;
  try {
    await api(`${galleryPath()}/persons/${encodeURIComponent(externalId)}`, { method: "DELETE" });
    say(`Erased ${externalId}.`);
    await loadPeople();
  } catch (error) { fail(error.message); }
}

function describeEnrollment(result) {
  const box = $("#enroll-result");
  box.replaceChildren();
  if (result.person) {
    const p = document.createElement("p");
    p.textContent = `${result.person.external_id}: ${result.template_ids.length} photo(s) enrolled, ` +
      `${result.person.templates} template(s) in all.`;
    box.appendChild(p);
  }
  if (result.rejected && result.rejected.length) {
    const list = document.createElement("ul");
    list.className = "rejected";
    list.setAttribute("aria-label", "Rejected photos");
    for (const r of result.rejected) {
      const item = document.createElement("li");
      item.textContent = `${r.image}: ${r.message}${r.reasons.length ? ` (${r.reasons.join(", ")})` : ""}`;
      list.appendChild(item);
    }
    box.appendChild(list);
  }
}

async function enroll(event) {
  event.preventDefault();
  if (!state.gallery) { fail("Create a gallery first."); return; }
  fail("");
  const form = new FormData(event.target);
  if (!form.get("display_name")) form.delete("display_name");
  if (!form.get("consent_evidence")) {  // no consent record given: the gallery's basis (or a stored one) applies
    for (const field of ["consent_basis", "consent_evidence", "consent_expires_at"]) form.delete(field);
  } else if (!form.get("consent_expires_at")) {
    form.delete("consent_expires_at");
  }
  say("Enrolling…");
  try {
    describeEnrollment(await api(`${galleryPath()}/persons`, { method: "POST", body: form }));
    say("Enrolment done.");
    event.target.reset();
    await loadPeople();
  } catch (error) {
    if (error.body && error.body.rejected) describeEnrollment({ person: null, template_ids: [], rejected: error.body.rejected });
    fail(error.message);
    say("");
  }
}

async function createGallery(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const name = form.get("name");
  const body = { name };
  if (form.get("legal_basis")) {
    body.legal_basis = form.get("legal_basis");
    body.justification = form.get("justification");
  }
  try {
    await api("/v1/galleries", { method: "POST", headers: { "Content-Type": "application/json" },
                                 body: JSON.stringify(body) });
    state.gallery = name;
    event.target.reset();
    say(`Gallery ${name} created.`);
    await loadGalleries();
  } catch (error) { fail(error.message); }
}

function drawFaces(file, faces) {
  return new Promise((resolve) => {
    const image = new Image();
    image.onload = () => {
      const canvas = $("#search-canvas");
      canvas.width = image.naturalWidth;
      canvas.height = image.naturalHeight;
      const context = canvas.getContext("2d");
      context.drawImage(image, 0, 0);
      const line = Math.max(2, image.naturalWidth / 300);
      context.lineWidth = line;
      context.font = `${Math.max(14, image.naturalWidth / 40)}px system-ui, sans-serif`;
      faces.forEach((face, i) => {
        const [x1, y1, x2, y2] = face.face.box;
        const matched = face.candidates.length && face.candidates[0].same;
        context.strokeStyle = matched ? "#16703a" : "#f0b400";
        context.strokeRect(x1, y1, x2 - x1, y2 - y1);
        context.fillStyle = context.strokeStyle;
        context.fillText(String(i + 1), x1 + line, Math.max(y1 - line * 2, 16));
      });
      URL.revokeObjectURL(image.src);
      resolve();
    };
    image.src = URL.createObjectURL(file);
  });
}

async function search(event) {
  event.preventDefault();
  fail("");
  const form = new FormData(event.target);
  const gallery = $("#search-gallery").value;
  if (!form.get("purpose")) form.delete("purpose");
  say("Searching…");
  try {
    const faces = await api(`/v1/galleries/${encodeURIComponent(gallery)}/identify`, { method: "POST", body: form });
    await drawFaces(form.get("image"), faces);
    const list = $("#search-faces");
    list.replaceChildren();
    faces.forEach((face, i) => {
      const item = document.createElement("li");
      item.className = "face";
      const title = document.createElement("strong");
      title.textContent = `Face ${i + 1}`;
      item.appendChild(title);
      const candidates = document.createElement("ul");
      if (!face.candidates.length) {
        const none = document.createElement("li");
        none.className = "nomatch";
        none.textContent = "no candidates";
        candidates.appendChild(none);
      }
      for (const c of face.candidates) {
        const li = document.createElement("li");
        li.className = c.same ? "match candidate" : "nomatch candidate";
        li.textContent = `${c.display_name || c.external_id} (${c.external_id}): ${c.similarity.toFixed(3)}` +
          (c.same ? " — match" : "");
        candidates.appendChild(li);
      }
      item.appendChild(candidates);
      list.appendChild(item);
    });
    say(`${faces.length} face(s) found; decided at ${faces.length ? faces[0].operating_point : "the default"}.`);
  } catch (error) { fail(error.message); say(""); }
}

async function loadAudit(event) {
  if (event) { event.preventDefault(); state.auditOffset = 0; }
  const params = new URLSearchParams({ offset: state.auditOffset, limit: PAGE });
  for (const [name, value] of new FormData($("#audit-form"))) if (value) params.set(name, value);
  const body = $("#audit-table tbody");
  try {
    const page = await api(`/v1/audit?${params}`);
    body.replaceChildren();
    for (const e of page.items) {
      const row = document.createElement("tr");
      cell(row, new Date(e.at).toLocaleString());
      cell(row, e.actor);
      cell(row, e.action);
      cell(row, e.gallery);
      cell(row, e.person);
      cell(row, e.purpose);
      cell(row, e.result_count);
      cell(row, e.outcome);
      body.appendChild(row);
    }
    const last = state.auditOffset + page.items.length;
    $("#audit-page").textContent = page.total ? `${state.auditOffset + 1}–${last} of ${page.total}` : "No entries.";
    $("#audit-prev").disabled = state.auditOffset === 0;
    $("#audit-next").disabled = last >= page.total;
  } catch (error) {
    body.replaceChildren();
    fail(error.status === 403 ? "The audit log needs a key with the admin scope." : error.message);
  }
}

// GDPR art. 6 bases, as the API names them (privacy/consent.py LEGAL_BASES).
const LEGAL_BASES = ["consent", "contract", "legal_obligation", "vital_interest", "public_task", "legitimate_interest"];

function fillLegalBases() {
  for (const select of document.querySelectorAll("select.legal-bases")) {
    for (const basis of LEGAL_BASES) {
      const option = document.createElement("option");
      option.value = basis;
      option.textContent = basis.replace("_", " ");
      select.appendChild(option);
    }
  }
}

// The report's headline figures: which actions count as what.
const REPORT_TOTALS = [
  ["searches", (r) => r.action === "identify"],
  ["verifications", (r) => r.action === "verify"],
  ["enrolments", (r) => r.action === "enroll"],
  ["erasures", (r) => r.action === "erase"],
  ["access requests", (r) => r.action === "person.export"],
];

async function loadReport(event) {
  if (event) event.preventDefault();
  const params = new URLSearchParams();
  for (const [name, value] of new FormData($("#report-form"))) if (value) params.set(name, `${value}T00:00:00Z`);
  const body = $("#report-table tbody");
  try {
    const rows = await api(`/v1/report?${params}`);
    body.replaceChildren();
    for (const r of rows) {
      const row = document.createElement("tr");
      for (const value of [r.week, r.gallery, r.action, r.purpose, r.actor, r.operations, r.matches, r.failed]) {
        cell(row, value);
      }
      body.appendChild(row);
    }
    const totals = $("#report-totals");
    totals.replaceChildren();
    const sum = (chosen, field) => chosen.reduce((total, r) => total + r[field], 0);
    for (const [label, counts] of REPORT_TOTALS) {  // operations that went through; refusals are counted below
      const chosen = rows.filter(counts);
      const done = sum(chosen, "operations") - sum(chosen, "failed");
      const item = document.createElement("li");
      item.textContent = label === "searches" ? `${done} ${label}, ${sum(chosen, "matches")} matches` : `${done} ${label}`;
      totals.appendChild(item);
    }
    const refused = document.createElement("li");
    refused.textContent = `${sum(rows, "failed")} operations refused or failed`;
    totals.appendChild(refused);
    if (!rows.length) say("Nothing recorded in this period.");
  } catch (error) {
    body.replaceChildren();
    fail(error.status === 403 ? "The report needs a key with the admin scope." : error.message);
  }
}

// Watchlist alerts: the latest from /v1/alerts, then new ones as they are raised, from the server-sent-event feed
// (read with fetch, which can send the key as a header; an EventSource cannot).
let alertFeed = null;

function alertRow(alert) {
  const row = document.createElement("tr");
  cell(row, new Date(alert.raised_at).toLocaleString());
  cell(row, alert.source);
  cell(row, alert.gallery);
  cell(row, alert.display_name ? `${alert.display_name} (${alert.external_id})` : alert.external_id);
  cell(row, alert.similarity.toFixed(3));
  return row;
}

async function loadAlerts() {
  const body = $("#alerts-table tbody");
  let alerts;
  try {
    alerts = await api("/v1/alerts?limit=50");
  } catch (error) {
    fail(error.status === 403 ? "Alerts need a key with the identify scope." : error.message);
    return;
  }
  body.replaceChildren(...alerts.map(alertRow));
  if (!alertFeed) listenForAlerts(alerts.length ? alerts[0].id : 0);
}

function stopAlertFeed() {
  if (alertFeed) alertFeed.abort();
  alertFeed = null;
}

function shownAlert(message) {
  const data = message.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6)).join("\n");
  if (!message.split("\n").includes("event: alert") || !data) return null;
  const alert = JSON.parse(data);
  $("#alerts-table tbody").prepend(alertRow(alert));
  say(`Alert: ${alert.external_id} seen on ${alert.source}.`);
  return alert.alert_id;
}

async function listenForAlerts(after) {
  const feed = new AbortController();
  alertFeed = feed;
  let last = after;
  while (!feed.signal.aborted) {
    try {
      const response = await fetch(`/v1/alerts/stream?after=${last}`,
                                   { headers: { Authorization: `Bearer ${state.key}` }, signal: feed.signal });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      $("#alerts-live").textContent = "Listening for alerts (live).";
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;  // the server ends each response before its request timeout: reconnect
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          last = shownAlert(buffer.slice(0, end)) ?? last;
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) {
      if (feed.signal.aborted) return;
      $("#alerts-live").textContent = "The alert feed was interrupted; reconnecting…";
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  fillLegalBases();
  $("#signin-form").addEventListener("submit", (event) => { event.preventDefault(); signIn($("#api-key").value.trim()); });
  $("#sign-out").addEventListener("click", signOut);
  for (const button of document.querySelectorAll("#nav [data-view]")) {
    button.addEventListener("click", () => show(button.dataset.view));
  }
  $("#gallery-select").addEventListener("change", (event) => {
    state.gallery = event.target.value;
    state.peopleOffset = 0;
    $("#search-gallery").value = state.gallery;
    loadPeople().catch((error) => fail(error.message));
  });
  $("#gallery-form").addEventListener("submit", createGallery);
  $("#enroll-form").addEventListener("submit", enroll);
  $("#search-form").addEventListener("submit", search);
  $("#audit-form").addEventListener("submit", loadAudit);
  $("#report-form").addEventListener("submit", loadReport);
  $("#people-prev").addEventListener("click", () => { state.peopleOffset = Math.max(0, state.peopleOffset - PAGE); loadPeople(); });
  $("#people-next").addEventListener("click", () => { state.peopleOffset += PAGE; loadPeople(); });
  $("#audit-prev").addEventListener("click", () => { state.auditOffset = Math.max(0, state.auditOffset - PAGE); loadAudit(); });
  $("#audit-next").addEventListener("click", () => { state.auditOffset += PAGE; loadAudit(); });
  if (state.key) signIn(state.key);
  else $("#api-key").focus();
});
