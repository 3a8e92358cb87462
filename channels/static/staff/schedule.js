/*
 * CareLine schedule: the staff side of appointments. One plain ES module, no build step
 * (channels/routes/schedule.py serves it as it is).
 *
 * Backend: the JSON API under /staff/api/ (the console's cookie session; every POST sends
 * X-CSRF-Token): /appointments (the day or week view), /slots (free slots), /patients (search and
 * register), /appointments/{id}/cancel | move | status.
 *
 * Times come from the server in the clinic's time zone (ISO 8601 with its offset) and are shown as
 * they are written, whatever the browser's zone. Server data is only ever written with textContent
 * / createElement, never as HTML.
 */

import { client } from "/staff/api.js";

const STATUS_LABEL = {
  proposed: "Pending", pending: "Pending", booked: "Booked", arrived: "Arrived", fulfilled: "Completed",
  cancelled: "Cancelled", noshow: "No-show", "entered-in-error": "Entered in error",
};
const ACTIVE = new Set(["proposed", "pending", "booked", "arrived"]);

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

// --- dates as the clinic writes them ("2026-03-03T09:00:00-05:00") -----------------------------

const clockOf = (iso) => iso.slice(11, 16);
const dayOf = (iso) => iso.slice(0, 10);

function addDays(day, n) {
  const [y, m, d] = day.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
}

function weekStart(day) {
  const [y, m, d] = day.split("-").map(Number);
  const weekday = (new Date(Date.UTC(y, m - 1, d)).getUTCDay() + 6) % 7; // 0 = Monday
  return addDays(day, -weekday);
}

function longDate(day) {
  const [y, m, d] = day.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d)).toLocaleDateString("en-US", {
    weekday: "long", year: "numeric", month: "long", day: "numeric", timeZone: "UTC",
  });
}

function todayIn(zone) {
  try {
    return new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" })
      .format(new Date());
  } catch (e) {
    return new Date().toISOString().slice(0, 10);
  }
}

// --- the API -------------------------------------------------------------------------------

const state = {
  me: null,
  csrf: null,
  zone: null,
  day: null, // the date asked for; a week starts on its Monday
  days: 1,
  provider: "",
  providers: [],
  types: [],
  view: null, // the last /appointments answer
  free: [], // the free slots of the view
  patient: null, // chosen in the booking dialog
  moving: null,
  cancelling: null,
  loads: 0,
  chosenByHand: false, // the date was picked: the first answer does not move it to the clinic's today
};

const api = client({
  csrf: () => state.csrf,
  ended: () => sessionEnded(),
  unreachable: "The page cannot reach the server. Check the connection.",
});

function say(text) {
  const status = $("status");
  status.textContent = "";
  // a new text each time, so the same message twice is announced twice
  window.setTimeout(() => { status.textContent = text; }, 30);
}

const query = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v)).toString();

// --- logging in and out --------------------------------------------------------------------

function showLogin(message) {
  state.me = null;
  state.csrf = null;
  $("login").hidden = false;
  $("calendar").hidden = true;
  $("who").hidden = true;
  $("login-message").textContent = message || "";
  $("login-error").textContent = "";
  $("password").value = "";
  $("email").focus();
}

function sessionEnded() {
  if (!state.me) return;
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
  showLogin("Your session has ended. Please log in again.");
}

async function login(event) {
  event.preventDefault();
  const email = $("email").value.trim();
  const password = $("password").value;
  if (!email || !password) {
    $("login-error").textContent = "Enter your email and your password.";
    return;
  }
  $("login-submit").disabled = true;
  try {
    await enter(await api("POST", "/login", { email, password }));
  } catch (e) {
    $("login-error").textContent = e.message;
    $("password").focus();
  } finally {
    $("login-submit").disabled = false;
  }
}

async function enter(session) {
  state.me = session.staff;
  state.csrf = session.csrf_token;
  $("who-name").textContent = state.me.display_name;
  $("who-role").textContent = `(${state.me.role})`;
  $("who").hidden = false;
  $("login").hidden = true;
  $("calendar").hidden = false;
  $("password").value = "";
  await load();
  $("range-title").focus();
}

async function logout() {
  try {
    await api("POST", "/logout");
  } catch (e) {
    /* the session is gone either way */
  }
  showLogin("You have logged out.");
}

// --- the view --------------------------------------------------------------------------------

function range() {
  const first = state.days === 7 ? weekStart(state.day) : state.day;
  return { first, days: state.days };
}

async function load() {
  const { first, days } = range();
  const seq = ++state.loads; // a later load wins, whatever order the answers come in
  $("date").value = state.day;
  let view;
  let slots;
  try {
    [view, slots] = await Promise.all([
      api("GET", `/appointments?${query({ date: first, days, provider_id: state.provider })}`),
      api("GET", `/slots?${query({ date: first, days, provider_id: state.provider })}`),
    ]);
  } catch (e) {
    if (e.status !== 401) say(e.message);
    return;
  }
  if (seq !== state.loads) return;
  const firstLoad = state.zone === null;
  state.zone = view.timezone;
  if (firstLoad && !state.chosenByHand && todayIn(state.zone) !== state.day) {
    state.day = todayIn(state.zone); // the clinic's today, not the browser's
    await load();
    return;
  }
  state.view = view;
  state.free = slots.items;
  state.types = view.visit_types;
  renderProviders(view.providers);
  render();
}

function renderProviders(providers) {
  state.providers = providers;
  const select = $("provider");
  const keep = state.provider;
  select.replaceChildren(
    el("option", { value: "", text: "All providers" }),
    ...providers.map((p) => el("option", { value: p.id, text: p.role ? `${p.name} (${p.role})` : p.name })),
  );
  select.value = keep;
}

function render() {
  const { first, days } = range();
  const dates = Array.from({ length: days }, (_, i) => addDays(first, i));
  $("range-title").textContent = days === 1 ? longDate(first) : `Week of ${longDate(first)}`;
  const appointments = state.view.items;
  const active = appointments.filter((a) => ACTIVE.has(a.status)).length;
  $("summary").textContent =
    `${plural(active, "appointment")} booked, ${plural(state.free.length, "free slot")}` +
    (days === 1 ? " this day." : " this week.");
  $("days").replaceChildren(...dates.map((day) => renderDay(day, appointments, state.free)));
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function renderDay(day, appointments, free) {
  const rows = [
    ...appointments.filter((a) => dayOf(a.start) === day).map((a) => ({ at: a.start, kind: "appointment", a })),
    ...free.filter((s) => dayOf(s.start) === day).map((s) => ({ at: s.start, kind: "slot", s })),
  ].sort((x, y) => x.at.localeCompare(y.at) || x.kind.localeCompare(y.kind));
  // in the day view the page's heading names the day already
  const title = state.days === 1 ? null : el("h3", { text: longDate(day) });
  if (!rows.length) {
    return el("div", { class: "day" }, [title, el("p", { class: "empty", text: "Nothing on the schedule." })]);
  }
  const head = el("tr", {}, ["Time", "Provider", "Patient", "Visit", "Status", "Actions"].map(
    (h) => el("th", { scope: "col", text: h }),
  ));
  const body = el("tbody", {}, rows.map((r) => (r.kind === "slot" ? slotRow(r.s) : appointmentRow(r.a))));
  const table = el("table", { class: "day-table", "data-day": day }, [
    el("caption", { class: "sr-only", text: `Appointments and free slots, ${longDate(day)}` }),
    el("thead", {}, [head]),
    body,
  ]);
  return el("div", { class: "day" }, [title, el("div", { class: "table-wrap" }, [table])]);
}

function timeCell(start, end) {
  return el("td", { class: "time" }, [el("time", { datetime: start, text: `${clockOf(start)}–${clockOf(end)}` })]);
}

function typeName(id) {
  const type = state.types.find((t) => t.id === id);
  return type ? type.name : String(id || "").replace(/_/g, " ");
}

function slotRow(slot) {
  const when = `${clockOf(slot.start)} with ${slot.provider_name}`;
  const book = el("button", {
    type: "button", class: "button button--small", "data-testid": "slot-book", "aria-label": `Book ${when}`,
    text: "Book",
  });
  book.addEventListener("click", () => openBooking(slot));
  return el("tr", { class: "row--free", "data-testid": "slot", "data-id": slot.id }, [
    timeCell(slot.start, slot.end),
    el("td", { text: slot.provider_name }),
    el("td", { class: "free", text: "Free" }),
    el("td", { text: slot.visit_types.map(typeName).join(", ") }),
    el("td", {}, [el("span", { class: "badge badge--free", text: "Free" })]),
    el("td", {}, [el("div", { class: "row-actions" }, [book])]),
  ]);
}

function appointmentRow(a) {
  return el("tr", {
    class: `row--appointment row--${a.status}`, "data-testid": "appointment", "data-id": a.id, "data-status": a.status,
  }, [
    timeCell(a.start, a.end),
    el("td", { text: a.provider_name }),
    el("td", { class: "patient", text: a.patient_name || `Patient ${a.patient_id}` }),
    el("td", { text: typeName(a.visit_type) }),
    el("td", {}, [
      el("span", { class: `badge badge--${a.status}`, "data-testid": "appointment-status", text: STATUS_LABEL[a.status] || a.status }),
    ]),
    el("td", {}, [el("div", { class: "row-actions" }, appointmentActions(a))]),
  ]);
}

function appointmentActions(a) {
  if (!ACTIVE.has(a.status)) return [];
  const who = `${a.patient_name || "the patient"} at ${clockOf(a.start)}`;
  const button = (text, testid, work, quiet = true) => {
    const b = el("button", {
      type: "button", class: `button button--small${quiet ? " button--quiet" : ""}`, "data-testid": testid,
      "aria-label": `${text}: ${who}`, text,
    });
    b.addEventListener("click", work);
    return b;
  };
  const started = new Date(a.start).getTime() <= Date.now();
  const actions = [];
  if (a.status === "arrived") actions.push(button("Completed", "mark-fulfilled", () => setStatus(a, "fulfilled")));
  else actions.push(button("Arrived", "mark-arrived", () => setStatus(a, "arrived")));
  // a no-show is only known once the start time has passed (the server says so too)
  if (started && a.status !== "arrived") actions.push(button("No-show", "mark-noshow", () => setStatus(a, "noshow")));
  if (a.status !== "arrived") actions.push(button("Move", "move", () => openMove(a)));
  actions.push(button("Cancel", "cancel", () => openCancel(a)));
  return actions;
}

// --- changes ---------------------------------------------------------------------------------

async function setStatus(a, status) {
  try {
    await api("POST", `/appointments/${encodeURIComponent(a.id)}/status`, { status });
  } catch (e) {
    if (e.status !== 401) say(e.message);
    return;
  }
  say(`${a.patient_name || "The patient"} at ${clockOf(a.start)}: ${STATUS_LABEL[status]}.`);
  await load();
}

/** A picker of free slots on a date of its own (the view's date to start with). */
class SlotPicker {
  constructor(root, name) {
    this.root = root;
    this.name = name;
    this.slots = [];
    this.date = el("input", { type: "date", id: `${name}-date`, "data-testid": `${name}-date` });
    this.list = el("div", { class: "slot-list", id: `${name}-slots`, "data-testid": `${name}-slots` });
    this.count = el("p", { class: "hint", id: `${name}-count`, "aria-live": "polite" });
    this.date.addEventListener("change", () => this.fetch());
    const legend = el("legend", { text: "Free slot" });
    root.replaceChildren(
      el("label", { for: this.date.id, text: "Free slots on" }), this.date, this.count,
      el("fieldset", { class: "choices" }, [legend, this.list]),
    );
  }

  async open(day, chosen) {
    this.date.value = day;
    await this.fetch(chosen);
  }

  async fetch(chosen) {
    if (!this.date.value) return;
    let data;
    try {
      data = await api("GET", `/slots?${query({ date: this.date.value, provider_id: state.provider })}`);
    } catch (e) {
      this.count.textContent = e.message;
      return;
    }
    this.slots = data.items;
    this.list.replaceChildren(...this.slots.map((s) => this.option(s, chosen && chosen.id === s.id)));
    this.count.textContent = this.slots.length ? `${plural(data.items.length, "free slot")}.`
      : "No free slot on this date: try another date.";
  }

  option(slot, checked) {
    const id = `${this.name}-slot-${slot.id}`;
    const input = el("input", { type: "radio", name: `${this.name}-slot`, id, value: slot.id, checked });
    input.addEventListener("change", () => this.root.dispatchEvent(new CustomEvent("slotchange")));
    const text = `${clockOf(slot.start)}–${clockOf(slot.end)} · ${slot.provider_name} · ${slot.location_name}`;
    return el("div", { class: "choice" }, [input, el("label", { for: id, "data-testid": `${this.name}-slot`, text })]);
  }

  chosen() {
    const input = this.list.querySelector("input:checked");
    return input ? this.slots.find((s) => s.id === input.value) : null;
  }
}

let bookPicker;
let movePicker;

function openDialog(dialog, focus) {
  if (!dialog.open) dialog.showModal();
  for (const error of dialog.querySelectorAll(".form-error")) error.textContent = "";
  (focus || dialog.querySelector("input, button")).focus();
}

function closeDialog(dialog, focusBack) {
  if (dialog.open) dialog.close();
  if (focusBack) focusBack.focus();
}

// Booking ----------------------------------------------------------------------------------------

async function openBooking(slot) {
  state.patient = null;
  $("book-patient").textContent = "Patient: none chosen yet.";
  $("patients").replaceChildren();
  $("patient-choices").hidden = true;
  $("patient-count").textContent = "";
  $("book-reason").value = "";
  openDialog($("book-dialog"), $("patient-q"));
  await bookPicker.open(slot ? dayOf(slot.start) : state.day, slot);
  fillTypes();
}

async function searchPatients(event) {
  event.preventDefault();
  const q = $("patient-q").value.trim();
  if (q.length < 2) {
    $("patient-count").textContent = "Type at least 2 letters of the name.";
    return;
  }
  let data;
  try {
    data = await api("GET", `/patients?${query({ q })}`);
  } catch (e) {
    $("patient-count").textContent = e.message;
    return;
  }
  $("patients").replaceChildren(...data.items.map(patientChoice));
  $("patient-choices").hidden = !data.items.length;
  $("patient-count").textContent = data.items.length ? `${plural(data.items.length, "patient")} found.`
    : "No patient found: check the spelling, or register a new patient.";
  if (!data.items.length) $("new-name").value = q;
}

function patientChoice(p) {
  const id = `patient-${p.id}`;
  const input = el("input", { type: "radio", name: "patient", id, value: p.id });
  input.addEventListener("change", () => choosePatient(p));
  const phone = p.phone ? ` · phone ${p.phone}` : "";
  return el("div", { class: "choice" }, [
    input, el("label", { for: id, "data-testid": "patient", text: `${p.name} · born ${p.birth_date}${phone}` }),
  ]);
}

function choosePatient(p) {
  state.patient = p;
  $("book-patient").textContent = `Patient: ${p.name}, born ${p.birth_date}.`;
}

async function registerPatient(event) {
  event.preventDefault();
  const body = { name: $("new-name").value.trim(), birth_date: $("new-birth").value, phone: $("new-phone").value };
  if (!body.name || !body.birth_date) {
    $("patient-error").textContent = "Enter the full name and the date of birth.";
    return;
  }
  let patient;
  try {
    patient = await api("POST", "/patients", body);
  } catch (e) {
    if (e.status === 409 && e.body.patient) patient = e.body.patient; // already registered: that one
    else {
      $("patient-error").textContent = e.message;
      return;
    }
  }
  $("patient-error").textContent = "";
  $("patients").replaceChildren(patientChoice(patient));
  $("patient-choices").hidden = false;
  $("patients").querySelector("input").checked = true;
  choosePatient(patient);
  $("new-patient").open = false;
  $("patient-count").textContent = `${patient.name} registered and chosen.`;
  $("book-picker").querySelector("input").focus();
}

function fillTypes() {
  const slot = bookPicker.chosen();
  const select = $("book-type");
  const allowed = slot ? state.types.filter((t) => slot.visit_types.includes(t.id)) : [];
  // "" lets the server choose: the slot's first type this patient may have (no follow-up for a new patient)
  const usual = el("option", { value: "", text: allowed.length ? "Usual for this patient" : "Choose a slot first" });
  select.replaceChildren(usual, ...allowed.map((t) => el("option", {
    value: t.id, text: `${t.name} (${t.minutes} min${t.staff_only ? ", staff only" : ""})`,
  })));
}

async function confirmBooking(event) {
  event.preventDefault();
  const slot = bookPicker.chosen();
  const error = $("book-error");
  if (!state.patient) {
    error.textContent = "Choose the patient first (search by name, or register a new patient).";
    $("patient-q").focus();
    return;
  }
  if (!slot) {
    error.textContent = "Choose a free slot.";
    return;
  }
  const body = { slot_id: slot.id, patient_id: state.patient.id, visit_type: $("book-type").value || undefined };
  if ($("book-reason").value.trim()) body.reason = $("book-reason").value.trim();
  let booked;
  try {
    booked = await api("POST", "/appointments", body);
  } catch (e) {
    error.textContent = e.message;
    if (e.status === 409) await bookPicker.fetch(); // it was taken: show what is still free
    return;
  }
  closeDialog($("book-dialog"));
  say(`Booked: ${state.patient.name}, ${longDate(dayOf(booked.start))} at ${clockOf(booked.start)} with ${booked.provider_name}.`);
  state.day = dayOf(booked.start);
  await load();
  focusRow(booked.id);
}

function focusRow(id) {
  const row = document.querySelector(`[data-testid=appointment][data-id="${CSS.escape(String(id))}"]`);
  const target = row && row.querySelector("button");
  (target || $("range-title")).focus();
}

// Moving -----------------------------------------------------------------------------------------

async function openMove(a) {
  state.moving = a;
  $("move-what").textContent = `${a.patient_name || "The patient"}: now ${longDate(dayOf(a.start))} at ` +
    `${clockOf(a.start)} with ${a.provider_name}. Pick the new time.`;
  openDialog($("move-dialog"), movePicker.date);
  await movePicker.open(dayOf(a.start));
}

async function confirmMove(event) {
  event.preventDefault();
  const slot = movePicker.chosen();
  if (!slot) {
    $("move-error").textContent = "Choose a free slot.";
    return;
  }
  const a = state.moving;
  let moved;
  try {
    moved = await api("POST", `/appointments/${encodeURIComponent(a.id)}/move`, { slot_id: slot.id });
  } catch (e) {
    $("move-error").textContent = e.message;
    if (e.status === 409) await movePicker.fetch();
    return;
  }
  closeDialog($("move-dialog"));
  say(`Moved: ${a.patient_name || "the patient"} to ${longDate(dayOf(moved.start))} at ${clockOf(moved.start)}.`);
  state.day = dayOf(moved.start);
  await load();
  focusRow(moved.id);
}

// Cancelling -------------------------------------------------------------------------------------

function openCancel(a) {
  state.cancelling = a;
  $("cancel-what").textContent = `${a.patient_name || "The patient"}, ${longDate(dayOf(a.start))} at ` +
    `${clockOf(a.start)} with ${a.provider_name}.`;
  $("cancel-reason").value = "";
  openDialog($("cancel-dialog"), $("cancel-reason"));
}

async function confirmCancel(event) {
  event.preventDefault();
  const reason = $("cancel-reason").value.trim();
  if (!reason) {
    $("cancel-error").textContent = "Say why it is cancelled.";
    $("cancel-reason").focus();
    return;
  }
  const a = state.cancelling;
  try {
    await api("POST", `/appointments/${encodeURIComponent(a.id)}/cancel`, { reason });
  } catch (e) {
    $("cancel-error").textContent = e.message;
    return;
  }
  closeDialog($("cancel-dialog"));
  say(`Cancelled: ${a.patient_name || "the patient"} at ${clockOf(a.start)}.`);
  await load();
  $("range-title").focus();
}

// --- wiring --------------------------------------------------------------------------------

function go(day) {
  state.day = day;
  state.chosenByHand = true;
  load();
}

function wire() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("toolbar").addEventListener("submit", (event) => event.preventDefault());
  $("provider").addEventListener("change", () => {
    state.provider = $("provider").value;
    load();
  });
  for (const radio of document.querySelectorAll("input[name=view]")) {
    radio.addEventListener("change", () => {
      state.days = Number(radio.value);
      load();
    });
  }
  $("date").addEventListener("change", () => $("date").value && go($("date").value));
  $("previous").addEventListener("click", () => go(addDays(state.day, -state.days)));
  $("next").addEventListener("click", () => go(addDays(state.day, state.days)));
  $("today").addEventListener("click", () => go(todayIn(state.zone)));
  $("book-open").addEventListener("click", () => openBooking(null));
  $("patient-search").addEventListener("submit", searchPatients);
  $("patient-form").addEventListener("submit", registerPatient);
  $("book-form").addEventListener("submit", confirmBooking);
  $("move-form").addEventListener("submit", confirmMove);
  $("cancel-form").addEventListener("submit", confirmCancel);
  bookPicker = new SlotPicker($("book-picker"), "book");
  movePicker = new SlotPicker($("move-picker"), "move");
  $("book-picker").addEventListener("slotchange", fillTypes);
  for (const button of document.querySelectorAll("[data-close]")) {
    button.addEventListener("click", () => closeDialog(button.closest("dialog"), $("range-title")));
  }
}

async function boot() {
  wire();
  state.day = todayIn(Intl.DateTimeFormat().resolvedOptions().timeZone); // until the clinic's zone is known
  try {
    await enter(await api("GET", "/me"));
  } catch (e) {
    showLogin(e.status && e.status !== 401 ? e.message : "");
  }
}

boot();
