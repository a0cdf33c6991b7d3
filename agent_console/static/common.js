/*!
 * hotline staff pages — shared helpers (console, supervisor page, calls page).
 *
 * Plain JS, no dependencies, no build step. Exposes one global, HL.
 * Rule for every file here: text from the server or from people is untrusted and
 * reaches the page through textContent / text nodes / setAttribute only — never
 * through HTML parsing.
 */
(function () {
  "use strict";

  var STRINGS = window.HotlineI18n;
  var LANG_KEY = "hotline.console.lang";
  var MUTATING = { POST: true, PUT: true, PATCH: true, DELETE: true };

  // ---------------------------------------------------------------------
  // Storage (localStorage may be disabled; the console still works)
  // ---------------------------------------------------------------------
  function storeGet(k) { try { return window.localStorage.getItem(k); } catch (e) { return null; } }
  function storeSet(k, v) { try { window.localStorage.setItem(k, v); } catch (e) { /* not remembered */ } }

  // ---------------------------------------------------------------------
  // i18n
  // ---------------------------------------------------------------------
  var lang = storeGet(LANG_KEY) === "en" ? "en" : "zh";
  var langListeners = [];

  /** The string for key in the current language; {name} is replaced from args. */
  function t(key, args) {
    var s = STRINGS[lang][key];
    if (s == null) s = STRINGS.zh[key];
    if (s == null) return key;
    if (!args) return s;
    return s.replace(/\{(\w+)\}/g, function (m, name) {
      return Object.prototype.hasOwnProperty.call(args, name) && args[name] != null ? String(args[name]) : "";
    });
  }

  function has(key) { return STRINGS.zh[key] != null || STRINGS.en[key] != null; }

  /** t() for a key that may not exist (e.g. built from server data): fallback instead. */
  function tOr(key, fallback) {
    return has(key) ? t(key) : String(fallback == null ? "" : fallback);
  }

  /**
   * Set el's text to t(key, args) and remember the key, so a language switch
   * re-translates it in place (applyLang walks [data-i18n]).
   */
  function tr(el, key, args) {
    el.setAttribute("data-i18n", key);
    if (args) el.setAttribute("data-i18n-args", JSON.stringify(args));
    else el.removeAttribute("data-i18n-args");
    el.textContent = t(key, args);
    return el;
  }

  var ATTR_KEYS = [["data-i18n-placeholder", "placeholder"], ["data-i18n-title", "title"], ["data-i18n-aria-label", "aria-label"]];

  function applyLang() {
    document.documentElement.setAttribute("lang", lang === "zh" ? "zh-CN" : "en");
    var nodes = document.querySelectorAll("[data-i18n]");
    for (var i = 0; i < nodes.length; i++) {
      var raw = nodes[i].getAttribute("data-i18n-args");
      var args = null;
      if (raw) { try { args = JSON.parse(raw); } catch (e) { args = null; } }
      nodes[i].textContent = t(nodes[i].getAttribute("data-i18n"), args);
    }
    for (var a = 0; a < ATTR_KEYS.length; a++) {
      var withAttr = document.querySelectorAll("[" + ATTR_KEYS[a][0] + "]");
      for (var j = 0; j < withAttr.length; j++) {
        withAttr[j].setAttribute(ATTR_KEYS[a][1], t(withAttr[j].getAttribute(ATTR_KEYS[a][0])));
      }
    }
    for (var k = 0; k < langListeners.length; k++) langListeners[k](lang);
  }

  function setLang(l) {
    lang = l === "en" ? "en" : "zh";
    storeSet(LANG_KEY, lang);
    applyLang();
  }

  function onLang(fn) { langListeners.push(fn); }

  // ---------------------------------------------------------------------
  // DOM helpers: elements and text nodes only, nothing is parsed as HTML
  // ---------------------------------------------------------------------
  /**
   * h("button", {className, testid, i18n, i18nArgs, i18nPlaceholder, i18nLabel, text,
   *              onclick, hidden, ...attrs}, [children])
   * i18n* props are keys: the text / placeholder / aria-label follow language switches.
   * Children may be nodes or strings (appended as text nodes).
   */
  function h(tag, props, children) {
    var el = document.createElement(tag);
    props = props || {};
    for (var k in props) {
      if (!Object.prototype.hasOwnProperty.call(props, k)) continue;
      var v = props[k];
      if (v == null || v === false) continue;
      if (k === "className") el.className = v;
      else if (k === "text") el.textContent = String(v);
      else if (k === "testid") el.setAttribute("data-testid", v);
      else if (k === "i18n" || k === "i18nArgs") continue;
      else if (k === "i18nPlaceholder") { el.setAttribute("data-i18n-placeholder", v); el.setAttribute("placeholder", t(v)); }
      else if (k === "i18nLabel") { el.setAttribute("data-i18n-aria-label", v); el.setAttribute("aria-label", t(v)); }
      else if (k === "hidden") el.hidden = true;
      else if (k === "disabled") el.disabled = true;
      else if (k === "value") el.value = String(v);
      else if (k.indexOf("on") === 0 && typeof v === "function") el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    if (props.i18n) tr(el, props.i18n, props.i18nArgs);
    appendAll(el, children);
    return el;
  }

  function appendAll(el, children) {
    if (!children) return el;
    for (var i = 0; i < children.length; i++) {
      var c = children[i];
      if (c == null || c === false) continue;
      el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return el;
  }

  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }

  function byTestId(root, id) { return root.querySelector('[data-testid="' + id + '"]'); }

  /** An <option>; label is translated when i18n is given, else shown as text. */
  function option(value, label, i18n) {
    var o = document.createElement("option");
    o.value = value;
    if (i18n) tr(o, i18n);
    else o.textContent = String(label);
    return o;
  }

  /** Show a message (or hide the element when text is empty). */
  function say(el, text) {
    el.removeAttribute("data-i18n");
    el.removeAttribute("data-i18n-args");
    el.textContent = text || "";
    el.hidden = !text;
  }

  /** Show one of our own messages; it follows later language switches. */
  function sayKey(el, key, args) {
    tr(el, key, args);
    el.hidden = false;
  }

  // ---------------------------------------------------------------------
  // Formatting
  // ---------------------------------------------------------------------
  function pad(n) { return n < 10 ? "0" + n : String(n); }

  /** 75 → "01:15", 3700 → "1:01:40". */
  function fmtDuration(seconds) {
    var s = Math.max(0, Math.floor(seconds || 0));
    var hrs = Math.floor(s / 3600), min = Math.floor((s % 3600) / 60), sec = s % 60;
    return (hrs ? hrs + ":" + pad(min) : pad(min)) + ":" + pad(sec);
  }

  function parseTime(iso) {
    if (!iso) return null;
    var d = new Date(iso);
    return isNaN(d.getTime()) ? null : d;
  }

  function fmtTime(iso) {
    var d = parseTime(iso);
    if (!d) return "";
    try { return d.toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { hour12: false }); } catch (e) { return d.toISOString(); }
  }

  /** Time of day only ("14:05:09"), for steps within one call. */
  function fmtClock(iso) {
    var d = parseTime(iso);
    if (!d) return "";
    try { return d.toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB", { hour12: false }); } catch (e) { return d.toISOString().slice(11, 19); }
  }

  // ---------------------------------------------------------------------
  // Phone calls: the IVR path of a call record ([{at, step, value?}])
  // ---------------------------------------------------------------------
  /** The name of an IVR step in the current language; an unknown step as it came. */
  function ivrStep(step) {
    return tOr("ivr_" + step, step == null ? "" : step);
  }

  /**
   * The value of an IVR step: "ivrv_<step>_<value>", then "ivrv_<value>", then the
   * language names for the language step, else the raw value (which may be what the
   * caller said: it only ever reaches the page as text).
   */
  function ivrValue(step, value) {
    if (value == null || value === "") return "";
    var v = String(value);
    if (has("ivrv_" + step + "_" + v)) return t("ivrv_" + step + "_" + v);
    if (has("ivrv_" + v)) return t("ivrv_" + v);
    if (step === "language" && has("lang_" + v)) return t("lang_" + v);
    return v;
  }

  /** "Main menu: case status" for one IVR path entry. */
  function ivrText(entry) {
    if (!entry || typeof entry !== "object") return "";
    var value = ivrValue(entry.step, entry.value);
    var name = ivrStep(entry.step);
    return value ? t("ivrStepValue", { step: name, value: value }) : name;
  }

  function uuid() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === "function") {
      try { return c.randomUUID(); } catch (e) { /* insecure context: fall through */ }
    }
    var b = new Uint8Array(16);
    if (c && c.getRandomValues) c.getRandomValues(b);
    else for (var i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var x = [];
    for (var j = 0; j < 16; j++) x.push((b[j] + 0x100).toString(16).slice(1));
    return x.slice(0, 4).join("") + "-" + x.slice(4, 6).join("") + "-" + x.slice(6, 8).join("") + "-" +
      x.slice(8, 10).join("") + "-" + x.slice(10).join("");
  }

  // ---------------------------------------------------------------------
  // API client
  // ---------------------------------------------------------------------
  var csrf = null;       // kept in memory only; /api/me gives it back after a reload
  var user = null;
  var signedOutHandler = null;

  /**
   * fetch() wrapper. Always resolves (never rejects) with
   * {ok, status, data, retryAfter}; status 0 means the network failed.
   */
  function api(method, path, body, retried) {
    var headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (MUTATING[method] && csrf) headers["X-CSRF-Token"] = csrf;
    var init = { method: method, headers: headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) init.body = JSON.stringify(body);
    return fetch(path, init).then(function (res) {
      return res.text().then(function (txt) {
        var data = null;
        if (txt) { try { data = JSON.parse(txt); } catch (e) { data = null; } }
        return { ok: res.ok, status: res.status, data: data, retryAfter: res.headers.get("Retry-After") };
      });
    }, function () {
      return { ok: false, status: 0, data: null, retryAfter: null };
    }).then(function (r) {
      var code = r.data && r.data.error;
      var authCall = path === "/api/login" || path === "/api/me";
      // The token can go stale (another tab signed in again): fetch it once more and retry.
      if (r.status === 403 && code === "csrf" && !retried && !authCall) {
        return refreshSession().then(function (me) {
          return me.ok ? api(method, path, body, true) : r;
        });
      }
      if (r.status === 401 && !authCall && user) signedOut("expired");
      return r;
    });
  }

  function refreshSession() {
    return api("GET", "/api/me").then(function (r) {
      if (r.ok && r.data) { csrf = r.data.csrf || null; user = r.data.user || user; }
      return r;
    });
  }

  var KNOWN_ERRORS = {
    bad_credentials: 1, too_many_attempts: 1, csrf: 1, unauthenticated: 1, forbidden: 1,
    not_found: 1, taken: 1, not_offered: 1, gone: 1
  };

  /**
   * A sentence for a person about a failed api() result: the server's own words in
   * the current language when it gave them, else ours; the error code is kept in
   * brackets so a support call can quote it.
   */
  function errorText(r) {
    var d = r && r.data && typeof r.data === "object" ? r.data : {};
    var code = typeof d.error === "string" ? d.error : "";
    var msg = "";
    if (lang === "zh" && typeof d.message_zh === "string" && d.message_zh) msg = d.message_zh;
    else if (code && KNOWN_ERRORS[code]) msg = t("err_" + code);
    else if (typeof d.message === "string" && d.message) msg = d.message;
    if (!msg) {
      if (!r || r.status === 0) msg = t("err_network");
      else msg = t("err_http", { status: r.status });
    }
    if (code === "too_many_attempts" && r.retryAfter) msg += " " + t("retryAfter", { s: r.retryAfter });
    if (code && msg.indexOf(code) < 0) msg += " (" + code + ")";
    return msg;
  }

  // ---------------------------------------------------------------------
  // Session shell: sign-in form, logout, language toggle
  // ---------------------------------------------------------------------
  var shell = null;

  function $(id) { return document.getElementById(id); }

  function showSignIn(reason) {
    $("app").hidden = true;
    $("login").hidden = false;
    $("logout").hidden = true;
    $("whoami").hidden = true;
    if (reason === "expired") sayKey($("login-error"), "sessionExpired");
    else say($("login-error"), "");
    $("login-password").value = "";
    try { $("login-username").focus(); } catch (e) { /* not focusable yet */ }
  }

  function signedIn(data) {
    csrf = data.csrf || null;
    user = data.user || {};
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
    renderWhoami();
    $("whoami").hidden = false;
    shell.onSignedIn(user);
  }

  function renderWhoami() {
    if (!user) return;
    $("whoami").textContent = (user.display_name || user.username || "") + (user.role ? " · " + tOr("role_" + user.role, user.role) : "");
  }

  function signedOut(reason) {
    var was = user !== null;
    csrf = null;
    user = null;
    if (was && shell) shell.onSignedOut();
    showSignIn(reason);
  }

  function submitLogin(ev) {
    ev.preventDefault();
    var btn = $("login-submit");
    var username = $("login-username").value.trim();
    var password = $("login-password").value;
    if (!username || !password) { sayKey($("login-error"), "loginMissing"); return; }
    btn.disabled = true;
    say($("login-error"), "");
    api("POST", "/api/login", { username: username, password: password }).then(function (r) {
      btn.disabled = false;
      if (r.ok && r.data) { $("login-password").value = ""; signedIn(r.data); }
      else say($("login-error"), errorText(r));
    });
  }

  function logout() {
    api("POST", "/api/logout", {}).then(function () { signedOut(null); });
  }

  function updateLangToggle() {
    var b = $("lang-toggle");
    b.textContent = lang === "zh" ? "English" : "中文";
    b.setAttribute("lang", lang === "zh" ? "en" : "zh-CN");
    b.setAttribute("title", t("langToggleTitle"));
  }

  /**
   * Wire the sign-in form, logout and the language toggle, then find out whether a
   * session already exists. handlers: {onSignedIn(user), onSignedOut()}.
   */
  function start(handlers) {
    shell = handlers;
    signedOutHandler = signedOut;
    $("login-form").addEventListener("submit", submitLogin);
    $("logout").addEventListener("click", logout);
    $("lang-toggle").addEventListener("click", function () { setLang(lang === "zh" ? "en" : "zh"); });
    onLang(updateLangToggle);
    onLang(renderWhoami);
    applyLang();
    api("GET", "/api/me").then(function (r) {
      if (r.ok && r.data) signedIn(r.data);
      else showSignIn(null);
    });
  }

  // ---------------------------------------------------------------------
  // WebSocket with reconnect
  // ---------------------------------------------------------------------
  var BACKOFF_MIN = 500;
  var BACKOFF_MAX = 15000;
  var PING_EVERY = 25000;

  /**
   * A same-origin socket that reconnects with jittered exponential backoff until
   * stop(). onFrame(obj) gets each JSON frame; onState("connecting"|"open"|"closed").
   */
  function Socket(path, onFrame, onState) {
    var url = (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + path;
    var ws = null, stopped = false, attempt = 0, timer = null, pinger = null, failures = 0;

    function connect() {
      timer = null;
      if (stopped || ws) return;
      onState("connecting");
      var sock;
      try { sock = new WebSocket(url); } catch (e) { retry(); return; }
      ws = sock;
      sock.onopen = function () {
        if (ws !== sock) return;
        attempt = 0;
        failures = 0;
        onState("open");
        clearInterval(pinger);
        pinger = setInterval(function () { send({ type: "ping" }); }, PING_EVERY);
      };
      sock.onmessage = function (ev) {
        if (ws !== sock || typeof ev.data !== "string") return;
        var frame;
        try { frame = JSON.parse(ev.data); } catch (e) { return; }
        if (!frame || typeof frame !== "object") return;
        try { onFrame(frame); } catch (e) { if (window.console) console.error("[console]", e); }
      };
      sock.onerror = function () { /* a close event follows */ };
      sock.onclose = function () {
        if (ws !== sock) return;
        ws = null;
        clearInterval(pinger);
        onState("closed");
        failures++;
        // A refused upgrade looks like any other close; after a few, ask whether
        // the session is still there (401 signs the page out, which stops us).
        if (failures >= 2) refreshSession().then(function (r) { if (r.status === 401 && signedOutHandler) signedOutHandler("expired"); });
        retry();
      };
    }

    function retry() {
      if (stopped || timer) return;
      var base = Math.min(BACKOFF_MAX, BACKOFF_MIN * Math.pow(2, attempt));
      attempt++;
      timer = setTimeout(connect, Math.round(base * (0.8 + Math.random() * 0.4)));
    }

    function send(obj) {
      if (!ws || ws.readyState !== 1) return false;
      try { ws.send(JSON.stringify(obj)); return true; } catch (e) { return false; }
    }

    function stop() {
      stopped = true;
      clearTimeout(timer);
      clearInterval(pinger);
      if (ws) { var s = ws; ws = null; try { s.close(); } catch (e) { /* already closed */ } }
    }

    function isOpen() { return !!ws && ws.readyState === 1; }

    connect();
    return { send: send, stop: stop, isOpen: isOpen };
  }

  /** Show the socket state in the top bar (#connection). */
  function showConnection(state) {
    var el = $("connection");
    if (!el) return;
    el.hidden = false;
    el.setAttribute("data-state", state);
    tr(el, "conn_" + state);
  }

  /** Read a list out of a response that is either a bare array or {key: [...]}. */
  function listFrom(data, keys) {
    if (Array.isArray(data)) return data;
    if (data && typeof data === "object") {
      for (var i = 0; i < keys.length; i++) if (Array.isArray(data[keys[i]])) return data[keys[i]];
    }
    return [];
  }

  // Roles that oversee others: hotline/roles.py SUPERVISING (the server decides; this only
  // shows or hides what the server would refuse anyway).
  function supervising(u) { return !!u && (u.role === "supervisor" || u.role === "admin"); }

  window.HL = {
    t: t, tOr: tOr, has: has, tr: tr, lang: function () { return lang; }, onLang: onLang,
    h: h, appendAll: appendAll, clear: clear, byTestId: byTestId, option: option, say: say, sayKey: sayKey,
    fmtDuration: fmtDuration, fmtTime: fmtTime, fmtClock: fmtClock, parseTime: parseTime, uuid: uuid,
    ivrStep: ivrStep, ivrValue: ivrValue, ivrText: ivrText,
    api: api, errorText: errorText, user: function () { return user; }, supervising: supervising,
    start: start, Socket: Socket, showConnection: showConnection, listFrom: listFrom
  };
})();
