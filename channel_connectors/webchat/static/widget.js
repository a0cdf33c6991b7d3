/*!
 * hotline web chat widget — 12309 procuratorate online service.
 *
 * Embed with one tag:
 *   <script src="https://HOST/widget.js" data-lang="zh" data-open="false" async></script>
 * data-unit="<org unit id>" routes the site's conversations to that unit's queues.
 *
 * Vanilla JS, no dependencies, no build step. Everything renders inside an
 * open Shadow DOM so host-page CSS cannot interfere. All server- and
 * user-supplied text is inserted with textContent / text nodes only.
 */
(function () {
  "use strict";

  if (window.HotlineChat && window.HotlineChat.__hotline) return; // loaded twice

  // ---------------------------------------------------------------------
  // Locate our own <script> element (must happen synchronously).
  // ---------------------------------------------------------------------
  var script = document.currentScript;
  if (!script || !/widget\.js(\?|#|$)/.test(script.src || "")) {
    script = null;
    var all = document.getElementsByTagName("script");
    for (var i = all.length - 1; i >= 0; i--) {
      var src = all[i].getAttribute("src") || "";
      if (/widget\.js(\?.*|#.*)?$/.test(src)) { script = all[i]; break; }
    }
  }

  var serverUrl;
  try {
    serverUrl = new URL(script && script.src ? script.src : "/widget.js", location.href);
  } catch (e) {
    serverUrl = new URL(location.href);
  }
  var SERVER_ORIGIN = serverUrl.origin;
  var WS_URL = (serverUrl.protocol === "https:" ? "wss:" : "ws:") + "//" + serverUrl.host + "/ws/chat";
  // How long this address must wait: a browser cannot read a refused upgrade's 429.
  var LIMIT_URL = SERVER_ORIGIN + "/ws/chat/limit";

  var MAX_LEN = 2000;
  var COUNTER_FROM = 1800;
  var BACKOFF_MIN = 500;
  var BACKOFF_MAX = 10000;
  var HANDSHAKE_TIMEOUT = 15000;
  var HOLD_MAX = 3600;        // seconds: the longest server-requested wait we honour
  var PROBE_TIMEOUT = 5000;

  function attr(name) { return script ? script.getAttribute(name) : null; }

  // ---------------------------------------------------------------------
  // Storage (namespaced by server origin when embedded cross-origin;
  // plain "hotline.resume" / "hotline.outbox" on same-origin pages).
  // ---------------------------------------------------------------------
  var SAME_ORIGIN = SERVER_ORIGIN === location.origin;
  function key(name) { return SAME_ORIGIN ? "hotline." + name : "hotline." + name + "@" + SERVER_ORIGIN; }
  var KEY_RESUME = key("resume");
  var KEY_OUTBOX = key("outbox");
  var KEY_LANG = key("lang");
  var KEY_HOLD = key("hold");   // epoch ms before which we must not reconnect

  var memStore = {};
  function storeGet(k) {
    try { return window.localStorage.getItem(k); } catch (e) { return Object.prototype.hasOwnProperty.call(memStore, k) ? memStore[k] : null; }
  }
  function storeSet(k, v) {
    try { window.localStorage.setItem(k, v); } catch (e) { memStore[k] = v; }
  }
  function storeDel(k) {
    try { window.localStorage.removeItem(k); } catch (e) { delete memStore[k]; }
  }

  // A server-requested wait outlives a reload, so reloading cannot hammer the limit.
  function loadHold() {
    var v = Number(storeGet(KEY_HOLD));
    if (!isFinite(v) || v <= Date.now() || v > Date.now() + HOLD_MAX * 1000) { storeDel(KEY_HOLD); return 0; }
    return v;
  }

  function loadOutbox() {
    try {
      var v = JSON.parse(storeGet(KEY_OUTBOX) || "[]");
      if (!Array.isArray(v)) return [];
      return v.filter(function (m) { return m && typeof m.id === "string" && typeof m.text === "string"; });
    } catch (e) { return []; }
  }
  function saveOutbox() {
    if (outbox.length) storeSet(KEY_OUTBOX, JSON.stringify(outbox));
    else storeDel(KEY_OUTBOX);
  }
  function outboxIndex(id) {
    for (var i = 0; i < outbox.length; i++) if (outbox[i].id === id) return i;
    return -1;
  }
  function outboxRemove(id) {
    var i = outboxIndex(id);
    if (i >= 0) { outbox.splice(i, 1); saveOutbox(); return true; }
    return false;
  }

  // ---------------------------------------------------------------------
  // Ids
  // ---------------------------------------------------------------------
  function uuid() {
    var c = window.crypto || window.msCrypto;
    if (c && typeof c.randomUUID === "function") {
      try { return c.randomUUID(); } catch (e) { /* insecure context */ }
    }
    var b = new Uint8Array(16);
    if (c && typeof c.getRandomValues === "function") c.getRandomValues(b);
    else for (var i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = [];
    for (var j = 0; j < 16; j++) h.push((b[j] + 0x100).toString(16).slice(1));
    return h.slice(0, 4).join("") + "-" + h.slice(4, 6).join("") + "-" + h.slice(6, 8).join("") + "-" +
      h.slice(8, 10).join("") + "-" + h.slice(10, 16).join("");
  }

  // ---------------------------------------------------------------------
  // i18n
  // ---------------------------------------------------------------------
  var STRINGS = {
    zh: {
      title: "12309 检察服务在线咨询",
      privacy: "请勿在描述中填写您的身份信息，系统会单独询问并加密保存。",
      placeholder: "请输入您要咨询的问题…",
      send: "发送",
      close: "关闭",
      connecting: "正在连接…",
      reconnecting: "连接已断开，正在重新连接…",
      queued: "正在为您转接人工服务…",
      typing: "正在回复…",
      errorPrefix: "错误：",
      launcher: "打开在线咨询",
      launcherClose: "收起在线咨询",
      langToggle: "EN",
      langToggleLabel: "Switch to English",
      agent: "客服",
      queueLine: "您当前排在第 {n} 位，预计等待约 {m} 分钟",
      queueLineNoEta: "您当前排在第 {n} 位",
      agentJoined: "人工客服已接入",
      pending: "发送中",
      sent: "已送达",
      failed: "发送失败",
      inputLabel: "输入消息",
      messagesLabel: "对话消息",
      newMessages: "条新消息",
      waiting: "服务繁忙，稍后自动重新连接",
      busy: "当前在线咨询人数较多，请稍候。将在 {time} 后自动重新连接。",
      busyKept: "您输入的消息已保留，连接成功后会自动发送。",
      busyNow: "正在重新连接…",
      seconds: "{s} 秒",
      minutes: "{m} 分 {s} 秒"
    },
    en: {
      title: "12309 Procuratorate Online Service",
      privacy: "Please don't put your identity in the description; we ask for it separately and keep it encrypted.",
      placeholder: "Type your question…",
      send: "Send",
      close: "Close",
      connecting: "Connecting…",
      reconnecting: "Connection lost. Reconnecting…",
      queued: "Connecting you to a person…",
      typing: "Replying…",
      errorPrefix: "Error: ",
      launcher: "Open online service chat",
      launcherClose: "Minimise chat",
      langToggle: "中文",
      langToggleLabel: "切换到中文",
      agent: "Agent",
      queueLine: "You are number {n} in the queue, about {m} min",
      queueLineNoEta: "You are number {n} in the queue",
      agentJoined: "An agent has joined",
      pending: "Sending",
      sent: "Delivered",
      failed: "Not delivered",
      inputLabel: "Message",
      messagesLabel: "Conversation",
      newMessages: "new messages",
      waiting: "Service busy. Will reconnect shortly",
      busy: "Our online service is busy right now. Please wait: we will reconnect in {time}.",
      busyKept: "Messages you type are kept and sent once you are connected.",
      busyNow: "Reconnecting now…",
      seconds: "{s} s",
      minutes: "{m} min {s} s"
    }
  };

  function normLang(v) {
    if (!v) return null;
    v = String(v).toLowerCase();
    if (v.indexOf("zh") === 0) return "zh";
    if (v.indexOf("en") === 0) return "en";
    return null;
  }
  function navLang() {
    var n = (navigator.languages && navigator.languages[0]) || navigator.language || "";
    return String(n).toLowerCase().indexOf("zh") === 0 ? "zh" : "en";
  }

  // ---------------------------------------------------------------------
  // State
  // ---------------------------------------------------------------------
  var lang = normLang(storeGet(KEY_LANG)) || normLang(attr("data-lang")) || navLang();
  var wantOpen = String(attr("data-open") || "").toLowerCase() === "true";
  var outbox = loadOutbox();
  var ws = null;
  var ready = false;          // welcome received on current socket
  var everReady = false;
  var attempt = 0;
  var reconnectTimer = null;
  var handshakeTimer = null;
  var conversationId = null;
  var helloLang = null;       // language announced in the last hello
  var convState = null;
  var isOpen = false;
  var unread = 0;
  var mounted = false;
  var started = false;        // connection lifecycle started
  var bubbles = {};           // client id -> citizen bubble element
  var queueInfo = null;       // last {position, eta_seconds} while queued
  var holdUntil = loadHold(); // server asked us not to reconnect before this (epoch ms)
  var probing = false;        // asking the server how long to wait
  var busyTimer = null;       // countdown ticker while holding
  var busyShown = -1;         // seconds last shown in the countdown

  var host, root, els = {};

  function t(k) { return (STRINGS[lang] && STRINGS[lang][k]) || STRINGS.en[k] || k; }
  function tf(k, args) {
    return t(k).replace(/\{(\w+)\}/g, function (m, name) { return args[name] == null ? "" : String(args[name]); });
  }

  // ---------------------------------------------------------------------
  // DOM helpers (no innerHTML anywhere)
  // ---------------------------------------------------------------------
  function h(tag, props, children) {
    var el = document.createElement(tag);
    if (props) {
      for (var k in props) {
        if (!Object.prototype.hasOwnProperty.call(props, k)) continue;
        var v = props[k];
        if (v == null || v === false) continue;
        if (k === "className") el.className = v;
        else if (k === "text") el.textContent = v;
        else if (k.indexOf("on") === 0 && typeof v === "function") el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? "" : String(v));
      }
    }
    if (children) for (var i = 0; i < children.length; i++) if (children[i]) el.appendChild(children[i]);
    return el;
  }
  var SVGNS = "http://www.w3.org/2000/svg";
  function svg(paths, size) {
    var s = document.createElementNS(SVGNS, "svg");
    s.setAttribute("viewBox", "0 0 24 24");
    s.setAttribute("width", size || 24);
    s.setAttribute("height", size || 24);
    s.setAttribute("aria-hidden", "true");
    s.setAttribute("focusable", "false");
    for (var i = 0; i < paths.length; i++) {
      var p = document.createElementNS(SVGNS, "path");
      p.setAttribute("d", paths[i]);
      p.setAttribute("fill", "currentColor");
      s.appendChild(p);
    }
    return s;
  }
  var ICON_CHAT = ["M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8.4L4 21.5V18a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2zm3 6.25a1.25 1.25 0 1 0 0 2.5 1.25 1.25 0 0 0 0-2.5zm5 0a1.25 1.25 0 1 0 0 2.5 1.25 1.25 0 0 0 0-2.5zm5 0a1.25 1.25 0 1 0 0 2.5 1.25 1.25 0 0 0 0-2.5z"];
  var ICON_CLOSE = ["M6.4 5 5 6.4 10.6 12 5 17.6 6.4 19 12 13.4 17.6 19 19 17.6 13.4 12 19 6.4 17.6 5 12 10.6z"];
  var ICON_DOWN = ["M7.4 8.6 12 13.2l4.6-4.6L18 10l-6 6-6-6z"];
  var ICON_SEND = ["M3.4 20.4 21 12 3.4 3.6 3.4 10l12.6 2-12.6 2z"];

  // Append text to el, turning bare http(s) URLs into safe links.
  var URL_RE = /\bhttps?:\/\/[^\s<>"'（）【】，。；！？]+/g;
  function appendRich(el, text, linkify) {
    text = text == null ? "" : String(text);
    if (!linkify) { el.appendChild(document.createTextNode(text)); return; }
    var last = 0, m;
    URL_RE.lastIndex = 0;
    while ((m = URL_RE.exec(text))) {
      var url = m[0].replace(/[.,;:!?)\]]+$/, "");
      if (!url) continue;
      if (m.index > last) el.appendChild(document.createTextNode(text.slice(last, m.index)));
      var a = document.createElement("a");
      a.href = url;
      a.target = "_blank";
      a.rel = "noopener noreferrer nofollow";
      a.textContent = url;
      el.appendChild(a);
      last = m.index + url.length;
      URL_RE.lastIndex = last;
    }
    if (last < text.length) el.appendChild(document.createTextNode(text.slice(last)));
  }

  // ---------------------------------------------------------------------
  // Styles
  // ---------------------------------------------------------------------
  var CSS = [
    ":host{all:initial;}",
    "*,*::before,*::after{box-sizing:border-box;}",
    "[hidden]{display:none !important;}",
    ".wrap{font-family:-apple-system,BlinkMacSystemFont,\"Segoe UI\",\"PingFang SC\",\"Hiragino Sans GB\",\"Microsoft YaHei\",\"Noto Sans CJK SC\",\"Source Han Sans SC\",Roboto,\"Helvetica Neue\",Arial,sans-serif;font-size:14px;line-height:1.5;color:#1f2933;-webkit-font-smoothing:antialiased;text-align:left;}",
    "button{font:inherit;color:inherit;}",
    ".launcher{position:fixed;right:20px;bottom:20px;z-index:2147483000;width:60px;height:60px;border-radius:50%;border:0;cursor:pointer;background:#1a4f8b;color:#fff;display:flex;align-items:center;justify-content:center;box-shadow:0 6px 20px rgba(16,42,80,.35);transition:transform .15s ease,background .15s ease;padding:0;}",
    ".launcher:hover{background:#15406f;transform:translateY(-1px);}",
    ".launcher:focus-visible{outline:3px solid #f0b429;outline-offset:3px;}",
    ".badge{position:absolute;top:-2px;right:-2px;min-width:20px;height:20px;padding:0 6px;border-radius:10px;background:#c62828;color:#fff;font-size:12px;line-height:20px;text-align:center;font-weight:600;border:2px solid #fff;}",
    ".panel{position:fixed;right:20px;bottom:92px;z-index:2147483001;width:360px;height:560px;max-height:calc(100vh - 112px);max-width:calc(100vw - 40px);display:flex;flex-direction:column;background:#fff;border-radius:14px;overflow:hidden;box-shadow:0 12px 40px rgba(16,42,80,.28),0 2px 8px rgba(0,0,0,.08);border:1px solid rgba(16,42,80,.08);}",
    ".header{background:linear-gradient(135deg,#1a4f8b,#153e6e);color:#fff;padding:12px 10px 12px 16px;display:flex;align-items:center;gap:8px;flex:none;}",
    ".emblem{flex:none;width:30px;height:30px;border-radius:50%;background:rgba(255,255,255,.16);display:flex;align-items:center;justify-content:center;}",
    ".title{flex:1;min-width:0;margin:0;font-size:15px;font-weight:600;line-height:1.3;}",
    ".hbtn{flex:none;border:1px solid rgba(255,255,255,.45);background:transparent;color:#fff;border-radius:6px;cursor:pointer;height:28px;padding:0 8px;font-size:12px;display:flex;align-items:center;justify-content:center;}",
    ".hbtn:hover{background:rgba(255,255,255,.14);}",
    ".hbtn:focus-visible{outline:2px solid #f0b429;outline-offset:1px;}",
    ".hbtn.icon{border-color:transparent;width:30px;padding:0;}",
    ".privacy{flex:none;margin:0;padding:8px 14px;background:#fff8e1;color:#6b4e00;font-size:12px;line-height:1.45;border-bottom:1px solid #f3e3b0;}",
    ".status{flex:none;padding:5px 14px;font-size:12px;color:#7a4b00;background:#fff1d6;display:flex;align-items:center;gap:6px;}",
    ".status::before{content:\"\";width:8px;height:8px;border-radius:50%;background:#e09f1f;flex:none;animation:hlpulse 1.2s ease-in-out infinite;}",
    ".status[data-state=waiting]{color:#3d4b5c;background:#eef1f5;}",
    ".status[data-state=waiting]::before{animation:none;background:#8795a6;}",
    ".busy{align-self:center;max-width:92%;font-size:12.5px;color:#6b4e00;background:#fff8e1;border:1px solid #f3e3b0;border-radius:8px;padding:6px 12px;text-align:center;white-space:pre-wrap;overflow-wrap:anywhere;}",
    ".busy .count{font-weight:600;font-variant-numeric:tabular-nums;}",
    ".busy .kept{display:block;margin-top:2px;font-size:12px;opacity:.85;}",
    "@keyframes hlpulse{0%,100%{opacity:1}50%{opacity:.3}}",
    ".typing{flex:none;padding:2px 14px 6px;font-size:12px;color:#6b7280;}",
    ".typing[hidden]{display:none;}",
    ".banner{flex:none;padding:7px 14px;font-size:12.5px;color:#0f4c81;background:#e6f0fb;border-bottom:1px solid #cfe0f3;}",
    ".queue{flex:none;padding:5px 14px;font-size:12.5px;color:#0f4c81;background:#f2f7fd;border-bottom:1px solid #cfe0f3;}",
    ".joined{flex:none;padding:6px 14px;font-size:12.5px;color:#15351f;background:#e8f5ec;border-bottom:1px solid #c7e6d1;}",
    ".messages{flex:1;min-height:0;overflow-y:auto;overscroll-behavior:contain;padding:14px 12px 8px;background:#f5f7fa;display:flex;flex-direction:column;gap:8px;scroll-behavior:smooth;}",
    ".row{display:flex;flex-direction:column;align-items:flex-start;max-width:100%;}",
    ".row.from-citizen{align-items:flex-end;}",
    ".row.from-system{align-items:center;}",
    ".sender{font-size:11px;color:#5a6b7d;margin:0 0 2px 4px;}",
    ".row.from-agent .sender{color:#1e7b45;font-weight:600;}",
    ".msg{max-width:85%;padding:8px 12px;border-radius:14px;white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;}",
    ".msg a{color:inherit;text-decoration:underline;}",
    ".msg[data-from=bot]{background:#fff;color:#1f2933;border:1px solid #e1e7ef;border-bottom-left-radius:4px;}",
    ".msg[data-from=agent]{background:#e8f5ec;color:#15351f;border:1px solid #c7e6d1;border-left:3px solid #1e7b45;border-bottom-left-radius:4px;}",
    ".msg[data-from=citizen]{background:#1a4f8b;color:#fff;border-bottom-right-radius:4px;transition:opacity .2s;}",
    ".msg[data-from=citizen][data-state=pending]{opacity:.55;}",
    ".msg[data-from=citizen][data-state=sent]::after{content:\"\\00a0\\2713\";font-size:11px;opacity:.8;}",
    ".msg[data-from=citizen][data-state=failed]{background:#8a1c1c;}",
    ".msg[data-from=citizen][data-state=failed]::after{content:\"\\00a0!\";font-weight:700;}",
    ".msg[data-from=system]{max-width:92%;background:transparent;color:#5a6b7d;font-size:12.5px;text-align:center;padding:2px 8px;}",
    ".chips{display:flex;flex-wrap:wrap;gap:6px;margin-top:6px;max-width:92%;}",
    ".chip{border:1px solid #1a4f8b;background:#fff;color:#1a4f8b;border-radius:16px;padding:5px 12px;font-size:13px;line-height:1.3;cursor:pointer;text-align:left;white-space:normal;overflow-wrap:anywhere;}",
    ".chip:hover:not(:disabled){background:#1a4f8b;color:#fff;}",
    ".chip:focus-visible{outline:2px solid #f0b429;outline-offset:1px;}",
    ".chip:disabled{cursor:default;opacity:.45;border-color:#9aa8b8;color:#5a6b7d;}",
    ".chip.chosen:disabled{opacity:.85;background:#e6f0fb;border-color:#1a4f8b;color:#1a4f8b;}",
    ".notice{align-self:center;max-width:92%;font-size:12px;color:#8a1c1c;background:#fdecec;border-radius:8px;padding:4px 10px;white-space:pre-wrap;overflow-wrap:anywhere;}",
    ".composer{flex:none;border-top:1px solid #e1e7ef;background:#fff;padding:8px 10px;display:flex;align-items:flex-end;gap:8px;}",
    ".field{flex:1;min-width:0;position:relative;display:flex;flex-direction:column;}",
    "textarea{font:inherit;color:#1f2933;width:100%;resize:none;border:1px solid #cbd5e1;border-radius:10px;padding:8px 10px;min-height:40px;max-height:120px;line-height:1.4;background:#fff;outline:none;display:block;margin:0;}",
    "textarea:focus{border-color:#1a4f8b;box-shadow:0 0 0 3px rgba(26,79,139,.15);}",
    "textarea::placeholder{color:#8795a6;}",
    ".counter{font-size:11px;color:#5a6b7d;text-align:right;padding:2px 2px 0;}",
    ".counter.max{color:#c62828;font-weight:600;}",
    ".send{flex:none;height:40px;min-width:64px;border:0;border-radius:10px;background:#1a4f8b;color:#fff;cursor:pointer;padding:0 12px;display:flex;align-items:center;justify-content:center;gap:4px;font-weight:600;}",
    ".send:hover:not(:disabled){background:#15406f;}",
    ".send:disabled{background:#a9b8c9;cursor:default;}",
    ".send:focus-visible{outline:3px solid #f0b429;outline-offset:2px;}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap;}",
    "@media (max-width:479px){",
    "  .panel{top:0;left:0;right:0;bottom:0;width:100%;height:100%;max-width:none;max-height:none;border-radius:0;border:0;}",
    "  .wrap.open .launcher{display:none;}",
    "  .launcher{right:16px;bottom:16px;}",
    "  textarea{font-size:16px;}",
    "}",
    "@media (prefers-reduced-motion:reduce){.messages{scroll-behavior:auto;}.status::before{animation:none;}.launcher{transition:none;}}"
  ].join("\n");

  // ---------------------------------------------------------------------
  // Build UI
  // ---------------------------------------------------------------------
  function mount() {
    if (mounted) return;
    mounted = true;

    host = document.createElement("div");
    host.id = "hotline-chat";
    host.setAttribute("data-hotline", "");
    // Inline !important beats any host-page rule aimed at our container
    // (e.g. a transform would otherwise trap our position:fixed children).
    var hs = { all: "initial", display: "block", position: "static", transform: "none", filter: "none",
      contain: "none", width: "0", height: "0", overflow: "visible", visibility: "visible", opacity: "1" };
    for (var p in hs) if (Object.prototype.hasOwnProperty.call(hs, p)) host.style.setProperty(p, hs[p], "important");
    root = host.attachShadow({ mode: "open" });

    var style = document.createElement("style");
    style.textContent = CSS;
    root.appendChild(style);

    els.badge = h("span", { className: "badge", "aria-hidden": "true", hidden: true });
    els.launcher = h("button", {
      type: "button", className: "launcher", "data-testid": "hotline-launcher",
      "aria-expanded": "false", "aria-controls": "hotline-panel",
      onclick: function () { if (isOpen) api.close(); else api.open(); }
    }, [svg(ICON_CHAT, 28), els.badge]);

    els.title = h("h2", { className: "title", id: "hotline-title" });
    els.lang = h("button", {
      type: "button", className: "hbtn", "data-testid": "hotline-lang",
      onclick: function () { api.setLang(lang === "zh" ? "en" : "zh"); }
    });
    els.minimise = h("button", {
      type: "button", className: "hbtn icon", "data-testid": "hotline-close",
      onclick: function () { api.close(); els.launcher.focus(); }
    }, [svg(isSmallScreen() ? ICON_CLOSE : ICON_DOWN, 20)]);

    var header = h("div", { className: "header" }, [
      h("div", { className: "emblem", "aria-hidden": "true" }, [svg(ICON_CHAT, 18)]),
      els.title, els.lang, els.minimise
    ]);

    els.privacy = h("p", { className: "privacy", "data-testid": "hotline-privacy" });
    els.status = h("div", { className: "status", "data-testid": "hotline-status", role: "status", "data-state": "idle", hidden: true });
    els.banner = h("div", { className: "banner", "data-testid": "hotline-banner", role: "status", hidden: true });
    els.queue = h("div", { className: "queue", "data-testid": "hotline-queue", role: "status", hidden: true });
    els.joined = h("div", { className: "joined", "data-testid": "hotline-agent-joined", role: "status", hidden: true });
    els.typing = h("div", { className: "typing", "data-testid": "hotline-typing", hidden: true });
    els.messages = h("div", {
      className: "messages", "data-testid": "hotline-messages",
      role: "log", "aria-live": "polite", "aria-relevant": "additions", tabindex: "0"
    });

    els.input = h("textarea", {
      "data-testid": "hotline-input", rows: "1", maxlength: String(MAX_LEN),
      autocomplete: "off", spellcheck: "true", enterkeyhint: "send"
    });
    els.counter = h("div", { className: "counter", "data-testid": "hotline-counter", "aria-live": "polite", hidden: true });
    els.sendLabel = h("span");
    els.send = h("button", {
      type: "button", className: "send", "data-testid": "hotline-send", disabled: true,
      onclick: submit
    }, [els.sendLabel]);

    els.input.addEventListener("input", onInput);
    els.input.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        submit();
      }
    });

    var composer = h("div", { className: "composer" }, [
      h("div", { className: "field" }, [els.input, els.counter]),
      els.send
    ]);

    els.panel = h("div", {
      className: "panel", id: "hotline-panel", "data-testid": "hotline-panel",
      role: "dialog", "aria-labelledby": "hotline-title", hidden: true
    }, [header, els.privacy, els.status, els.banner, els.queue, els.joined, els.messages, els.typing, composer]);
    els.panel.addEventListener("keydown", function (e) {
      if (e.key === "Escape" || e.key === "Esc") { e.stopPropagation(); api.close(); els.launcher.focus(); }
    });

    els.wrap = h("div", { className: "wrap" }, [els.panel, els.launcher]);
    root.appendChild(els.wrap);
    document.body.appendChild(host);

    applyLang();
    // Outgoing messages still waiting from a previous page load.
    renderPendingOutbox();
    setStatus(null);
    if (holding()) showBusy(); // a wait the server asked for before this page load

    if (wantOpen) api.open();
    // Continue an existing conversation (or deliver a pending outbox) right away,
    // so agent replies arrive even while the panel is collapsed.
    if (!started && (storeGet(KEY_RESUME) || outbox.length)) start();
  }

  function isSmallScreen() {
    return window.matchMedia ? window.matchMedia("(max-width: 479px)").matches : false;
  }

  function applyLang() {
    if (!mounted) return;
    els.panel.setAttribute("lang", lang === "zh" ? "zh-CN" : "en");
    els.title.textContent = t("title");
    els.privacy.textContent = t("privacy");
    els.lang.textContent = t("langToggle");
    els.lang.setAttribute("aria-label", t("langToggleLabel"));
    els.lang.setAttribute("lang", lang === "zh" ? "en" : "zh-CN");
    els.minimise.setAttribute("aria-label", t("close"));
    els.minimise.setAttribute("title", t("close"));
    els.input.setAttribute("placeholder", t("placeholder"));
    els.input.setAttribute("aria-label", t("inputLabel"));
    els.sendLabel.textContent = t("send");
    els.messages.setAttribute("aria-label", t("messagesLabel"));
    els.launcher.setAttribute("aria-label", isOpen ? t("launcherClose") : t("launcher"));
    els.launcher.setAttribute("title", isOpen ? t("launcherClose") : t("launcher"));
    els.banner.textContent = t("queued");
    els.joined.textContent = t("agentJoined");
    renderQueue();
    setStatus(els.status.getAttribute("data-state"));
    updateBadge();
    // Localised fragments inside already-rendered messages.
    var nodes = els.messages.querySelectorAll("[data-i18n]");
    for (var i = 0; i < nodes.length; i++) nodes[i].textContent = t(nodes[i].getAttribute("data-i18n"));
    var cit = els.messages.querySelectorAll(".msg[data-from=citizen]");
    for (var j = 0; j < cit.length; j++) setCitizenTitle(cit[j]);
    if (els.busy) renderBusy();
  }

  // state: "connecting" | "reconnecting" | "waiting" (server asked us to wait) | "online" | null (idle)
  function setStatus(state) {
    if (!mounted) return;
    state = state || "idle";
    els.status.setAttribute("data-state", state);
    if (state === "connecting" || state === "reconnecting" || state === "waiting") {
      els.status.textContent = t(state);
      els.status.hidden = false;
    } else {
      els.status.textContent = "";
      els.status.hidden = true;
    }
  }

  function applyConvState(state) {
    if (typeof state !== "string") return;
    convState = state;
    if (state !== "queued") queueInfo = null; // a new queue frame comes if queued again
    if (mounted) {
      els.banner.hidden = state !== "queued";
      els.joined.hidden = state !== "assigned";
      els.panel.setAttribute("data-conversation-state", state);
      renderQueue();
    }
  }

  // "You are number n in the queue": only while queued and once the hub sent a position.
  function renderQueue() {
    if (!mounted) return;
    var q = queueInfo;
    if (convState !== "queued" || !q) { els.queue.hidden = true; return; }
    var eta = Number(q.eta_seconds);
    els.queue.textContent = eta > 0
      ? tf("queueLine", { n: q.position, m: Math.max(1, Math.ceil(eta / 60)) })
      : tf("queueLineNoEta", { n: q.position });
    els.queue.hidden = false;
  }

  function updateBadge() {
    if (!mounted) return;
    if (unread > 0 && !isOpen) {
      els.badge.textContent = unread > 99 ? "99+" : String(unread);
      els.badge.hidden = false;
      els.launcher.setAttribute("aria-label", t("launcher") + " (" + unread + " " + t("newMessages") + ")");
    } else {
      els.badge.hidden = true;
    }
  }

  // ---------------------------------------------------------------------
  // Rendering messages
  // ---------------------------------------------------------------------
  function scrollBottom() {
    if (!mounted) return;
    var m = els.messages;
    // rAF so layout (incl. chips) is settled first.
    m.scrollTop = m.scrollHeight;
    (window.requestAnimationFrame || setTimeout)(function () { m.scrollTop = m.scrollHeight; });
  }

  function clearMessages() {
    bubbles = {};
    while (els.messages.firstChild) els.messages.removeChild(els.messages.firstChild);
  }

  function setCitizenTitle(el) {
    var st = el.getAttribute("data-state");
    el.setAttribute("title", t(st === "sent" ? "sent" : st === "failed" ? "failed" : "pending"));
  }

  function fmtTime(at) {
    if (!at) return null;
    var d = new Date(at);
    if (isNaN(d.getTime())) return null;
    try { return d.toLocaleString(lang === "zh" ? "zh-CN" : "en-GB"); } catch (e) { return d.toISOString(); }
  }

  /**
   * opts: {id, state ("pending"|"sent"), at, buttons, chipsDisabled}
   * Returns the bubble element.
   */
  function renderMessage(from, text, opts) {
    opts = opts || {};
    if (["citizen", "bot", "agent", "system"].indexOf(from) < 0) from = "bot";
    var row = h("div", { className: "row from-" + from });
    if (from === "agent") {
      row.appendChild(h("div", { className: "sender", "data-i18n": "agent", text: t("agent") }));
    }
    var bubble = h("div", { className: "msg", "data-testid": "hotline-msg", "data-from": from });
    appendRich(bubble, text, from !== "citizen");
    if (from === "citizen") {
      bubble.setAttribute("data-state", opts.state === "sent" ? "sent" : "pending");
      if (opts.id) { bubble.setAttribute("data-id", opts.id); bubbles[opts.id] = bubble; }
      setCitizenTitle(bubble);
    } else {
      var ts = fmtTime(opts.at);
      if (ts) bubble.setAttribute("title", ts);
    }
    row.appendChild(bubble);

    var buttons = Array.isArray(opts.buttons) ? opts.buttons : [];
    var valid = buttons.filter(function (b) { return b && (b.title != null || b.payload != null); });
    if (valid.length) {
      var chips = h("div", { className: "chips", "data-testid": "hotline-buttons", role: "group" });
      valid.forEach(function (b) {
        var title = b.title != null ? String(b.title) : String(b.payload);
        var chip = h("button", { type: "button", className: "chip", "data-testid": "hotline-button", text: title });
        if (b.payload != null) chip.setAttribute("data-payload", String(b.payload));
        if (opts.chipsDisabled) chip.disabled = true;
        chip.addEventListener("click", function () {
          if (chip.disabled) return;
          var all = chips.querySelectorAll("button");
          for (var i = 0; i < all.length; i++) all[i].disabled = true;
          chip.className += " chosen";
          sendMessage(title, b.payload != null ? String(b.payload) : undefined);
        });
        chips.appendChild(chip);
      });
      row.appendChild(chips);
    }
    els.messages.appendChild(row);
    return bubble;
  }

  function renderNotice(text) {
    var n = h("div", { className: "notice", "data-testid": "hotline-notice", role: "status" }, [
      h("span", { "data-i18n": "errorPrefix", text: t("errorPrefix") })
    ]);
    n.appendChild(document.createTextNode(text == null ? "" : String(text)));
    els.messages.appendChild(n);
    scrollBottom();
  }

  // -------------------------------------------------------------------
  // "Service busy" notice with a countdown, while the server asked us to wait
  // -------------------------------------------------------------------
  function holding() { return holdUntil > Date.now(); }

  function waitSeconds() { return Math.max(0, Math.ceil((holdUntil - Date.now()) / 1000)); }

  function fmtWait(sec) {
    return sec >= 60 ? tf("minutes", { m: Math.floor(sec / 60), s: sec % 60 }) : tf("seconds", { s: sec });
  }

  // (Re)build the notice's content in the current language. The countdown itself is
  // updated in place by tickBusy (a text change, so the log does not announce it).
  function renderBusy() {
    var n = els.busy;
    while (n.firstChild) n.removeChild(n.firstChild);
    busyShown = waitSeconds();
    els.busyCount = null;
    if (!busyShown) {
      n.appendChild(document.createTextNode(t("busyNow")));
    } else {
      var parts = t("busy").split("{time}");
      n.appendChild(document.createTextNode(parts[0]));
      els.busyCount = h("span", { className: "count", "data-testid": "hotline-busy-countdown", text: fmtWait(busyShown) });
      n.appendChild(els.busyCount);
      n.appendChild(document.createTextNode(parts.slice(1).join("")));
    }
    n.appendChild(h("span", { className: "kept", text: t("busyKept") }));
  }

  function tickBusy() {
    if (!els.busy) return;
    var sec = waitSeconds();
    if (sec === busyShown) return;
    if (!sec || !els.busyCount) { renderBusy(); clearInterval(busyTimer); busyTimer = null; return; }
    busyShown = sec;
    els.busyCount.firstChild.nodeValue = fmtWait(sec);
  }

  function showBusy() {
    if (!mounted) return;
    if (!els.busy || !els.busy.parentNode) {
      els.busy = h("div", { className: "busy", "data-testid": "hotline-busy", "data-code": "too_many_conversations" });
      els.messages.appendChild(els.busy);
    }
    renderBusy();
    clearInterval(busyTimer);
    busyTimer = setInterval(tickBusy, 250);
    scrollBottom();
  }

  function hideBusy() {
    clearInterval(busyTimer);
    busyTimer = null;
    if (els.busy && els.busy.parentNode) els.busy.parentNode.removeChild(els.busy);
    els.busy = null;
    els.busyCount = null;
  }

  function renderPendingOutbox() {
    if (!mounted) return;
    for (var i = 0; i < outbox.length; i++) {
      var m = outbox[i];
      if (bubbles[m.id]) continue;
      renderMessage("citizen", m.text, { id: m.id, state: "pending" });
    }
    scrollBottom();
  }

  function markSent(id) {
    var b = bubbles[id];
    if (b) { b.setAttribute("data-state", "sent"); setCitizenTitle(b); }
  }

  // ---------------------------------------------------------------------
  // Composer
  // ---------------------------------------------------------------------
  function autoGrow() {
    var ta = els.input;
    ta.style.height = "auto";
    ta.style.height = Math.min(ta.scrollHeight + 2, 120) + "px";
  }
  function onInput() {
    var v = els.input.value;
    els.send.disabled = !v.trim();
    var n = v.length;
    if (n >= COUNTER_FROM) {
      els.counter.hidden = false;
      els.counter.textContent = n + " / " + MAX_LEN;
      els.counter.className = "counter" + (n >= MAX_LEN ? " max" : "");
    } else {
      els.counter.hidden = true;
    }
    autoGrow();
  }
  function submit() {
    var v = els.input.value;
    if (!v.trim()) return;
    sendMessage(v);
    els.input.value = "";
    onInput();
    els.input.focus();
  }

  function sendMessage(text, payload) {
    text = String(text == null ? "" : text).replace(/^\s+|\s+$/g, "");
    if (!text) return;
    if (text.length > MAX_LEN) text = text.slice(0, MAX_LEN);
    var item = { id: uuid(), text: text };
    if (payload != null) item.payload = String(payload);
    outbox.push(item);
    saveOutbox();
    if (mounted) {
      renderMessage("citizen", text, { id: item.id, state: "pending" });
      scrollBottom();
    }
    if (ready) transmit(item);
    else start();
  }

  function transmit(item) {
    var f = { type: "message", id: item.id, text: item.text };
    if (item.payload != null) f.payload = item.payload;
    return sendFrame(f);
  }

  // ---------------------------------------------------------------------
  // WebSocket
  // ---------------------------------------------------------------------
  function sendFrame(obj) {
    if (!ws || ws.readyState !== 1) return false;
    try { ws.send(JSON.stringify(obj)); return true; } catch (e) { return false; }
  }

  function start() {
    started = true;
    if (!ws && !reconnectTimer) connect();
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (ws || probing) return;
    // Every path here (timers, "online", visibility, a message typed) honours the wait.
    if (holding()) { scheduleReconnect(); return; }
    setStatus(everReady ? "reconnecting" : (attempt > 0 ? "reconnecting" : "connecting"));
    var sock;
    try {
      sock = new WebSocket(WS_URL);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    ws = sock;
    ready = false;
    var opened = false;
    clearTimeout(handshakeTimer);
    handshakeTimer = setTimeout(function () {
      if (ws === sock && !ready) { try { sock.close(); } catch (e) { /* ignore */ } dropSocket(sock, opened); }
    }, HANDSHAKE_TIMEOUT);

    sock.onopen = function () {
      if (ws !== sock) return;
      opened = true;
      helloLang = lang;
      var hello = { type: "hello", lang: lang };
      var unit = attr("data-unit");
      if (unit) hello.unit = unit;
      var tok = storeGet(KEY_RESUME);
      if (tok) hello.resume = tok;
      sendFrame(hello);
    };
    sock.onmessage = function (ev) {
      if (ws !== sock) return;
      if (typeof ev.data !== "string") return;
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (!msg || typeof msg !== "object") return;
      try { handleFrame(msg); } catch (e) { if (window.console) console.error("[hotline]", e); }
    };
    sock.onerror = function () { /* a close event follows */ };
    sock.onclose = function () { dropSocket(sock, opened); };
  }

  function dropSocket(sock, opened) {
    if (ws !== sock) return;
    ws = null;
    ready = false;
    clearTimeout(handshakeTimer);
    if (!opened && !holding()) {
      // Never opened: the upgrade may have been refused (429) for too many new
      // conversations from this address. Ask how long to wait before trying again.
      probing = true;
      setStatus("reconnecting");
      probeWait(function (wait) {
        probing = false;
        if (wait) holdOff(wait);
        scheduleReconnect();
      });
      return;
    }
    scheduleReconnect();
  }

  // Seconds the server asked us to wait, or 0 if the value is unusable.
  function validWait(v) {
    if (typeof v !== "number" || !isFinite(v) || v <= 0) return 0;
    return Math.min(v, HOLD_MAX);
  }

  // Do not reconnect for `seconds`; tell the citizen why and when we retry.
  function holdOff(seconds) {
    holdUntil = Date.now() + seconds * 1000;
    storeSet(KEY_HOLD, String(holdUntil));
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    showBusy();
    setStatus("waiting");
  }

  function endHold() {
    holdUntil = 0;
    storeDel(KEY_HOLD);
    hideBusy();
  }

  function probeWait(done) {
    var finished = false;
    function finish(v) { if (!finished) { finished = true; clearTimeout(timer); done(v); } }
    var timer = setTimeout(function () { finish(0); }, PROBE_TIMEOUT);
    if (typeof window.fetch !== "function") { finish(0); return; }
    try {
      window.fetch(LIMIT_URL, { cache: "no-store", credentials: "omit" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (b) { finish(b && typeof b === "object" ? validWait(b.retry_after) : 0); },
          function () { finish(0); });
    } catch (e) { finish(0); }
  }

  function scheduleReconnect() {
    if (reconnectTimer) return;
    if (holding()) {
      // The next attempt is at the end of the wait, not earlier.
      if (mounted && !els.busy) showBusy();
      setStatus("waiting");
      reconnectTimer = setTimeout(function () { reconnectTimer = null; connect(); }, holdUntil - Date.now());
      return;
    }
    var base = Math.min(BACKOFF_MAX, BACKOFF_MIN * Math.pow(2, attempt));
    attempt++;
    var delay = Math.min(BACKOFF_MAX, Math.round(base * (0.8 + Math.random() * 0.4)));
    setStatus("reconnecting");
    reconnectTimer = setTimeout(function () { reconnectTimer = null; connect(); }, delay);
  }

  function reconnectNow() {
    if (!started || ws || probing || holding()) return;
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    connect();
  }
  window.addEventListener("online", reconnectNow);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") reconnectNow();
  });

  function handleFrame(msg) {
    switch (msg.type) {
      case "welcome": {
        if (typeof msg.resume === "string" && msg.resume) storeSet(KEY_RESUME, msg.resume);
        var cid = msg.conversation_id != null ? String(msg.conversation_id) : null;
        if (mounted && conversationId && cid && cid !== conversationId) {
          // A different conversation than the one on screen (e.g. expired token).
          clearMessages();
          renderPendingOutbox();
        }
        if (cid) conversationId = cid;
        ready = true;
        everReady = true;
        attempt = 0;
        endHold();
        clearTimeout(handshakeTimer);
        setStatus("online");
        applyConvState(msg.state);
        // Language toggled while the handshake was in flight.
        if (helloLang && helloLang !== lang) { sendFrame({ type: "lang", lang: lang }); helloLang = lang; }
        // Re-send everything not yet acknowledged, with the same ids.
        var pending = outbox.slice();
        for (var i = 0; i < pending.length; i++) transmit(pending[i]);
        break;
      }
      case "history": {
        if (!mounted || !Array.isArray(msg.messages)) break;
        clearMessages();
        var list = msg.messages;
        var lastCitizen = -1;
        for (var k = 0; k < list.length; k++) if (list[k] && list[k].from === "citizen") lastCitizen = k;
        for (var j = 0; j < list.length; j++) {
          var m = list[j];
          if (!m || typeof m !== "object") continue;
          var from = m.from;
          if (from === "citizen") {
            var id = typeof m.id === "string" ? m.id : null;
            if (id) outboxRemove(id);     // the server has it
            renderMessage("citizen", m.text, { id: id, state: "sent", at: m.at });
          } else {
            renderMessage(from, m.text, { buttons: m.buttons, at: m.at, chipsDisabled: j < lastCitizen });
          }
        }
        renderPendingOutbox();
        scrollBottom();
        break;
      }
      case "ack": {
        if (typeof msg.id !== "string") break;
        outboxRemove(msg.id);
        markSent(msg.id);
        break;
      }
      case "message": {
        if (!mounted) break;
        var f = msg.from || "bot";
        renderMessage(f, msg.text, { buttons: msg.buttons, at: msg.at });
        scrollBottom();
        if (!isOpen && (f === "bot" || f === "agent")) { unread++; updateBadge(); }
        break;
      }
      case "state": {
        applyConvState(msg.state);
        break;
      }
      case "queue": {
        var pos = Number(msg.position);
        if (!isFinite(pos) || pos < 0) break;
        queueInfo = { position: Math.floor(pos), eta_seconds: msg.eta_seconds };
        renderQueue();
        break;
      }
      case "typing": {
        if (!mounted) break;
        els.typing.textContent = t("typing");
        els.typing.hidden = msg.on !== true;
        break;
      }
      case "error": {
        if (msg.code === "too_many_conversations") {
          // A hello refused: this socket holds no conversation of ours. Close it and
          // wait as long as the server asked (or back off as usual if it did not say).
          var wait = validWait(msg.retry_after);
          var sock = ws;
          if (!wait || ready) {
            // No usable wait, or our conversation on this socket carries on: say so only.
            if (mounted) renderNotice(msg.message || msg.code);
          } else {
            holdOff(wait);
          }
          if (sock && !ready) {
            ws = null;
            clearTimeout(handshakeTimer);
            try { sock.close(1000); } catch (e) { /* ignore */ }
            scheduleReconnect();
          }
          break;
        }
        if (typeof msg.id === "string" && outboxRemove(msg.id)) {
          var b = bubbles[msg.id];
          if (b) { b.setAttribute("data-state", "failed"); setCitizenTitle(b); }
        }
        if (mounted) renderNotice(msg.message || msg.code || "");
        break;
      }
      default:
        break; // unknown frame types are ignored
    }
  }

  // ---------------------------------------------------------------------
  // Public API
  // ---------------------------------------------------------------------
  var api = {
    __hotline: true,
    open: function () {
      wantOpen = true;
      if (!mounted) return;
      isOpen = true;
      els.panel.hidden = false;
      els.wrap.className = "wrap open";
      els.launcher.setAttribute("aria-expanded", "true");
      unread = 0;
      applyLang();
      start();
      scrollBottom();
      // Don't pop the on-screen keyboard on phones when auto-opened.
      if (!isSmallScreen()) {
        setTimeout(function () { try { els.input.focus({ preventScroll: true }); } catch (e) { els.input.focus(); } }, 0);
      }
    },
    close: function () {
      wantOpen = false;
      if (!mounted) return;
      isOpen = false;
      els.panel.hidden = true;
      els.wrap.className = "wrap";
      els.launcher.setAttribute("aria-expanded", "false");
      applyLang();
    },
    setLang: function (l) {
      var n = normLang(l);
      if (!n) return;
      var changed = n !== lang;
      lang = n;
      storeSet(KEY_LANG, n);
      applyLang();
      if (changed && ready) { sendFrame({ type: "lang", lang: n }); helloLang = n; }
    }
  };
  window.HotlineChat = api;

  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
