/*
 * CareLine staff console: one plain ES module, no framework and no build step for whoever runs
 * `make run` (channels/routes/staff.py serves this file as it is).
 *
 * Backend: the JSON API under /staff/api/ (a cookie session; every POST sends X-CSRF-Token) and
 * the live events of /staff/ws (desk events → the queue is fetched again; events of the watched
 * conversation → its transcript grows). The socket reconnects with backoff and the queue is also
 * polled, so a lost event costs at most one poll interval.
 *
 * Server data is only ever written with textContent / createElement, never as HTML. The page's
 * Content-Security-Policy allows scripts and styles from 'self' alone: nothing here is inline.
 */

import { client } from "/staff/api.js";

const PING_MS = 20_000; // the server counts a console silent for 60 s as away
const POLL_MS = 15_000;
const DEBOUNCE_MS = 200;
const TYPING_EVERY_MS = 3_000;
const TYPING_SHOWN_MS = 6_000;
const IDLE_CHECK_MS = 5_000;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10_000;
const SMS_PAGE_CHARS = 320; // what one SMS turn sends; the rest waits for MORE (careline/gsm7.py)

const EMERGENCY = new Set(["emergency", "crisis", "screen_error"]);
const PRIORITY_LABEL = {
  emergency: "Emergency", crisis: "Crisis", screen_error: "Screen error", urgent: "Urgent", normal: "Normal",
};
const CHANNEL_LABEL = { web: "Web chat", sms: "SMS", api: "API" };
const OWNER_LABEL = {
  bot: "with the assistant", waiting_for_staff: "waiting for staff", staff: "with staff", closed: "closed",
};
const ROLE_LABEL = { user: "Patient", bot: "Assistant", staff: "Staff", system: "Notice" };
const DESK_EVENTS = new Set(["waiting_for_staff", "staff", "bot", "closed", "claimed", "released", "alert", "presence"]);
const OWNERSHIP_EVENTS = new Set(["waiting_for_staff", "staff", "bot", "closed", "claimed", "released"]);

// GSM 03.38, as careline/gsm7.py: the basic table (ESC left out) and the extension table (2 septets each).
const GSM7_BASIC = new Set(
  "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§" +
    "¿abcdefghijklmnopqrstuvwxyzäöñüà",
);
const GSM7_EXTENSION = new Set("\f^{}\\[~]|€");

const $ = (id) => document.getElementById(id);

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children || []) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

function timeOf(ts) {
  if (typeof ts !== "number") return "";
  return new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function label(map, value) {
  return map[value] || String(value || "unknown").replace(/_/g, " ");
}

/** A link only for http(s) URLs; anything else stays text. */
function sourceLink(url) {
  return /^https?:\/\//i.test(url) ? el("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: url })
    : document.createTextNode(String(url));
}

/** SMS billing as channels/sms_text.py counts it: GSM-7 160 / 153 per part, else UCS-2 70 / 67. */
export function smsSegments(text) {
  const chars = Array.from(text);
  if (!chars.length) return { encoding: "GSM-7", segments: 0 };
  const gsm = chars.every((c) => GSM7_BASIC.has(c) || GSM7_EXTENSION.has(c));
  const [single, perPart] = gsm ? [160, 153] : [70, 67];
  const costs = chars.map((c) => (gsm ? (GSM7_EXTENSION.has(c) ? 2 : 1) : c.length)); // c.length: UTF-16 units
  if (costs.reduce((a, b) => a + b, 0) <= single) return { encoding: gsm ? "GSM-7" : "UCS-2", segments: 1 };
  let count = 1;
  let used = 0;
  for (const n of costs) {
    if (used + n > perPart) {
      count += 1;
      used = 0;
    }
    used += n;
  }
  return { encoding: gsm ? "GSM-7" : "UCS-2", segments: count };
}

// --- the API -------------------------------------------------------------------------------

const state = {
  me: null,
  csrf: null,
  idleSeconds: 900,
  queue: null,
  fetchedAt: 0,
  seenWaiting: null, // ids of waiting conversations already seen (null before the first fetch)
  openId: null,
  open: null,
  seqs: new Set(),
  staff: [],
  lastActivity: Date.now(),
  lastTypingSent: 0,
  timers: [],
};

const api = client({
  csrf: () => state.csrf,
  ended: () => sessionEnded(),
  unreachable: "The console cannot reach the server. Check the connection.",
});

/** Run an action from a button; its error's detail goes to the status line. */
async function attempt(work, done) {
  try {
    const result = await work();
    if (done) say(done);
    return result;
  } catch (e) {
    if (e.status !== 401) say(e.message);
    return null;
  }
}

function say(text) {
  const status = $("status");
  status.textContent = "";
  // a new node each time, so the same message twice is announced twice
  window.setTimeout(() => { status.textContent = text; }, 30);
}

// --- logging in and out --------------------------------------------------------------------

function endedMessage() {
  const minutes = Math.max(1, Math.round(state.idleSeconds / 60));
  return `Your session ended (${minutes} minutes without activity). Please log in again.`;
}

function showLogin(message) {
  $("login").hidden = false;
  $("queue").hidden = true;
  $("conversation").hidden = true;
  $("who").hidden = true;
  $("alerts").replaceChildren();
  $("login-message").textContent = message || "";
  $("login-error").textContent = "";
  $("password").value = "";
  $("email").focus();
}

async function login(event) {
  event.preventDefault();
  const email = $("email").value.trim();
  const password = $("password").value;
  if (!email || !password) {
    $("login-error").textContent = "Enter your email and your password.";
    return;
  }
  unlockAudio();
  $("login-submit").disabled = true;
  try {
    enterDesk(await api("POST", "/login", { email, password }));
  } catch (e) {
    $("login-error").textContent = e.message;
    $("password").focus();
  } finally {
    $("login-submit").disabled = false;
  }
}

function enterDesk(session) {
  state.me = session.staff;
  state.csrf = session.csrf_token;
  state.idleSeconds = session.idle_timeout_seconds || 900;
  state.lastActivity = Date.now();
  state.seenWaiting = null;
  $("who-name").textContent = state.me.display_name;
  $("who-role").textContent = `(${state.me.role})`;
  $("who").hidden = false;
  $("login").hidden = true;
  $("queue").hidden = false;
  $("conversation").hidden = false;
  $("presence").value = "online";
  $("password").value = "";
  document.body.dataset.role = state.me.role;
  attempt(() => api("POST", "/presence", { status: "online" }));
  loadStaff();
  loadCanned();
  refreshQueue();
  live.start();
  startTimers();
  const wanted = decodeURIComponent(window.location.hash.slice(1));
  if (wanted) openConversation(wanted, false);
  else $("queue-title").focus();
}

function stopDesk() {
  live.stop();
  for (const timer of state.timers) window.clearInterval(timer);
  state.timers = [];
  state.me = null;
  state.csrf = null;
  emptyPane();
  $("waiting").replaceChildren();
  $("assigned").replaceChildren();
  delete document.body.dataset.role;
}

function sessionEnded(message) {
  if (!state.me) return;
  stopDesk();
  showLogin(message || endedMessage());
}

async function logout() {
  await attempt(() => api("POST", "/logout"));
  stopDesk();
  window.history.replaceState(null, "", window.location.pathname);
  showLogin("You have logged out.");
}

/** The server ends an idle session too, but background requests (polls, live refreshes) are not a
 * person: the console ends it itself when nobody has touched it for the idle timeout. */
function checkIdle() {
  if (state.me && Date.now() - state.lastActivity > state.idleSeconds * 1000) {
    const message = endedMessage();
    api("POST", "/logout").catch(() => {});
    sessionEnded(message);
  }
}

function startTimers() {
  state.timers.push(
    window.setInterval(tick, 1000),
    window.setInterval(() => refreshQueue(), POLL_MS),
    window.setInterval(() => live.ping(), PING_MS),
    window.setInterval(checkIdle, IDLE_CHECK_MS),
  );
}

async function loadStaff() {
  const data = await attempt(() => api("GET", "/staff"));
  if (!data) return;
  state.staff = data.staff || [];
  const select = $("transfer-to");
  // a supervisor takes over a conversation by transferring it to themselves (channels/staff/desk.py)
  const boss = state.me && state.me.role === "supervisor";
  select.replaceChildren(
    ...state.staff
      .filter((m) => boss || !state.me || m.id !== state.me.id)
      .map((m) => {
        const who = state.me && m.id === state.me.id ? "me" : `${m.role}, ${m.status}`;
        return el("option", { value: m.id, text: `${m.display_name} (${who})` });
      }),
  );
  if (state.open) renderActions(state.open);
}

async function loadCanned() {
  const data = await attempt(() => api("GET", "/canned"));
  const select = $("canned");
  select.replaceChildren(el("option", { value: "", text: "Choose…" }));
  for (const reply of (data && data.replies) || []) {
    select.append(el("option", { value: reply.id, text: reply.title, "data-text": reply.text }));
  }
}

// --- live events ---------------------------------------------------------------------------

class Live {
  constructor() {
    this.ws = null;
    this.wanted = false;
    this.attempt = 0;
    this.retry = null;
  }

  start() {
    this.wanted = true;
    this.attempt = 0;
    this.open();
  }

  stop() {
    this.wanted = false;
    window.clearTimeout(this.retry);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, "logged out");
    }
    document.body.dataset.live = "closed";
  }

  open() {
    const url = `${window.location.protocol === "https:" ? "wss:" : "ws:"}//${window.location.host}/staff/ws`;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      this.later();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      document.body.dataset.live = "open";
      this.ping();
      if (state.openId) this.send({ type: "watch", id: state.openId });
      // pub/sub keeps nothing: what happened while we were away is read again
      refreshQueue();
      if (state.openId) openConversation(state.openId, false);
    };
    ws.onmessage = (event) => {
      try {
        onFrame(JSON.parse(event.data));
      } catch (e) {
        /* not one of ours */
      }
    };
    ws.onclose = () => {
      if (ws !== this.ws) return;
      this.ws = null;
      document.body.dataset.live = "closed";
      if (!this.wanted) return;
      // refused or closed by the server: a 401 here ends the console's session too
      api("GET", "/me").then(
        () => this.later(),
        (e) => e.status !== 401 && this.later(),
      );
    };
  }

  later() {
    if (!this.wanted) return;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    this.attempt += 1;
    window.clearTimeout(this.retry);
    this.retry = window.setTimeout(() => this.open(), base / 2 + Math.random() * (base / 2));
  }

  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  ping() {
    this.send({ type: "ping", status: $("presence").value });
  }
}

const live = new Live();

function onFrame(frame) {
  if (!frame || typeof frame !== "object") return;
  if (frame.type === "conversation") {
    if (frame.id === state.openId && frame.event) onConversationEvent(frame.event);
    return;
  }
  if (!DESK_EVENTS.has(frame.type)) return;
  if (frame.type === "alert") onDeskAlert(frame);
  if (frame.id && frame.id === state.openId && OWNERSHIP_EVENTS.has(frame.type)) reloadOpenSoon();
  if (frame.type === "presence") loadStaffSoon();
  refreshQueueSoon();
}

function debounce(fn) {
  let timer = null;
  return () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(fn, DEBOUNCE_MS);
  };
}

const refreshQueueSoon = debounce(() => refreshQueue());
const reloadOpenSoon = debounce(() => state.openId && openConversation(state.openId, false));
const loadStaffSoon = debounce(() => loadStaff());

// --- the queue -----------------------------------------------------------------------------

let queueRequest = null;

async function refreshQueue() {
  if (!state.me) return;
  if (queueRequest) return queueRequest; // one at a time; a burst of events costs one request
  queueRequest = (async () => {
    try {
      const queue = await api("GET", "/queue", null, true);
      state.queue = queue;
      state.fetchedAt = Date.now();
      renderQueue(queue);
      noticeEmergencies(queue.waiting || []);
    } catch (e) {
      if (e.status !== 401) say(e.message);
    } finally {
      queueRequest = null;
    }
  })();
  return queueRequest;
}

function renderQueue(queue) {
  const waiting = queue.waiting || [];
  const assigned = queue.assigned || [];
  $("waiting").replaceChildren(...waiting.map((item) => queueItem(item, false)));
  $("assigned").replaceChildren(...assigned.map((item) => queueItem(item, true)));
  $("waiting-count").textContent = `(${waiting.length})`;
  $("assigned-count").textContent = `(${assigned.length})`;
  $("waiting-empty").hidden = waiting.length > 0;
  $("assigned-empty").hidden = assigned.length > 0;
  $("assigned-title").firstChild.textContent = state.me && state.me.role === "supervisor" ? "Assigned " : "Mine ";
  renderShift(queue);
  renderLoad(queue.load);
  tick();
}

function renderShift(queue) {
  let text = queue.on_shift ? "On shift." : "Nobody is on shift: new hand-offs are call-back requests.";
  if (!queue.on_shift && queue.next_open) {
    text += ` Staffed hours begin ${new Date(queue.next_open).toLocaleString([], { weekday: "short", hour: "2-digit", minute: "2-digit" })}.`;
  }
  $("shift").textContent = text;
}

function renderLoad(load) {
  $("load-section").hidden = !load;
  if (!load) return;
  const names = Object.keys(load).sort();
  $("load").replaceChildren(
    ...(names.length
      ? names.map((name) => el("li", { text: `${name}: ${load[name]} conversation${load[name] === 1 ? "" : "s"}` }))
      : [el("li", { text: "Nobody holds a conversation." })]),
  );
}

function queueItem(item, held) {
  const urgent = EMERGENCY.has(item.priority);
  const button = el("button", {
    type: "button",
    class: `item item--${urgent ? "emergency" : item.priority}${item.id === state.openId ? " item--open" : ""}`,
    "data-id": item.id,
    "data-testid": "queue-item",
    "data-priority": item.priority,
    "aria-current": item.id === state.openId ? "true" : false,
  });
  const badges = el("span", { class: "badges" }, [
    el("span", { class: `badge badge--${urgent ? "emergency" : item.priority}`, text: label(PRIORITY_LABEL, item.priority) }),
    el("span", { class: "badge badge--channel", text: label(CHANNEL_LABEL, item.channel) }),
    item.callback ? el("span", { class: "badge badge--callback", text: "Call-back" }) : null,
    item.alert ? el("span", { class: "badge badge--alert", "data-testid": "red-flag", text: "Red flag" }) : null,
    el("span", { class: "badge badge--breach", "data-testid": "sla-breached", text: "SLA breached", hidden: true }),
  ]);
  const wait = el("span", { class: "wait", "data-seconds": item.waiting_seconds, "data-sla": item.sla_seconds });
  if (item.breached) wait.dataset.breached = "true";
  const who = held && item.assignee_name ? el("span", { class: "assignee", text: `With ${item.assignee_name}` }) : null;
  button.append(badges, el("span", { class: "reason", text: reasonText(item.reason) }), wait, who || "");
  button.addEventListener("click", () => openConversation(item.id, true));
  return el("li", {}, [button]);
}

function reasonText(reason) {
  if (!reason) return "No reason given";
  const [kind, detail] = String(reason).split(/:(.*)/s);
  const kinds = { safety: "Safety rule", triage: "Triage", staff: "Staff" };
  const words = (text) => text.replace(/_/g, " ").replace(/,(?=\S)/g, ", ");
  return detail ? `${kinds[kind] || kind}: ${words(detail)}` : words(String(reason));
}

/** Every second: the wait clocks, and the SLA badge once a clock passes its service level. */
function tick() {
  const elapsed = (Date.now() - state.fetchedAt) / 1000;
  for (const wait of document.querySelectorAll("#queue .wait")) {
    const seconds = Number(wait.dataset.seconds) + elapsed;
    const held = wait.closest("#assigned") !== null;
    wait.textContent = held ? `Handed off ${clock(seconds)} ago` : `Waiting ${clock(seconds)}`;
    const breached = wait.dataset.breached === "true" || seconds > Number(wait.dataset.sla);
    const badge = wait.parentElement.querySelector(".badge--breach");
    if (badge) badge.hidden = held || !breached;
    wait.parentElement.classList.toggle("item--breached", !held && breached);
  }
}

// --- alerts --------------------------------------------------------------------------------

let audio = null;

/** Browsers let a page play sound only after a gesture: the login click creates the context. */
function unlockAudio() {
  try {
    audio = audio || new (window.AudioContext || window.webkitAudioContext)();
    if (audio.state === "suspended") audio.resume();
  } catch (e) {
    audio = null;
  }
}

function beep() {
  const alerts = $("alerts");
  alerts.dataset.beeps = String(Number(alerts.dataset.beeps || 0) + 1);
  if (!audio) return;
  try {
    const start = audio.currentTime;
    for (const offset of [0, 0.3]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.type = "sine";
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, start + offset);
      gain.gain.exponentialRampToValueAtTime(0.25, start + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.2);
      osc.connect(gain).connect(audio.destination);
      osc.start(start + offset);
      osc.stop(start + offset + 0.22);
    }
  } catch (e) {
    /* no sound: the banner still shows */
  }
}

function raiseAlert(text, id) {
  const open = el("button", { type: "button", class: "button button--alert", text: "Open" });
  open.addEventListener("click", () => openConversation(id, true));
  const dismiss = el("button", { type: "button", class: "button button--alert", text: "Dismiss" });
  const banner = el("div", { class: "alert", "data-testid": "alert", "data-id": id }, [
    el("p", { class: "alert-text", text }), open, dismiss,
  ]);
  dismiss.addEventListener("click", () => banner.remove());
  const alerts = $("alerts");
  for (const old of alerts.querySelectorAll(`[data-id="${CSS.escape(id)}"]`)) old.remove();
  alerts.prepend(banner);
  while (alerts.children.length > 3) alerts.lastElementChild.remove();
  beep();
}

function noticeEmergencies(waiting) {
  const first = state.seenWaiting === null;
  const seen = state.seenWaiting || new Set();
  for (const item of waiting) {
    if (EMERGENCY.has(item.priority) && !seen.has(item.id)) {
      const where = label(CHANNEL_LABEL, item.channel);
      raiseAlert(`${first ? "Waiting" : "New"} ${label(PRIORITY_LABEL, item.priority).toLowerCase()} (${where}): ${reasonText(item.reason)}`, item.id);
    }
  }
  state.seenWaiting = new Set(waiting.map((item) => item.id));
}

function heldByMe(id) {
  const assigned = (state.queue && state.queue.assigned) || [];
  return id === state.openId || assigned.some((item) => item.id === id && item.assignee === (state.me && state.me.id));
}

function onDeskAlert(frame) {
  if (!heldByMe(frame.id)) return;
  raiseAlert(`Red flag in a conversation you hold: ${reasonText(frame.reason)}`, frame.id);
  if (frame.id === state.openId) showConversationAlert(frame.reason);
}

function showConversationAlert(reason) {
  const box = $("conversation-alert");
  box.hidden = false;
  box.textContent = `Red flag: ${reasonText(reason)}. The patient was given the emergency advice; check on them now.`;
}

// --- the conversation ----------------------------------------------------------------------

async function openConversation(id, focus) {
  if (!state.me || !id) return;
  if (state.openId && state.openId !== id) live.send({ type: "unwatch", id: state.openId });
  const switching = state.openId !== id;
  state.openId = id;
  if (switching) live.send({ type: "watch", id });
  window.history.replaceState(null, "", `#${encodeURIComponent(id)}`);
  let view;
  try {
    view = await api("GET", `/conversations/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.status !== 401) say(e.message);
    // erased (404), or a colleague has it now (403: agents read only the queue's and their own)
    if ((e.status === 404 || e.status === 403) && state.openId === id) closePane();
    return;
  }
  if (state.openId !== id) return; // another was opened meanwhile
  renderConversation(view, switching);
  markOpenInQueue();
  if (focus) {
    $("conversation").scrollIntoView({ block: "start" });
    $("conversation-title").focus({ preventScroll: true });
  }
}

function closePane() {
  live.send({ type: "unwatch", id: state.openId });
  emptyPane();
  window.history.replaceState(null, "", window.location.pathname);
  markOpenInQueue();
}

/** No patient's words are left in the page once the pane (or the session) is closed. */
function emptyPane() {
  state.openId = null;
  state.open = null;
  for (const id of ["transcript", "packet-body", "notes", "patient-said", "typing", "conversation-meta", "holder"]) {
    $(id).replaceChildren();
  }
  $("reply").value = "";
  $("note").value = "";
  $("conversation-alert").hidden = true;
  $("conversation-body").hidden = true;
  $("conversation-empty").hidden = false;
}

function markOpenInQueue() {
  for (const button of document.querySelectorAll("#queue .item")) {
    const open = button.dataset.id === state.openId;
    button.classList.toggle("item--open", open);
    if (open) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  }
}

function renderConversation(view, fresh) {
  state.open = view;
  $("conversation-empty").hidden = true;
  $("conversation-body").hidden = false;
  $("conversation-meta").textContent = `${label(CHANNEL_LABEL, view.channel)} · ${label(PRIORITY_LABEL, view.priority)}`;
  renderPacket(view.packet || {}, view.patient || {});
  renderTranscript(view.transcript || [], fresh);
  renderNotes(view.notes || []);
  renderActions(view);
  renderReplyBox(view);
  if (view.alert) showConversationAlert(view.alert);
  else if (fresh) $("conversation-alert").hidden = true;
}

function packetRow(term, ...values) {
  const shown = values.filter((v) => v !== null && v !== undefined && v !== "");
  if (!shown.length) return [];
  const values_ = shown.map((v) => el("dd", {}, [v instanceof Node ? v : String(v)]));
  return [el("div", { class: "packet-row" }, [el("dt", { text: term }), ...values_])];
}

function plain(value) {
  if (Array.isArray(value)) return value.map(plain).join(", ");
  if (value && typeof value === "object") {
    return Object.entries(value).map(([k, v]) => `${k.replace(/_/g, " ")}: ${plain(v)}`).join("; ");
  }
  return value === null || value === undefined ? "" : String(value).replace(/_/g, " ");
}

function renderPacket(packet, patient) {
  const triage = packet.triage || {};
  const safety = packet.safety || {};
  const answers = (packet.answers_given || []).map((a) =>
    el("span", { class: "answer" }, [
      el("span", { text: a.text || "" }),
      ...(a.sources || []).map((url) => el("span", { class: "source" }, [" Source: ", sourceLink(url)])),
    ]),
  );
  const rows = [
    ...packetRow("Why", reasonText(packet.reason)),
    ...packetRow("Priority", label(PRIORITY_LABEL, packet.priority)),
    ...packetRow("Safety", plain(safety.outcome), plain(safety.category)),
    ...packetRow("Rules that fired", plain(packet.rules)),
    ...packetRow("Alert", packet.alert ? reasonText(packet.alert) : ""),
    ...packetRow("Triage complaint", plain(triage.complaint)),
    ...packetRow("Triage level", plain(triage.level)),
    ...packetRow("Triage answers", plain(triage.answers)),
    ...packetRow("Triage reasons", plain(triage.reasons)),
    ...packetRow("Triage sources", ...(triage.sources || []).map(sourceLink)),
    ...packetRow("Recent intents", plain(packet.recent_intents)),
    ...packetRow("Answers already given", ...answers),
    ...packetRow("Channel", label(CHANNEL_LABEL, packet.channel)),
    ...packetRow("Waiting", typeof packet.waiting_seconds === "number" ? clock(packet.waiting_seconds) : ""),
    ...packetRow("Call-back request", packet.callback ? "Yes: the patient was told when to expect a reply" : ""),
    ...patientRows(patient),
  ];
  $("packet-body").replaceChildren(el("dl", { class: "packet-list" }, rows));
}

function patientRows(patient) {
  if (patient.channel !== "sms") return [];
  const number = el("span", { "data-testid": "patient-number", text: patient.number || "unknown" });
  const canReveal = state.me && state.me.role === "supervisor" && !patient.revealed && patient.number;
  const reveal = canReveal ? el("button", { type: "button", class: "button button--quiet button--small", text: "Reveal number" }) : null;
  if (reveal) reveal.addEventListener("click", revealNumber);
  const rows = packetRow("Patient's number", el("span", {}, [number, reveal ? " " : "", reveal || ""]));
  if (patient.opted_out) rows.push(...packetRow("Texts", "Opted out (STOP)"));
  return rows;
}

async function revealNumber() {
  const id = state.openId;
  const data = await attempt(() => api("POST", `/conversations/${encodeURIComponent(id)}/reveal`), "Number revealed (this is audited).");
  if (data && data.patient && state.open && state.openId === id) {
    state.open.patient = data.patient;
    renderPacket(state.open.packet || {}, data.patient);
  }
}

// --- the transcript ------------------------------------------------------------------------

function speaker(item) {
  if (item.role === "staff") return item.sender ? `${item.sender} (staff)` : "Staff";
  return label(ROLE_LABEL, item.role);
}

function transcriptItem(item) {
  const role = ROLE_LABEL[item.role] ? item.role : "bot";
  const node = el("div", { class: `msg msg--${role}`, "data-testid": "transcript-item", "data-role": role, "data-seq": item.seq });
  node.append(
    el("p", { class: "msg-head" }, [
      el("span", { class: "msg-speaker", text: speaker(item) }),
      el("span", { class: "msg-time", text: timeOf(item.ts) }),
    ]),
    el("p", { class: "msg-text", text: item.text || "" }),
  );
  const buttons = Array.isArray(item.buttons) ? item.buttons.filter((b) => b && b.title) : [];
  if (buttons.length) node.append(el("p", { class: "msg-options", text: `Options offered: ${buttons.map((b) => b.title).join(" · ")}` }));
  return node;
}

// Whether the transcript shows its newest message: kept there as messages arrive and as the
// transcript's box changes size (notes opened, the packet folded), unless the reader scrolled up.
let pinned = true;

function nearEnd(box) {
  return box.scrollHeight - box.scrollTop - box.clientHeight < 48;
}

function keepPinned() {
  const box = $("transcript");
  if (pinned) box.scrollTop = box.scrollHeight;
}

function renderTranscript(items, fresh) {
  const box = $("transcript");
  if (fresh) pinned = true;
  state.seqs = new Set(items.map((item) => item.seq).filter((seq) => seq !== undefined));
  box.replaceChildren(...items.map(transcriptItem));
  if (!items.length) box.append(el("p", { class: "empty", text: "Nothing said yet." }));
  keepPinned();
}

function appendToTranscript(item) {
  if (typeof item.seq === "number") {
    if (state.seqs.has(item.seq)) return;
    state.seqs.add(item.seq);
  }
  const box = $("transcript");
  const empty = box.querySelector(".empty");
  if (empty) empty.remove();
  box.append(transcriptItem(item));
  keepPinned();
  if (item.role === "user") {
    $("patient-said").textContent = `Patient: ${item.text || ""}`;
  }
  if (item.role === "staff") clearTyping();
}

let typingTimer = null;

function clearTyping() {
  window.clearTimeout(typingTimer);
  $("typing").textContent = "";
}

function onConversationEvent(event) {
  if (typeof event.text === "string" && event.role) {
    appendToTranscript(event);
  } else if (event.type === "typing") {
    if (state.me && event.name === state.me.display_name) return; // our own
    $("typing").textContent = `${event.name || "Someone"} is typing…`;
    window.clearTimeout(typingTimer);
    typingTimer = window.setTimeout(clearTyping, TYPING_SHOWN_MS);
  } else if (event.type === "agent" || event.type === "owner") {
    reloadOpenSoon();
    refreshQueueSoon();
  } else if (event.type === "alert") {
    showConversationAlert(event.reason);
    if (heldByMe(state.openId)) raiseAlert(`Red flag in the open conversation: ${reasonText(event.reason)}`, state.openId);
  }
}

// --- what the agent can do -----------------------------------------------------------------

function mine(view) {
  return view.owner === "staff" && state.me && view.assignee === state.me.id;
}

function renderActions(view) {
  const held = view.owner === "staff";
  const isMine = mine(view);
  const boss = state.me && state.me.role === "supervisor";
  const canChange = held && (isMine || boss);
  $("claim").hidden = view.owner !== "waiting_for_staff";
  $("release").hidden = !canChange;
  $("transfer-field").hidden = !canChange || !$("transfer-to").options.length;
  $("return-field").hidden = !canChange;
  $("close").hidden = !canChange;
  let holder = "";
  if (isMine) holder = "You have this conversation.";
  else if (held) holder = `${view.assignee_name || "Another agent"} has this conversation.`;
  else if (view.owner === "waiting_for_staff") holder = "Waiting for someone to claim it.";
  else holder = `This conversation is ${label(OWNER_LABEL, view.owner)}.`;
  $("holder").textContent = holder;
}

function renderReplyBox(view) {
  const patient = view.patient || {};
  const box = $("reply");
  const optedOut = Boolean(patient.opted_out);
  const canReply = mine(view) && !optedOut;
  box.disabled = !canReply;
  $("send").disabled = !canReply;
  $("canned").disabled = !canReply;
  $("opted-out").hidden = !optedOut;
  $("opted-out").textContent = optedOut ? "This number opted out of texts (STOP): it cannot be messaged." : "";
  box.placeholder = canReply ? "" : optedOut ? "" : "Claim the conversation to reply.";
  updateMeter();
}

function updateMeter() {
  const meter = $("sms-meter");
  const sms = state.open && (state.open.channel === "sms" || (state.open.patient || {}).channel === "sms");
  meter.hidden = !sms;
  if (!sms) return;
  const text = $("reply").value;
  const length = Array.from(text).length;
  const { encoding, segments } = smsSegments(text);
  let line = `${length} characters · ${segments} SMS segment${segments === 1 ? "" : "s"} (${encoding})`;
  if (length > SMS_PAGE_CHARS) line += ` · Longer than one ${SMS_PAGE_CHARS}-character page: the patient will need to reply MORE to read the rest.`;
  meter.textContent = line;
  meter.dataset.segments = String(segments);
  meter.dataset.pages = length > SMS_PAGE_CHARS ? "many" : "one";
}

function conversationPath(action) {
  return `/conversations/${encodeURIComponent(state.openId)}/${action}`;
}

const HAND_BACKS = ["return-to-bot", "close"];

async function act(action, body, done) {
  const id = state.openId;
  if (!id) return null;
  const result = await attempt(() => api("POST", conversationPath(action), body), done);
  const boss = state.me && state.me.role === "supervisor";
  if (result !== null && HAND_BACKS.includes(action) && !boss) {
    // handed back: an agent no longer reads it (minimum necessary), so the pane closes
    if (state.openId === id) closePane();
  } else if (state.openId === id) {
    await openConversation(id, false);
  }
  refreshQueue();
  return result;
}

async function claim() {
  const id = state.openId;
  try {
    await api("POST", conversationPath("claim"));
    say("You have claimed this conversation.");
  } catch (e) {
    if (e.status !== 401) say(e.message); // 409 taken: "Sam has this conversation"
  }
  if (state.openId === id) await openConversation(id, false);
  refreshQueue();
  if (!$("reply").disabled) $("reply").focus();
}

async function sendReply(event) {
  if (event) event.preventDefault();
  const box = $("reply");
  const text = box.value.trim();
  if (!text || box.disabled) return;
  $("send").disabled = true;
  const id = state.openId;
  // the same id for a retry of the same text: a request whose answer was lost is not sent twice
  if (!state.replyAttempt || state.replyAttempt.text !== text || state.replyAttempt.conversation !== id) {
    // getRandomValues, unlike randomUUID, also works on a plain-http development address
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    const clientId = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    state.replyAttempt = { text, conversation: id, clientId };
  }
  try {
    const result = await api("POST", conversationPath("messages"), { text, client_message_id: state.replyAttempt.clientId });
    state.replyAttempt = null;
    box.value = "";
    updateMeter();
    if (result && typeof result.seq === "number" && state.openId === id) {
      appendToTranscript({ role: "staff", text: result.text || text, sender: state.me.display_name, ts: Date.now() / 1000, seq: result.seq });
    }
  } catch (e) {
    if (e.status !== 401) say(e.message);
  } finally {
    $("send").disabled = box.disabled;
    box.focus();
  }
}

function typed() {
  updateMeter();
  const now = Date.now();
  if (!state.openId || $("reply").disabled || now - state.lastTypingSent < TYPING_EVERY_MS) return;
  state.lastTypingSent = now;
  api("POST", conversationPath("typing")).catch(() => {});
}

function insertCanned() {
  const select = $("canned");
  const option = select.selectedOptions[0];
  if (!option || !option.value) return;
  const box = $("reply");
  const text = option.dataset.text || "";
  const start = box.selectionStart ?? box.value.length;
  const end = box.selectionEnd ?? box.value.length;
  box.value = box.value.slice(0, start) + text + box.value.slice(end);
  select.value = "";
  box.focus();
  box.setSelectionRange(start + text.length, start + text.length);
  updateMeter();
}

function renderNotes(notes) {
  const list = $("notes");
  list.replaceChildren(
    ...notes.map((note) =>
      el("li", { class: "note", "data-testid": "note" }, [
        el("p", { class: "note-label", text: "Private note — not sent to the patient" }),
        el("p", { class: "note-meta", text: `${note.author || "Staff"} · ${timeOf(note.ts)}` }),
        el("p", { class: "note-text", text: note.text || "" }),
      ]),
    ),
  );
  if (!notes.length) list.append(el("li", { class: "empty", text: "No notes yet." }));
  $("notes-count").textContent = `(${notes.length})`;
}

async function addNote(event) {
  event.preventDefault();
  const box = $("note");
  const text = box.value.trim();
  if (!text) {
    say("A note needs some text.");
    return;
  }
  const result = await act("notes", { text }, "Note added (private to staff).");
  if (result) box.value = "";
}

async function transfer() {
  const to = Number($("transfer-to").value);
  if (!to) return;
  const name = $("transfer-to").selectedOptions[0].textContent;
  await act("transfer", { to }, `Transferred to ${name}.`);
}

async function returnToBot() {
  const resume = $("resume").value;
  await act("return-to-bot", resume ? { resume } : {}, "The assistant has the conversation again.");
}

// --- wiring --------------------------------------------------------------------------------

function wire() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("presence").addEventListener("change", () => {
    attempt(() => api("POST", "/presence", { status: $("presence").value }), `You are ${$("presence").value}.`);
    live.ping();
  });
  $("claim").addEventListener("click", claim);
  $("release").addEventListener("click", () => act("release", {}, "Released: the conversation is back in the queue."));
  $("transfer").addEventListener("click", transfer);
  $("return").addEventListener("click", returnToBot);
  $("close").addEventListener("click", () => act("close", {}, "Conversation closed."));
  $("reply-form").addEventListener("submit", sendReply);
  $("reply").addEventListener("input", typed);
  $("reply").addEventListener("keydown", (event) => {
    // isComposing: Enter that confirms an IME composition must not send
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) sendReply(event);
  });
  $("canned").addEventListener("change", insertCanned);
  $("note-form").addEventListener("submit", addNote);
  $("transcript").addEventListener("scroll", () => { pinned = nearEnd($("transcript")); }, { passive: true });
  if (window.ResizeObserver) new ResizeObserver(keepPinned).observe($("transcript"));
  for (const kind of ["keydown", "pointerdown", "input", "wheel"]) {
    document.addEventListener(kind, () => { state.lastActivity = Date.now(); }, { passive: true, capture: true });
  }
  document.addEventListener("pointerdown", unlockAudio, { once: true, capture: true });
}

async function boot() {
  wire();
  try {
    enterDesk(await api("GET", "/me"));
  } catch (e) {
    showLogin(e.status && e.status !== 401 ? e.message : "");
  }
}

boot();
