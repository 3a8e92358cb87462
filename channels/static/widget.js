/*
 * CareLine web chat: one plain script, no dependencies, no build step.
 *
 * Floating (any site):  <script src="https://clinic-host/widget.js" defer></script>
 *   adds a launcher button that opens a chat panel.
 * Inline (full page):   <div id="careline-chat" data-mode="inline"></div> on the page, or
 *   data-mode="inline" on the script tag, renders the chat in place (see chat.html).
 *
 * The gateway's address comes from this script's own src, so embedding needs nothing else.
 * Protocol (channels/app.py, WebSocket /ws, JSON frames):
 *   → hello {conversation_token}        ← session {conversation_token, history, owner}
 *   → message {text, client_message_id} ← ack {client_message_id, owner}, then message {role, text, buttons}…
 *                                        ← error {client_message_id, error, detail}
 *   and, at any time, what clinic staff do (channels/routes/web.py, widget_frame):
 *     ← message {role: "staff"|"system", text, buttons, sender?}   a reply or a notice, pushed
 *     ← agent {state: "joined"|"left", name}   ← typing {name}   ← owner {owner}
 * Only the conversation token is kept, in sessionStorage; the transcript stays on the server.
 */
(function () {
  "use strict";

  if (window.__carelineChatLoaded) return; // the tag was included twice
  window.__carelineChatLoaded = true;

  const TOKEN_KEY = "careline.conversation_token";
  const MAX_CHARS = 2000;
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const CONNECT_TIMEOUT_MS = 10000;
  // A message whose connection dies this many times before its ack is given up, so a frame
  // that breaks the server cannot loop forever.
  const MAX_DROPS = 6;
  const ROLES = ["user", "bot", "staff", "system"];
  const SPEAKER = { user: "You", bot: "CareLine", staff: "Clinic staff", system: "Notice" };
  const COUNTER_ANNOUNCE_AT = [0, 50, 200]; // characters left, smallest first
  const STAFF_TYPING_MS = 6000; // staff consoles say "typing" at most every 3 s while they type

  // currentScript is only set while this file first runs, so read it now.
  const ownScript = document.currentScript || findOwnScript();

  function findOwnScript() {
    const scripts = document.querySelectorAll('script[src*="widget.js"]');
    return scripts.length ? scripts[scripts.length - 1] : null;
  }

  /** ws(s)://gateway/…/ws next to widget.js, so it also works under a path prefix. */
  function socketUrl(script) {
    const url = new URL("ws", script && script.src ? script.src : window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.search = "";
    url.hash = "";
    return url.href;
  }

  // --- small helpers ---------------------------------------------------------------------

  const tokenStore = {
    memory: null, // when storage is blocked (privacy modes, sandboxed frames)
    get() {
      try {
        return window.sessionStorage.getItem(TOKEN_KEY) || this.memory;
      } catch (e) {
        return this.memory;
      }
    },
    set(token) {
      this.memory = token;
      try {
        window.sessionStorage.setItem(TOKEN_KEY, token);
      } catch (e) { /* memory only */ }
    },
  };

  const CONTROL_CHARS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g;

  /** The same clean-up the gateway applies, so local bubbles match the stored transcript. */
  function normaliseText(text) {
    return String(text).normalize("NFC").replace(CONTROL_CHARS, "").replace(/[ \t]+/g, " ").trim();
  }

  function newMessageId() {
    const c = window.crypto;
    if (c && typeof c.randomUUID === "function") return c.randomUUID();
    // randomUUID needs a secure context; an embedding page may be plain http.
    const b = c.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === false || value === null || value === undefined) continue;
      if (name === "text") node.textContent = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  const URL_IN_TEXT = /\bhttps?:\/\/[^\s<>"']+/g;

  /** Text as text nodes (never HTML), with http(s) links made clickable. */
  function appendLinkified(parent, text) {
    let last = 0;
    let match;
    URL_IN_TEXT.lastIndex = 0;
    while ((match = URL_IN_TEXT.exec(text)) !== null) {
      const href = match[0].replace(/[.,;:!?)\]]+$/, "");
      if (match.index > last) parent.append(text.slice(last, match.index));
      parent.append(el("a", { href, target: "_blank", rel: "noopener noreferrer", text: href }));
      last = match.index + href.length;
      URL_IN_TEXT.lastIndex = last;
    }
    if (last < text.length) parent.append(text.slice(last));
  }

  function cleanButtons(buttons) {
    if (!Array.isArray(buttons)) return [];
    return buttons
      .filter((b) => b && typeof b.title === "string" && typeof b.payload === "string" && b.title)
      .map((b) => ({ title: b.title, payload: b.payload }));
  }

  /**
   * Server transcript → what we display. A quick reply is stored as its payload
   * ("/request_human"); show the title of the button that sent it, as when it was clicked.
   */
  function displayItems(history) {
    const items = [];
    for (const raw of Array.isArray(history) ? history : []) {
      if (!raw || typeof raw.text !== "string") continue;
      const role = ROLES.includes(raw.role) ? raw.role : "bot";
      let text = raw.text;
      if (role === "user") {
        for (let i = items.length - 1; i >= 0 && items[i].role !== "user"; i--) {
          const pressed = items[i].buttons.find((b) => b.payload === text);
          if (pressed) {
            text = pressed.title;
            break;
          }
        }
      }
      const item = { role, text, buttons: role === "user" ? [] : cleanButtons(raw.buttons) };
      if (role === "staff" && typeof raw.sender === "string" && raw.sender) item.sender = raw.sender;
      items.push(item);
    }
    return items;
  }

  function itemKey(item) {
    return `${item.role}\u0000${item.text}\u0000${JSON.stringify(item.buttons || [])}`;
  }

  // --- connection ------------------------------------------------------------------------

  /** One WebSocket at a time, re-opened with capped exponential backoff and jitter. */
  class Connection {
    constructor(url, handlers) {
      this.url = url;
      this.handlers = handlers; // onFrame(frame), onDown(), onState(state)
      this.ws = null;
      this.ready = false; // a session frame arrived on the current socket
      this.attempt = 0;
      this.started = false;
      this.everReady = false;
      this.retryTimer = null;
    }

    start() {
      if (this.started) return;
      this.started = true;
      this.open();
    }

    open() {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.handlers.onState(this.everReady ? "reconnecting" : "connecting");
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (e) {
        this.scheduleRetry();
        return;
      }
      this.ws = ws;
      this.ready = false;
      // No session in time (unreachable, or a server that accepts and hangs): try again.
      const sessionTimer = setTimeout(() => ws.close(), CONNECT_TIMEOUT_MS);
      ws.onopen = () => this.sendHello();
      ws.onmessage = (event) => {
        if (ws !== this.ws) return;
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch (e) {
          return;
        }
        if (!frame || typeof frame !== "object") return;
        if (frame.type === "session") {
          clearTimeout(sessionTimer);
          this.ready = true;
          this.everReady = true;
          this.attempt = 0;
          this.handlers.onState("open");
        }
        this.handlers.onFrame(frame);
      };
      ws.onclose = () => {
        clearTimeout(sessionTimer);
        if (ws !== this.ws) return;
        this.ws = null;
        this.ready = false;
        this.handlers.onDown();
        this.scheduleRetry();
      };
    }

    scheduleRetry() {
      const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
      const delay = base / 2 + Math.random() * (base / 2);
      this.attempt += 1;
      this.handlers.onState(this.everReady ? "reconnecting" : "connecting");
      this.retryTimer = setTimeout(() => this.open(), delay);
    }

    /** Skip the wait when the browser says the network is back. */
    retryNow() {
      if (!this.started || this.ws) return;
      this.attempt = 0;
      this.open();
    }

    send(frame) {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
      this.ws.send(JSON.stringify(frame));
      return true;
    }

    sendHello() {
      return this.send({ type: "hello", conversation_token: tokenStore.get() || null });
    }
  }

  // --- view ------------------------------------------------------------------------------

  const STYLES = `
:host { all: initial; }
:host { display: block; }
.careline-root {
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-size: 16px; line-height: 1.45; color: #1b1f24; box-sizing: border-box;
  -webkit-text-size-adjust: 100%; text-align: left;
}
.careline-root *, .careline-root *::before, .careline-root *::after { box-sizing: inherit; }
.careline-root--inline { height: 100%; }
.careline-sr-only {
  position: absolute !important; width: 1px; height: 1px; padding: 0; margin: -1px;
  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0;
}
.careline-panel {
  display: flex; flex-direction: column; min-height: 0; background: #fff;
  border: 1px solid #c9ced6; border-radius: 12px; overflow: hidden;
}
.careline-panel[hidden] { display: none; }
.careline-root--inline .careline-panel { height: 100%; }
.careline-root--floating .careline-panel {
  position: fixed; right: 16px; bottom: 88px; z-index: 2147483000;
  width: 380px; max-width: calc(100vw - 32px); height: 600px; max-height: calc(100vh - 112px);
  box-shadow: 0 12px 40px rgba(0, 0, 0, 0.25);
}
.careline-launcher {
  position: fixed; right: 16px; bottom: 16px; z-index: 2147483000;
  display: inline-flex; align-items: center; gap: 8px; min-height: 52px; padding: 0 20px;
  border: 2px solid #fff; border-radius: 26px; background: #0b57a4; color: #fff;
  font: inherit; font-weight: 600; cursor: pointer; box-shadow: 0 4px 16px rgba(0, 0, 0, 0.3);
}
.careline-launcher:hover { background: #094a8c; }
.careline-launcher svg { width: 22px; height: 22px; flex: none; }
.careline-header {
  display: flex; align-items: center; gap: 8px; padding: 10px 8px 10px 16px;
  background: #0b57a4; color: #fff;
}
.careline-title { margin: 0; font-size: 17px; font-weight: 700; line-height: 1.3; }
.careline-subtitle { margin: 0; font-size: 14px; }
.careline-close {
  margin-left: auto; flex: none; width: 44px; height: 44px; border: 0; border-radius: 8px;
  background: transparent; color: #fff; font: inherit; font-size: 26px; line-height: 1; cursor: pointer;
}
.careline-close:hover { background: rgba(255, 255, 255, 0.15); }
.careline-notice {
  margin: 0; padding: 8px 16px; font-size: 14px;
  background: #fff6e0; color: #4a3500; border-bottom: 1px solid #e8d39a;
}
.careline-notice a { color: inherit; font-weight: 700; }
.careline-intro { margin: 0; font-size: 14px; color: #4d5560; }
.careline-log {
  flex: 1 1 auto; min-height: 0; overflow-y: auto; overscroll-behavior: contain;
  display: flex; flex-direction: column; gap: 10px; padding: 12px 16px 16px;
}
.careline-msg { display: flex; flex-direction: column; align-items: flex-start; max-width: 85%; }
.careline-msg--user { align-self: flex-end; align-items: flex-end; }
.careline-msg--system { align-self: stretch; max-width: 100%; }
.careline-msg[hidden] { display: none; }
.careline-bubble {
  padding: 8px 12px; border: 1px solid transparent; border-radius: 14px;
  white-space: pre-wrap; overflow-wrap: anywhere;
}
.careline-msg--bot .careline-bubble { background: #eef1f5; border-bottom-left-radius: 4px; }
.careline-msg--user .careline-bubble { background: #0b57a4; color: #fff; border-bottom-right-radius: 4px; }
.careline-msg--staff .careline-bubble { background: #e3f4e8; color: #12391f; border-color: #9fd1ae; }
.careline-msg--system .careline-bubble {
  background: #fff6e0; color: #4a3500; border-color: #e8d39a; border-radius: 8px;
}
.careline-bubble a { color: #0b57a4; text-decoration: underline; }
.careline-msg--user .careline-bubble a { color: #fff; }
.careline-msg--staff .careline-bubble a, .careline-msg--system .careline-bubble a { color: inherit; }
.careline-speaker { font-size: 13px; font-weight: 600; color: #12391f; margin: 0 4px 2px; }
.careline-note { margin: 2px 4px 0; font-size: 13px; color: #4d5560; }
.careline-note[hidden] { display: none; }
.careline-root--connected .careline-msg--pending .careline-note { display: none; }
.careline-msg--failed .careline-note { color: #8a1c1c; }
.careline-quick-replies { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 6px; }
.careline-quick-reply {
  min-height: 40px; padding: 6px 14px; border: 2px solid #0b57a4; border-radius: 20px;
  background: #fff; color: #0b57a4; font: inherit; font-size: 15px; text-align: left; cursor: pointer;
}
.careline-quick-reply:hover:not(:disabled) { background: #e8f0fa; }
.careline-quick-reply:disabled { border-color: #b8bec6; background: #f6f7f9; color: #5c6570; cursor: default; }
.careline-error {
  align-self: stretch; margin: 0; padding: 8px 12px; border: 1px solid #e7a4a4; border-radius: 8px;
  background: #fdecec; color: #7a1010; font-size: 15px;
}
.careline-typing { display: flex; align-items: center; gap: 4px; padding: 0 16px 8px; min-height: 16px; }
.careline-typing[hidden] { display: none; }
.careline-dot {
  width: 8px; height: 8px; border-radius: 50%; background: #5c6570;
  animation: careline-bounce 1.2s infinite ease-in-out;
}
.careline-dot:nth-child(2) { animation-delay: 0.15s; }
.careline-dot:nth-child(3) { animation-delay: 0.3s; }
@keyframes careline-bounce {
  0%, 80%, 100% { transform: translateY(0); opacity: 0.45; }
  40% { transform: translateY(-4px); opacity: 1; }
}
.careline-status { margin: 0; padding: 0 16px 6px; font-size: 14px; color: #4d5560; }
.careline-staff-typing { margin: 0; padding: 0 16px 6px; font-size: 14px; font-style: italic; color: #12391f; }
.careline-staff-typing:empty { padding: 0; }
.careline-status:empty { padding: 0; }
.careline-form {
  display: grid; grid-template-columns: minmax(0, 1fr) auto; gap: 8px; align-items: end;
  padding: 10px 12px 8px; border-top: 1px solid #dfe3e8; margin: 0;
}
.careline-input {
  display: block; width: 100%; min-height: 44px; max-height: 140px; margin: 0; padding: 10px 12px;
  border: 2px solid #6b7480; border-radius: 10px; background: #fff; color: #1b1f24;
  font: inherit; line-height: 1.4; resize: none;
}
.careline-input::placeholder { color: #5c6570; opacity: 1; }
.careline-send {
  min-height: 44px; padding: 0 18px; border: 0; border-radius: 10px;
  background: #0b57a4; color: #fff; font: inherit; font-weight: 600; cursor: pointer;
}
.careline-send:hover { background: #094a8c; }
.careline-meta {
  grid-column: 1 / -1; display: flex; flex-wrap: wrap; justify-content: space-between; gap: 4px 12px;
  font-size: 13px; color: #4d5560;
}
.careline-counter { margin-left: auto; }
.careline-counter--near { color: #8a1c1c; font-weight: 600; }
.careline-root :focus { outline: none; }
.careline-root :focus-visible, .careline-input:focus {
  outline: 3px solid #1b1f24; outline-offset: 2px; box-shadow: 0 0 0 2px #fff;
}
.careline-header :focus-visible { outline-color: #fff; box-shadow: 0 0 0 2px #1b1f24; }
.careline-log:focus-visible { outline-offset: -3px; box-shadow: none; }
@media (max-width: 480px) {
  .careline-root--floating .careline-panel {
    top: 0; right: 0; bottom: 0; left: 0; width: 100%; max-width: none; height: 100%;
    max-height: none; border: 0; border-radius: 0;
  }
  .careline-root--open .careline-launcher { display: none; }
  .careline-msg { max-width: 92%; }
}
@media (max-width: 400px) {
  .careline-hint { display: none; }
}
@media (prefers-reduced-motion: reduce) {
  .careline-dot { animation: none; opacity: 0.7; }
}
@media (forced-colors: active) {
  .careline-launcher, .careline-send, .careline-quick-reply, .careline-close { border: 2px solid ButtonText; }
  .careline-dot { background: CanvasText; }
}
`;

  const SVG_NS = "http://www.w3.org/2000/svg";
  const CHAT_ICON_PATH =
    "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm3 6a1.5 1.5 0 1 0 0 " +
    "3 1.5 1.5 0 0 0 0-3zm5 0a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3zm5 0a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3z";

  /** Built node by node: sites with Trusted Types refuse innerHTML. */
  function chatIcon() {
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const path = document.createElementNS(SVG_NS, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute("d", CHAT_ICON_PATH);
    svg.append(path);
    return svg;
  }

  /** Constructed sheets are not inline styles, so a site's style-src policy does not block them. */
  function addStyles(root) {
    try {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLES);
      root.adoptedStyleSheets = [sheet];
    } catch (e) {
      root.append(el("style", { text: STYLES }));
    }
  }

  const FOCUSABLE = 'a[href], button:not([disabled]), textarea:not([disabled]), [tabindex="0"]';
  const FULL_SCREEN = "(max-width: 480px)"; // keep in step with the @media rule in STYLES

  /** The DOM: builds it inside a shadow root and knows nothing about the protocol. */
  class ChatView {
    constructor(host, floating, handlers) {
      this.floating = floating;
      this.handlers = handlers; // onSend(text), onQuickReply(button), onOpen()
      const root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
      if (root === host) root.append(el("style", { text: STYLES }));
      else addStyles(root);
      this.root = el("div", {
        class: `careline-root careline-root--${floating ? "floating" : "inline"}`,
        "data-testid": "careline-chat",
        "data-connection": "idle",
        "data-waiting": "false",
      });
      root.append(this.root);
      this.build();
    }

    build() {
      const panelAttrs = this.floating
        ? { role: "dialog", "aria-modal": "false", "aria-labelledby": "careline-title", hidden: true }
        : { role: "region", "aria-label": "Chat with the clinic" };
      this.panel = el("section", Object.assign({ class: "careline-panel", id: "careline-panel" }, panelAttrs));

      if (this.floating) {
        this.launcher = el("button", {
          type: "button", class: "careline-launcher", "data-testid": "careline-launcher",
          "aria-expanded": "false", "aria-controls": "careline-panel", "aria-haspopup": "dialog",
        });
        this.launcher.append(chatIcon(), el("span", { text: "Chat with us" }));
        this.launcher.addEventListener("click", () => (this.isOpen() ? this.close() : this.open()));

        const close = el("button", {
          type: "button", class: "careline-close", "aria-label": "Close chat", text: "\u00d7",
        });
        close.addEventListener("click", () => this.close());
        this.panel.append(
          el("header", { class: "careline-header" }, [
            el("div", {}, [
              el("h2", { class: "careline-title", id: "careline-title", text: "CareLine" }),
              el("p", { class: "careline-subtitle", text: "Chat with the clinic" }),
            ]),
            close,
          ]),
          el("p", { class: "careline-notice" }, [
            "Not for emergencies. Call ", el("a", { href: "tel:911", text: "911" }),
            " in an emergency; for a mental health crisis call or text ",
            el("a", { href: "tel:988", text: "988" }), ".",
          ]),
        );
        this.root.addEventListener("keydown", (event) => {
          if (event.key === "Escape" && this.isOpen()) {
            event.preventDefault();
            this.close();
          } else if (event.key === "Tab" && this.isOpen()) {
            this.keepFocusInFullScreenPanel(event);
          }
        });
      }

      this.log = el("div", {
        class: "careline-log", role: "log", "aria-live": "polite", "aria-label": "Conversation",
        tabindex: "0", "data-testid": "careline-transcript",
      }, [el("p", {
        class: "careline-intro",
        text: "Ask about the clinic, appointments or a health question. A member of our team can join if you need one.",
      })]);
      this.typing = el("div", { class: "careline-typing", "data-testid": "careline-typing", hidden: true }, [
        el("span", { class: "careline-dot", "aria-hidden": "true" }),
        el("span", { class: "careline-dot", "aria-hidden": "true" }),
        el("span", { class: "careline-dot", "aria-hidden": "true" }),
        el("span", { class: "careline-sr-only", text: "CareLine is replying" }),
      ]);
      this.status = el("p", {
        class: "careline-status", role: "status", "aria-live": "polite", "data-testid": "careline-status",
      });
      this.limitAnnouncer = el("p", { class: "careline-sr-only", "aria-live": "polite" });
      // "Sam is typing…" from the clinic's staff console; always present so that it is announced
      this.staffTyping = el("p", {
        class: "careline-staff-typing", "aria-live": "polite", "data-testid": "careline-staff-typing",
      });

      this.input = el("textarea", {
        id: "careline-input", class: "careline-input", rows: "1", maxlength: String(MAX_CHARS),
        placeholder: "Type your message…", autocomplete: "off", enterkeyhint: "send",
        "aria-describedby": "careline-hint careline-counter", "data-testid": "careline-input",
      });
      this.counter = el("span", { id: "careline-counter", class: "careline-counter", "data-testid": "careline-counter", text: `0 / ${MAX_CHARS}` });
      this.form = el("form", { class: "careline-form", novalidate: true }, [
        el("label", { for: "careline-input", class: "careline-sr-only", text: "Message to the clinic" }),
        this.input,
        el("button", { type: "submit", class: "careline-send", "data-testid": "careline-send", text: "Send" }),
        el("div", { class: "careline-meta" }, [
          el("span", { id: "careline-hint", class: "careline-hint", text: "Enter to send, Shift+Enter for a new line" }),
          this.counter,
        ]),
      ]);
      this.form.addEventListener("submit", (event) => {
        event.preventDefault();
        this.submit();
      });
      this.input.addEventListener("keydown", (event) => {
        // isComposing: Enter that confirms an IME composition must not send.
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
          event.preventDefault();
          this.submit();
        }
      });
      this.input.addEventListener("input", () => this.inputChanged());

      this.panel.append(this.log, this.typing, this.staffTyping, this.status, this.form, this.limitAnnouncer);
      if (this.launcher) this.root.append(this.launcher);
      this.root.append(this.panel);
    }

    // floating panel
    isOpen() {
      return !this.floating || !this.panel.hidden;
    }

    open() {
      this.panel.hidden = false;
      this.launcher.setAttribute("aria-expanded", "true");
      this.root.classList.add("careline-root--open");
      this.handlers.onOpen();
      this.scrollToEnd();
      this.input.focus();
    }

    /** Full screen, the panel hides the page, so Tab must not wander onto it. */
    keepFocusInFullScreenPanel(event) {
      if (!window.matchMedia || !window.matchMedia(FULL_SCREEN).matches) return;
      const items = Array.from(this.panel.querySelectorAll(FOCUSABLE)).filter((n) => n.getClientRects().length);
      if (!items.length) return;
      const active = this.panel.getRootNode().activeElement;
      const first = items[0];
      const last = items[items.length - 1];
      if (event.shiftKey && active === first) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && active === last) {
        event.preventDefault();
        first.focus();
      }
    }

    close() {
      this.panel.hidden = true;
      this.launcher.setAttribute("aria-expanded", "false");
      this.root.classList.remove("careline-root--open");
      this.launcher.focus();
    }

    // composer
    submit() {
      const text = this.input.value;
      if (!normaliseText(text)) return;
      this.input.value = "";
      this.inputChanged();
      this.handlers.onSend(text);
      this.input.focus();
    }

    restoreDraft(text) {
      if (this.input.value) return;
      this.input.value = text.slice(0, MAX_CHARS);
      this.inputChanged();
    }

    inputChanged() {
      const length = this.input.value.length;
      const left = MAX_CHARS - length;
      this.counter.textContent = `${length} / ${MAX_CHARS}`;
      this.counter.classList.toggle("careline-counter--near", left <= 200);
      const mark = COUNTER_ANNOUNCE_AT.find((at) => left <= at);
      if (mark !== this.lastMark) {
        this.lastMark = mark;
        this.limitAnnouncer.textContent =
          mark === undefined ? "" : left === 0 ? "Character limit reached." : `${left} characters left.`;
      }
      this.input.style.height = "auto";
      this.input.style.height = `${Math.min(this.input.scrollHeight + 4, 140)}px`;
    }

    // transcript
    messageNode(role, text, buttons, sender) {
      const node = el("div", { class: `careline-msg careline-msg--${role}`, "data-testid": "careline-msg", "data-role": role });
      // a staff reply is named by its sender when the console gave one: "Sam (clinic staff)"
      const speaker = role === "staff" && sender ? `${sender} (clinic staff)` : SPEAKER[role];
      if (role === "staff") node.append(el("span", { class: "careline-speaker", "aria-hidden": "true", text: speaker }));
      const bubble = el("div", { class: "careline-bubble" }, [
        el("span", { class: "careline-sr-only", text: `${speaker}: ` }),
      ]);
      appendLinkified(bubble, text);
      node.append(bubble);
      if (buttons && buttons.length) {
        const group = el("div", { class: "careline-quick-replies", role: "group", "aria-label": "Suggested replies" });
        for (const button of buttons) {
          const b = el("button", {
            type: "button", class: "careline-quick-reply", "data-testid": "careline-quick-reply", text: button.title,
          });
          b.addEventListener("click", () => {
            if (!b.disabled) this.handlers.onQuickReply(button);
          });
          group.append(b);
        }
        node.append(group);
      }
      return node;
    }

    setNote(node, text) {
      let note = node.querySelector(".careline-note");
      if (!text) {
        if (note) note.remove();
        return;
      }
      if (!note) {
        note = el("p", { class: "careline-note" });
        node.append(note);
      }
      note.textContent = text;
    }

    errorNode(text) {
      return el("p", { class: "careline-error", "data-testid": "careline-error", text });
    }

    /** Insert before `before` (the first unconfirmed bubble), keeping the view pinned to the end. */
    insert(node, before) {
      const pinned = this.isNearEnd();
      this.log.insertBefore(node, before && before.parentNode === this.log ? before : null);
      if (pinned) this.scrollToEnd();
    }

    isNearEnd() {
      return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 48;
    }

    scrollToEnd() {
      this.log.scrollTop = this.log.scrollHeight;
    }

    setQuickRepliesEnabled(node, enabled) {
      for (const b of node.querySelectorAll(".careline-quick-reply")) b.disabled = !enabled;
    }

    // status
    setConnection(state, pendingCount) {
      this.root.dataset.connection = state;
      this.root.classList.toggle("careline-root--connected", state === "open");
      let text = "";
      if (state === "connecting") text = "Connecting…";
      else if (state === "reconnecting") {
        text = pendingCount
          ? "Reconnecting… Your message will be sent when the connection is back."
          : "Reconnecting…";
      } else if (state === "open" && this.lastState === "reconnecting") text = "Connected again.";
      this.lastState = state;
      if (this.status.textContent !== text) this.keepPinned(() => { this.status.textContent = text; });
      clearTimeout(this.statusTimer);
      if (state === "open" && text) {
        this.statusTimer = setTimeout(() => this.keepPinned(() => { this.status.textContent = ""; }), 4000);
      }
    }

    /** "Sam is typing…" until their message comes, they stop (6 s) or the conversation moves on. */
    setStaffTyping(name) {
      clearTimeout(this.staffTypingTimer);
      const text = name ? `${name} is typing…` : "";
      if (this.staffTyping.textContent !== text) this.keepPinned(() => { this.staffTyping.textContent = text; });
      if (name) this.staffTypingTimer = setTimeout(() => this.setStaffTyping(null), STAFF_TYPING_MS);
    }

    setWaiting(waiting) {
      this.keepPinned(() => { this.typing.hidden = !waiting; });
      this.root.dataset.waiting = waiting ? "true" : "false";
    }

    /** Lines below the log take its height: stay at the newest message if we were there. */
    keepPinned(change) {
      const pinned = this.isNearEnd();
      change();
      if (pinned) this.scrollToEnd();
    }
  }

  // --- controller ------------------------------------------------------------------------

  /**
   * Conversation state: what the server has confirmed (`shown`), what is still on its way
   * (`outbox`), and the reconciliation between them after a reconnect.
   */
  class Chat {
    constructor(host, floating, url) {
      this.shown = []; // {key, role, node, hasButtons} in transcript order; role "local" = ours only
      this.outbox = []; // {id, text, display, typed, node, sent, drops, maybeDelivered, held, holds}
      this.resyncing = false; // waiting for the session that follows re-sent messages
      this.knownAtDrop = null; // server entries shown when a connection died with messages in flight
      this.owner = "bot";
      this.state = "idle";
      this.view = new ChatView(host, floating, {
        onSend: (text) => this.send(text),
        onQuickReply: (button) => this.send(button.payload, button.title),
        onOpen: () => this.conn.start(),
      });
      this.conn = new Connection(url, {
        onFrame: (frame) => this.onFrame(frame),
        onDown: () => this.onDown(),
        onState: (state) => {
          this.state = state;
          this.view.setConnection(state, this.outbox.length);
          this.refresh();
        },
      });
      window.addEventListener("online", () => this.conn.retryNow());
      document.addEventListener("visibilitychange", () => {
        if (document.visibilityState !== "visible") return;
        this.conn.retryNow();
        // Pushed staff replies are not kept for a socket that missed them (pub/sub keeps nothing):
        // refresh the transcript when the patient comes back.
        if (this.owner !== "bot" && this.conn.ready && !this.outbox.length && !this.resyncing) this.conn.sendHello();
      });
    }

    start() {
      this.conn.start();
    }

    send(rawText, display) {
      const text = normaliseText(rawText);
      if (!text) return;
      if (text.length > MAX_CHARS) {
        this.addLocal(this.view.errorNode(`Sorry, messages can be at most ${MAX_CHARS} characters.`));
        this.view.restoreDraft(rawText);
        return;
      }
      const shownText = display ? normaliseText(display) : text;
      const node = this.view.messageNode("user", shownText, []);
      node.classList.add("careline-msg--pending");
      this.view.setNote(node, "Waiting to send…");
      const item = { id: newMessageId(), text, display: shownText, typed: !display, node, sent: false,
        drops: 0, maybeDelivered: false, held: false, holds: 0 };
      this.outbox.push(item);
      this.view.insert(node, null);
      this.view.scrollToEnd();
      this.flush();
      if (!this.conn.ready) this.view.setConnection(this.state, this.outbox.length);
      this.refresh();
    }

    flush() {
      if (!this.conn.ready) return;
      for (const item of this.outbox.slice()) {
        if (item.sent || item.held) continue;
        if (item.drops >= MAX_DROPS) {
          this.fail(item, "the connection kept dropping");
          continue;
        }
        if (!this.conn.send({ type: "message", text: item.text, client_message_id: item.id })) return;
        item.sent = true;
      }
    }

    onFrame(frame) {
      if (frame.type === "session") this.onSession(frame);
      else if (frame.type === "ack") this.onAck(frame);
      else if (frame.type === "message") this.onMessage(frame);
      else if (frame.type === "error") this.onError(frame);
      else if (frame.type === "agent") this.onAgent(frame);
      else if (frame.type === "typing") this.view.setStaffTyping(typeof frame.name === "string" && frame.name ? frame.name : "Clinic staff");
      else if (frame.type === "owner" && typeof frame.owner === "string") {
        this.owner = frame.owner;
        if (frame.owner !== "staff") this.view.setStaffTyping(null);
      }
      this.refresh();
    }

    onSession(frame) {
      if (typeof frame.conversation_token === "string") tokenStore.set(frame.conversation_token);
      if (typeof frame.owner === "string") this.owner = frame.owner;
      this.resyncing = false;
      const known = this.knownAtDrop !== null ? this.knownAtDrop : this.serverEntryCount();
      this.hideDelivered(this.renderHistory(frame.history), known);
      // A message sent on a socket that died may or may not have been handled. Re-send it (the
      // gateway replays its replies for a known client_message_id), then ask for the session
      // again: frames are handled in order, so that session is the settled transcript.
      const resync = this.outbox.some((item) => item.maybeDelivered && !item.held);
      this.flush();
      if (resync) {
        this.resyncing = true;
        this.conn.sendHello();
      }
      if (!this.outbox.some((item) => item.maybeDelivered)) this.knownAtDrop = null;
    }

    onAck(frame) {
      if (typeof frame.owner === "string") this.owner = frame.owner;
      const item = this.take(frame.client_message_id);
      if (!item) return;
      item.node.hidden = false;
      item.node.classList.remove("careline-msg--pending");
      this.view.setNote(item.node, "");
      this.shown.push({ key: itemKey({ role: "user", text: item.display, buttons: [] }), role: "user", node: item.node });
    }

    /**
     * A reply to the patient's message, or one pushed by staff at any time: either way it is
     * shown where the server put it, before any message of ours still on its way, and the
     * outbox (acks, re-sends) is not touched.
     */
    onMessage(frame) {
      if (this.resyncing || typeof frame.text !== "string") return; // the coming session has it
      const role = ROLES.includes(frame.role) ? frame.role : "bot";
      const item = { role, text: frame.text, buttons: role === "user" ? [] : cleanButtons(frame.buttons) };
      if (role === "staff") {
        if (typeof frame.sender === "string" && frame.sender) item.sender = frame.sender;
        this.view.setStaffTyping(null);
      }
      this.appendConfirmed(item);
    }

    /**
     * A person joined or left. Joining comes with the server's own notice ("Sam from the clinic
     * team has joined…", a system message kept in the transcript), so it is not said twice;
     * leaving (released back to the queue) has none, so it is said here.
     */
    onAgent(frame) {
      if (frame.state === "joined") {
        this.owner = "staff";
      } else if (frame.state === "left") {
        this.view.setStaffTyping(null);
        const who = typeof frame.name === "string" && frame.name ? frame.name : "The staff member";
        this.addLocal(this.view.messageNode("system", `${who} has left. Someone else from the team will reply here.`, []));
      }
    }

    onError(frame) {
      const item = this.outbox.find((i) => i.id === frame.client_message_id);
      if (!item) {
        if (frame.error) console.warn("CareLine chat:", frame.error, frame.detail || "");
        return;
      }
      if (frame.error === "duplicate_in_progress") {
        // The gateway is still answering this message from an earlier connection: ask again later.
        this.hold(item);
      } else if (frame.error === "no_session") {
        item.sent = false;
        this.conn.sendHello();
      } else {
        this.fail(item, frame.detail || "");
        if (item.typed) this.view.restoreDraft(item.text); // to edit and send again
      }
    }

    onDown() {
      for (const item of this.outbox) {
        if (item.sent) {
          item.sent = false;
          item.maybeDelivered = true;
          item.drops += 1;
        }
      }
      if (this.knownAtDrop === null && this.outbox.some((item) => item.maybeDelivered)) {
        this.knownAtDrop = this.serverEntryCount();
      }
      this.resyncing = false;
      this.refresh();
    }

    hold(item) {
      item.sent = false;
      item.maybeDelivered = true;
      item.held = true;
      item.holds += 1;
      setTimeout(() => {
        item.held = false;
        if (!this.outbox.includes(item) || !this.conn.ready) return; // a reconnect re-sends it
        this.flush();
        this.resyncing = true;
        this.conn.sendHello();
        this.refresh();
      }, Math.min(BACKOFF_MAX_MS, 1000 * 2 ** (item.holds - 1)));
    }

    fail(item, detail) {
      this.take(item.id);
      item.node.hidden = false;
      item.node.classList.remove("careline-msg--pending");
      item.node.classList.add("careline-msg--failed");
      this.view.setNote(item.node, "Not sent.");
      this.shown.push({ key: `local\u0000${item.id}`, role: "local", node: item.node });
      const reason = detail ? ` (${detail.replace(/\.$/, "")})` : "";
      this.addLocal(this.view.errorNode(`Sorry, we couldn't send that message${reason}. Please try again.`));
    }

    take(id) {
      const index = this.outbox.findIndex((i) => i.id === id);
      return index === -1 ? null : this.outbox.splice(index, 1)[0];
    }

    serverEntryCount() {
      return this.shown.filter((s) => s.role !== "local").length;
    }

    firstPendingNode() {
      return this.outbox.length ? this.outbox[0].node : null;
    }

    appendConfirmed(item) {
      const node = this.view.messageNode(item.role, item.text, item.buttons, item.sender);
      this.view.insert(node, this.firstPendingNode());
      this.shown.push({ key: itemKey(item), role: item.role, node, hasButtons: item.buttons.length > 0 });
    }

    addLocal(node) {
      this.view.insert(node, this.firstPendingNode());
      this.shown.push({ key: `local\u0000${newMessageId()}`, role: "local", node });
    }

    /** Replace what is shown with the server's transcript, touching only what differs. */
    renderHistory(history) {
      const items = displayItems(history);
      let same = 0;
      while (same < items.length && same < this.shown.length && this.shown[same].key === itemKey(items[same])) same++;
      for (const gone of this.shown.splice(same)) gone.node.remove();
      for (const item of items.slice(same)) this.appendConfirmed(item);
      this.view.scrollToEnd();
      return items;
    }

    /**
     * A re-sent message that the new transcript already holds (past the `known` entries we had
     * before) is shown there: hide our local copy until its ack, so it does not appear twice.
     */
    hideDelivered(items, known) {
      let from = known;
      for (const item of this.outbox) {
        if (!item.maybeDelivered) continue;
        const key = itemKey({ role: "user", text: item.display, buttons: [] });
        const at = items.findIndex((it, i) => i >= from && itemKey(it) === key);
        item.node.hidden = at !== -1;
        if (at !== -1) from = at + 1;
      }
    }

    /** Typing indicator, and quick replies live only on the newest bot turn. */
    refresh() {
      const waiting = this.conn.ready && (this.resyncing || this.outbox.some((i) => i.sent || i.held));
      this.view.setWaiting(waiting);
      let lastUser = -1;
      this.shown.forEach((s, i) => {
        if (s.role === "user") lastUser = i;
      });
      const idle = this.outbox.length === 0;
      this.shown.forEach((s, i) => {
        if (s.hasButtons) this.view.setQuickRepliesEnabled(s.node, idle && i > lastUser);
      });
    }
  }

  // --- boot ------------------------------------------------------------------------------

  function boot() {
    const container = document.getElementById("careline-chat");
    const scriptMode = ownScript && ownScript.dataset ? ownScript.dataset.mode : undefined;
    const mode = scriptMode || (container && container.dataset.mode) || (container ? "inline" : "floating");
    const floating = mode !== "inline";
    let host = container;
    if (!host || floating) {
      host = document.createElement("div");
      host.id = floating ? "careline-widget" : "careline-chat";
      document.body.append(host);
    }
    const chat = new Chat(host, floating, socketUrl(ownScript));
    // Floating: connect when the patient opens the panel, not on every page view of the site.
    if (!floating) chat.start();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot, { once: true });
  else boot();
})();
