/*!
 * hotline agent console (/console/).
 *
 * One page, several chats at once in tabs. State comes from the staff API and the
 * /ws/agent socket (docs/agent-api.md). Every string shown comes from the i18n
 * table; every piece of data is inserted as text (see common.js).
 *
 * The console renders by what a conversation's channel can do (its capabilities,
 * docs/agent-api.md), never by the channel's name, which is only shown as a label:
 * - media "realtime" is a phone call: the agent takes it by answering the desk phone
 *   or softphone, so a call offer has no Accept button; once answered the tab opens
 *   by itself with a call panel (caller, state, talk timer, IVR path, Hang up,
 *   Transfer) in place of the chat composer;
 * - "segmented" text (SMS) shows under the reply box how many segments the draft
 *   takes, and warns when it is longer than max_length (the reply will be split);
 * - "delivery_reports" marks each outgoing message sent / delivered / failed.
 */
(function () {
  "use strict";

  var HL = window.HL;
  var t = HL.t, tr = HL.tr, h = HL.h, api = HL.api;

  var STATES = ["ready", "break", "offline"];                 // what an agent may pick
  var BREAK_REASONS = ["meal", "training", "rest", "other"];
  var DISPOSITIONS = ["resolved", "info_given", "ticket_created", "referred", "no_response", "abusive"];
  var TICKET_KINDS = ["report", "complaint", "appeal", "compensation"];
  var ACK_TIMEOUT = 8000;   // no ack on the socket by then: send over HTTP (same client id)
  var PHONE_EVERY = 30000;  // how often the header asks whether the phone is registered
  var PHONE_NUMBER = /^\+?[0-9]{1,31}$|^[0-9]{32}$/;   // outside number: digits, an optional leading +, at most 32 characters
  var CALL_OVER = { ended: true, survey: true };
  var SEGMENTS_DELAY = 350;    // ms of quiet in the reply box before the segments are counted
  var DELIVERY_EVERY = 2000;   // ms between looks at the delivery reports while some are open
  var DELIVERY_POLLS = 30;     // looks after the last message before giving up
  var OUTBOUND = { bot: true, agent: true, system: true };  // transcript lines the channel sends
  var FINAL_REPORTS = { delivered: true, failed: true, smsc_reject: true };

  // ---------------------------------------------------------------------
  // Page state
  // ---------------------------------------------------------------------
  var socket = null;
  var status = { state: "offline", reason: null, since: new Date() };
  var offers = {};          // conversation id -> offer card state
  var convs = {};           // conversation id -> tab state
  var activeId = null;
  var pending = {};         // client message id -> {conv, bubble, timer}
  var cannedCache = {};     // lang -> Promise<list>
  var queuesPromise = null; // Promise<list> of queues for the transfer form
  var ticker = null;
  var phoneTimer = null;
  var phoneGen = 0;         // bumped at sign-in/out: a late answer from before is dropped
  var phoneInfo = null;     // last GET /api/agents/me/phone answer

  function $(id) { return document.getElementById(id); }

  // ---------------------------------------------------------------------
  // Alerting: a beep made with WebAudio and a flashing title
  // ---------------------------------------------------------------------
  var audio = null;

  // Browsers only let an AudioContext start after a user gesture, so it is created
  // on the first click/key press and reused for every offer after that.
  function unlockAudio() {
    var AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return;
    try {
      if (!audio) audio = new AC();
      if (audio.state === "suspended") audio.resume().catch(function () { /* stays silent */ });
    } catch (e) { audio = null; }
  }
  document.addEventListener("pointerdown", unlockAudio, true);
  document.addEventListener("keydown", unlockAudio, true);

  function beep() {
    if (!audio || audio.state !== "running") return;
    var now = audio.currentTime;
    [0, 0.25].forEach(function (offset) {
      var osc = audio.createOscillator();
      var gain = audio.createGain();
      osc.type = "sine";
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, now + offset);
      gain.gain.exponentialRampToValueAtTime(0.25, now + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + offset + 0.18);
      osc.connect(gain);
      gain.connect(audio.destination);
      osc.start(now + offset);
      osc.stop(now + offset + 0.2);
    });
  }

  var flashTimer = null, flashOn = false;

  function baseTitle() { return t("consoleTitle"); }

  function updateTitleFlash() {
    var any = Object.keys(offers).some(function (id) { return !offers[id].dead; });
    if (any && !flashTimer) {
      flashTimer = setInterval(function () {
        flashOn = !flashOn;
        var call = Object.keys(offers).some(function (id) { return !offers[id].dead && isCall(offers[id].data); });
        document.title = flashOn ? t(call ? "titleFlashCall" : "titleFlash") : baseTitle();
      }, 1000);
    } else if (!any && flashTimer) {
      clearInterval(flashTimer);
      flashTimer = null;
      flashOn = false;
      document.title = baseTitle();
    }
  }

  // ---------------------------------------------------------------------
  // Agent status
  // ---------------------------------------------------------------------
  function applyStatus(s) {
    if (!s || typeof s.state !== "string") return;
    status = { state: s.state, reason: s.reason || null, since: HL.parseTime(s.since) || new Date() };
    if (STATES.indexOf(status.state) >= 0) $("status-select").value = status.state;
    if (status.state === "break" && BREAK_REASONS.indexOf(status.reason) >= 0) $("break-reason").value = status.reason;
    $("break-reason").classList.toggle("inactive", status.state !== "break");
    renderStatus();
  }

  function renderStatus() {
    var el = $("status-current");
    el.setAttribute("data-state", status.state);
    el.setAttribute("data-reason", status.reason || "");
    var text = HL.tOr("state_" + status.state, status.state);
    if (status.reason) text = t("withReason", { s: text, r: HL.tOr("reason_" + status.reason, status.reason) });
    el.textContent = text + " · " + HL.fmtDuration((Date.now() - status.since.getTime()) / 1000);
  }

  function postStatus() {
    var state = $("status-select").value;
    var body = { status: state };
    if (state === "break") body.reason = $("break-reason").value;
    HL.say($("status-error"), "");
    api("POST", "/api/agents/me/status", body).then(function (r) {
      if (!r.ok) {
        HL.say($("status-error"), HL.errorText(r));
        applyStatus({ state: status.state, reason: status.reason, since: status.since.toISOString() });
        return;
      }
      var s = r.data && (r.data.status || r.data);
      if (s && typeof s.state === "string") applyStatus(s);
      else applyStatus({ state: state, reason: body.reason || null, since: new Date().toISOString() });
    });
  }

  // ---------------------------------------------------------------------
  // Offers
  // ---------------------------------------------------------------------
  function showOffer(o) {
    if (!o || o.conversation_id == null) return;
    var id = String(o.conversation_id);
    if (convs[id] && convs[id].mode === "live") return; // already ours
    var existing = offers[id];
    if (existing) existing.card.remove();
    var offer = { id: id, data: o, received: Date.now(), expires: HL.parseTime(o.expires_at), els: {} };
    offers[id] = offer;
    offer.card = buildOfferCard(offer);
    markOffer(offer);
    $("offers").appendChild(offer.card);
    renderOfferTimes(offer);
    // The hello frame's offer may carry only ids: fill in the rest from the conversation.
    if (o.channel === undefined && o.preview === undefined) enrichOffer(offer);
    beep();
    updateTitleFlash();
  }

  function offerRow(labelKey, valueEl) {
    return h("div", { className: "kv" }, [h("span", { className: "k", i18n: labelKey }), valueEl]);
  }

  /** A phone call (realtime media): taken on the phone, not in the browser. */
  function isCall(o) { return !!o && o.media === "realtime"; }

  function buildOfferCard(offer) {
    var els = offer.els;
    els.channel = h("span", { className: "v", testid: "offer-channel" });
    els.language = h("span", { className: "v", testid: "offer-language" });
    els.intent = h("span", { className: "v", testid: "offer-intent" });
    els.waiting = h("span", { className: "v", testid: "offer-waiting" });
    els.countdown = h("span", { className: "v countdown", testid: "offer-countdown" });
    els.caller = h("span", { className: "v", testid: "offer-caller" });
    els.callerRow = offerRow("caller", els.caller);
    els.title = h("h3", { i18n: "offerTitle" });
    els.ringing = h("p", { className: "ringing", testid: "offer-ringing", i18n: "phoneRinging", hidden: true });
    els.preview = h("blockquote", { className: "preview", testid: "offer-preview" });
    els.error = h("p", { className: "error", testid: "offer-error", role: "alert", hidden: true });
    els.accept = h("button", { type: "button", className: "primary", testid: "offer-accept", i18n: "accept", onclick: function () { acceptOffer(offer); } });
    els.reject = h("button", { type: "button", testid: "offer-reject", i18n: "reject", onclick: function () { rejectOffer(offer); } });
    els.dismiss = h("button", { type: "button", testid: "offer-dismiss", i18n: "dismiss", hidden: true, onclick: function () { removeOffer(offer.id); } });
    fillOffer(offer);
    return h("article", { className: "offer", testid: "offer", "data-conversation-id": offer.id, role: "alert" }, [
      els.title,
      els.ringing,
      h("div", { className: "offer-grid" }, [
        els.callerRow,
        offerRow("channel", els.channel), offerRow("language", els.language), offerRow("intent", els.intent),
        offerRow("waiting", els.waiting), offerRow("expiresIn", els.countdown)
      ]),
      els.preview,
      els.error,
      h("div", { className: "actions" }, [els.accept, els.reject, els.dismiss])
    ]);
  }

  function fillOffer(offer) {
    var o = offer.data, els = offer.els;
    var call = isCall(o);
    // A call is answered on the phone: no Accept button, only Reject.
    tr(els.title, call ? "offerTitleCall" : "offerTitle");
    els.ringing.hidden = !call || !!offer.dead;
    els.callerRow.hidden = !call;
    els.caller.textContent = o.caller == null || o.caller === "" ? "—" : String(o.caller);
    els.accept.hidden = call || !!offer.dead;
    if (offer.card) markOffer(offer);
    labelled(els.channel, "channel_", o.channel);
    labelled(els.language, "lang_", o.language);
    labelled(els.intent, "intent_", o.intent);
    els.preview.textContent = o.preview == null ? "" : String(o.preview);
    els.preview.hidden = !o.preview;
  }

  /** The channel (shown) and its media (what the card is rendered by), for styles and tests. */
  function markOffer(offer) {
    var o = offer.data;
    offer.card.setAttribute("data-channel", o.channel == null ? "" : String(o.channel));
    offer.card.setAttribute("data-media", o.media == null ? "" : String(o.media));
  }

  function enrichOffer(offer) {
    api("GET", "/api/conversations/" + encodeURIComponent(offer.id)).then(function (r) {
      if (!r.ok || !r.data || !r.data.conversation || offers[offer.id] !== offer) return;
      var c = r.data.conversation;
      var o = offer.data;
      o.channel = c.channel; o.language = c.language; o.intent = c.intent; o.preview = c.last_text;
      if (o.media == null && c.capabilities && typeof c.capabilities === "object") o.media = c.capabilities.media;
      if (r.data.call && o.caller == null) o.caller = r.data.call.caller;
      var queued = HL.parseTime(c.queued_at);
      if (queued && o.waiting_seconds == null) { o.waiting_seconds = (Date.now() - queued.getTime()) / 1000; offer.received = Date.now(); }
      fillOffer(offer);
      renderOfferTimes(offer);
    });
  }

  function renderOfferTimes(offer) {
    var o = offer.data, els = offer.els;
    if (o.waiting_seconds != null) {
      els.waiting.textContent = HL.fmtDuration(Number(o.waiting_seconds) + (Date.now() - offer.received) / 1000);
    } else {
      els.waiting.textContent = "—";
    }
    if (offer.expires) {
      var left = Math.max(0, Math.ceil((offer.expires.getTime() - Date.now()) / 1000));
      if (left > 0) tr(els.countdown, "seconds", { n: left });
      else tr(els.countdown, "expired");
      els.countdown.classList.toggle("urgent", left <= 5);
    } else {
      els.countdown.textContent = "—";
    }
  }

  function offerFailed(offer, r) {
    var els = offer.els;
    HL.say(els.error, HL.errorText(r));
    // taken / gone / not_offered: this offer is over; anything else may be retried.
    if (r.status === 409 || r.status === 404) {
      offer.dead = true;
      els.accept.hidden = true;
      els.reject.hidden = true;
      els.ringing.hidden = true;
      els.dismiss.hidden = false;
      offer.card.classList.add("dead");
      updateTitleFlash();
    } else {
      els.accept.disabled = false;
      els.reject.disabled = false;
    }
  }

  function acceptOffer(offer) {
    offer.els.accept.disabled = true;
    offer.els.reject.disabled = true;
    HL.say(offer.els.error, "");
    api("POST", "/api/conversations/" + encodeURIComponent(offer.id) + "/accept", {}).then(function (r) {
      if (!r.ok) { offerFailed(offer, r); return; }
      removeOffer(offer.id);
      openConversation(offer.id, "live", true, offer.data);
    });
  }

  function rejectOffer(offer) {
    offer.els.accept.disabled = true;
    offer.els.reject.disabled = true;
    api("POST", "/api/conversations/" + encodeURIComponent(offer.id) + "/reject", {}).then(function (r) {
      if (!r.ok) { offerFailed(offer, r); return; }
      removeOffer(offer.id);
    });
  }

  function removeOffer(id) {
    var offer = offers[id];
    if (!offer) return;
    offer.card.remove();
    delete offers[id];
    updateTitleFlash();
  }

  /** Text for a value that has a translation under prefix+value, else the raw value. */
  function labelled(el, prefix, value) {
    if (value != null && value !== "" && HL.has(prefix + value)) { tr(el, prefix + value); return; }
    el.removeAttribute("data-i18n");
    el.textContent = value == null || value === "" ? "—" : String(value);
  }

  // ---------------------------------------------------------------------
  // Conversation tabs
  // ---------------------------------------------------------------------
  /**
   * Open (or focus) the tab for a conversation. mode: "live" (we hold it),
   * "readonly" (history), "wrapup" (closed, not dismissed), "unassigned" (taken away).
   */
  function openConversation(id, mode, focus, known) {
    id = String(id);
    var conv = convs[id];
    if (!conv) {
      conv = createConversation(id, mode, known);
      convs[id] = conv;
      $("tabs").appendChild(conv.tab);
      $("panels").appendChild(conv.panel);
      loadConversation(conv);
    } else if (mode === "live" && conv.mode !== "live") {
      setMode(conv, "live");
      loadConversation(conv);
    }
    if (focus || !activeId) activate(id);
    updateEmpty();
    return conv;
  }

  /**
   * known: the offer ({channel, media}) when there was one, so a call never shows the
   * chat composer while its details load.
   */
  function createConversation(id, mode, known) {
    var conv = {
      id: id, mode: mode, detail: null, seen: {}, live: [], els: {}, ticketCreated: false,
      channel: known && known.channel != null ? String(known.channel) : null,
      caps: null,   // the channel's capabilities, from the conversation object
      // phone calls (realtime media) only
      realtime: isCall(known), call: null, callState: null, callStoppedAt: null, talkFinal: null,
      talkSeenAt: null, loadSeq: 0,
      transferOpen: false, hangingUp: false,
      // segmented text: the reply box's segment count
      segmentTimer: null, segmentSeq: 0,
      // delivery reports
      deliveries: [], deliveryTimer: null, deliveryBusy: false, deliveryAgain: false, deliveryPolls: 0, deliveryOpen: false
    };
    conv.tab = buildTab(conv);
    conv.panel = buildPanel(conv);
    setMode(conv, mode);
    return conv;
  }

  function buildTab(conv) {
    var label = h("span", { className: "tab-label" });
    var close = h("button", {
      type: "button", className: "tab-close", testid: "conv-tab-close", text: "×",
      i18nLabel: "closeTab",
      onclick: function (ev) { ev.stopPropagation(); dismiss(conv); }
    });
    conv.els.tabLabel = label;
    conv.els.tabClose = close;
    var tab = h("div", {
      className: "tab", role: "tab", tabindex: "0", testid: "conv-tab", "data-conversation-id": conv.id,
      onclick: function () { activate(conv.id); },
      onkeydown: function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); activate(conv.id); } }
    }, [h("span", { className: "dot", "aria-hidden": "true" }), label, close]);
    renderTabLabel(conv);
    return tab;
  }

  function renderTabLabel(conv) {
    var c = conv.detail && conv.detail.conversation;
    var name = t(conv.realtime ? "callShort" : "convShort", { id: conv.id.slice(0, 8) });
    if (c && c.intent) name += " · " + HL.tOr("intent_" + c.intent, c.intent);
    conv.els.tabLabel.textContent = name;
    conv.els.tabLabel.setAttribute("title", conv.id);
  }

  function activate(id) {
    activeId = id;
    Object.keys(convs).forEach(function (k) {
      var on = k === id;
      convs[k].tab.classList.toggle("active", on);
      convs[k].tab.setAttribute("aria-selected", on ? "true" : "false");
      convs[k].panel.hidden = !on;
      if (on) convs[k].tab.classList.remove("unread");
    });
  }

  function dismiss(conv) {
    if (conv.mode === "live") return; // a held chat is closed with the close form
    conv.tab.remove();
    conv.panel.remove();
    stopTimers(conv);
    delete convs[conv.id];
    if (activeId === conv.id) {
      activeId = null;
      var rest = Object.keys(convs);
      if (rest.length) activate(rest[rest.length - 1]);
    }
    updateEmpty();
  }

  function updateEmpty() { $("no-chats").hidden = Object.keys(convs).length > 0; }

  /** Switch a tab's mode; notice is an i18n key shown above the transcript. */
  function setMode(conv, mode, notice) {
    conv.mode = mode;
    conv.tab.setAttribute("data-mode", mode);
    conv.panel.setAttribute("data-mode", mode);
    conv.els.tabClose.hidden = mode === "live";
    var live = mode === "live";
    conv.els.composer.hidden = !live;
    conv.els.transfer.hidden = !live;
    conv.els.close.hidden = !live;
    conv.els.ticketForm.hidden = !(live || mode === "wrapup");
    conv.els.ticket.hidden = conv.els.ticketForm.hidden && conv.els.ticketInfo.hidden;
    conv.els.wrapup.hidden = mode !== "wrapup";
    var badge = conv.els.modeBadge;
    if (mode === "live") { badge.hidden = true; badge.removeAttribute("data-i18n"); }
    else { badge.hidden = false; tr(badge, "mode_" + mode); }
    if (notice) HL.sayKey(conv.els.modeNotice, noticeKey(conv, notice));
    else if (mode === "live") HL.say(conv.els.modeNotice, "");
    if (!live) conv.transferOpen = false;
    renderVoiceControls(conv);
  }

  /** A notice about a call says "call", not "chat", where the table has that text. */
  function noticeKey(conv, key) {
    return conv.realtime && HL.has("call_" + key) ? "call_" + key : key;
  }

  // --------------------------------------------------------------- panel
  function section(titleKey, testid, children) {
    return h("section", { className: "box", testid: testid }, [h("h4", { i18n: titleKey })].concat(children));
  }

  function buildPanel(conv) {
    var els = conv.els;
    els.modeBadge = h("span", { className: "mode-badge", testid: "conv-mode", hidden: true });
    els.meta = h("span", { className: "meta", testid: "conv-meta" });
    els.intent = h("div", { className: "intent", testid: "intent" });
    els.queue = h("div", { className: "queue-position", testid: "queue-position", hidden: true });
    els.modeNotice = h("p", { className: "notice", testid: "conv-notice", role: "status", hidden: true });
    els.loadError = h("p", { className: "error", testid: "conv-error", role: "alert", hidden: true });
    els.transcript = h("div", { className: "transcript", testid: "transcript", role: "log", "aria-live": "polite" });

    els.wrapup = h("div", { className: "wrapup", testid: "wrapup-notice", role: "status", hidden: true }, [
      h("span", { className: "wrapup-text" }),
      h("button", { type: "button", testid: "wrapup-dismiss", i18n: "dismissTab", onclick: function () { dismiss(conv); } })
    ]);
    els.composer = buildComposer(conv);
    els.callBox = buildCallBox(conv);
    els.voiceHint = h("p", { className: "muted voice-hint", testid: "voice-transcript-hint", i18n: "voiceTranscriptHint", hidden: true });

    var head = h("header", { className: "conv-head" }, [
      h("div", { className: "conv-title" }, [h("strong", { text: conv.id }), els.modeBadge, els.meta]),
      els.intent, els.queue
    ]);
    var main = h("div", { className: "conv-main" }, [els.modeNotice, els.loadError, els.callBox, els.voiceHint, els.transcript, els.wrapup, els.composer]);

    els.fields = h("div", { className: "fields", testid: "fields" });
    els.attachments = h("ul", { className: "attachments", testid: "attachments" });
    els.attachmentsBox = section("attachmentsTitle", "attachments-box", [els.attachments]);
    els.attachmentsBox.hidden = true;
    els.identity = buildIdentity(conv);
    els.history = h("div", { className: "contact-history", testid: "contact-history" });
    els.suggestions = h("ul", { className: "suggestions", testid: "suggestions" });
    els.ticket = buildTicket(conv);
    els.transfer = buildTransfer(conv);
    els.close = buildClose(conv);
    var side = h("div", { className: "conv-side" }, [
      section("fieldsTitle", "fields-box", [els.fields]),
      els.attachmentsBox,
      els.identity,
      section("historyContact", "contact-box", [els.history]),
      section("suggestionsTitle", "suggestions-box", [els.suggestions]),
      buildKb(conv),
      els.ticket,
      els.transfer,
      els.close
    ]);
    return h("div", { className: "conv-panel", role: "tabpanel", testid: "conv-panel", "data-conversation-id": conv.id, hidden: true }, [
      head, h("div", { className: "conv-body" }, [main, side])
    ]);
  }

  function buildComposer(conv) {
    var els = conv.els;
    els.canned = h("select", { testid: "canned-select", i18nLabel: "cannedLabel" }, [
      HL.option("", "", "cannedPlaceholder")
    ]);
    els.canned.addEventListener("change", function () {
      var item = els.cannedItems && els.cannedItems[Number(els.canned.value)];
      if (item) insertText(conv, item.text);
      els.canned.value = "";
    });
    els.reply = h("textarea", {
      testid: "reply-input", rows: "3", maxlength: "2000",
      i18nPlaceholder: "replyPlaceholder",
      i18nLabel: "replyLabel"
    });
    els.reply.addEventListener("input", function () { draftChanged(conv); });
    els.reply.addEventListener("keydown", function (ev) {
      // Enter sends, Shift+Enter is a new line; never while an IME is composing.
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
        ev.preventDefault();
        sendReply(conv);
      }
    });
    els.send = h("button", { type: "button", className: "primary", testid: "reply-send", i18n: "send", onclick: function () { sendReply(conv); } });
    els.sendError = h("p", { className: "error", testid: "reply-error", role: "alert", hidden: true });
    // Segmented channels only: how many segments the draft takes, and a warning when
    // it is longer than one message may be (the channel splits it).
    els.segments = h("p", { className: "reply-meter", testid: "reply-segments", role: "status", hidden: true });
    els.tooLong = h("p", { className: "reply-warning", testid: "reply-too-long", role: "status", hidden: true });
    loadCanned(conv);
    return h("div", { className: "composer" }, [
      h("div", { className: "composer-tools" }, [els.canned]),
      h("div", { className: "composer-row" }, [els.reply, els.send]),
      els.segments,
      els.tooLong,
      els.sendError
    ]);
  }

  function buildKb(conv) {
    var input = h("input", {
      type: "search", testid: "kb-search-input", maxlength: "500",
      i18nPlaceholder: "kbPlaceholder",
      i18nLabel: "kbTitle"
    });
    var results = h("ul", { className: "kb-results", testid: "kb-results" });
    var msg = h("p", { className: "muted", hidden: true });
    var form = h("form", { className: "inline-form" }, [
      input, h("button", { type: "submit", testid: "kb-search-submit", i18n: "search" })
    ]);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      kbSearch(conv, input.value.trim(), results, msg);
    });
    return section("kbTitle", "kb-box", [form, msg, results]);
  }

  function buildIdentity(conv) {
    var els = conv.els;
    els.identityState = h("p", { className: "muted", testid: "identity-state" });
    els.identityReveal = h("button", { type: "button", testid: "identity-reveal", i18n: "identityReveal", hidden: true, onclick: function () { revealIdentity(conv); } });
    els.identityValue = h("div", { className: "identity-value", testid: "identity-value", hidden: true });
    els.identityError = h("p", { className: "error", role: "alert", hidden: true });
    return section("identityTitle", "identity-box", [els.identityState, els.identityReveal, els.identityValue, els.identityError]);
  }

  function buildTicket(conv) {
    var els = conv.els;
    els.ticketInfo = h("div", { className: "ticket-info", testid: "ticket-info", hidden: true });
    els.ticketKind = h("select", { testid: "ticket-kind", i18nLabel: "ticketKind" },
      TICKET_KINDS.map(function (k) { return HL.option(k, "", "kind_" + k); }));
    els.ticketSummary = h("textarea", {
      testid: "ticket-summary", rows: "3", maxlength: "2000",
      i18nPlaceholder: "ticketSummary",
      i18nLabel: "ticketSummary"
    });
    els.ticketError = h("p", { className: "error", testid: "ticket-error", role: "alert", hidden: true });
    var submit = h("button", { type: "submit", testid: "ticket-submit", i18n: "ticketCreate" });
    var form = h("form", { className: "stack" }, [els.ticketKind, els.ticketSummary, submit, els.ticketError]);
    form.addEventListener("submit", function (ev) { ev.preventDefault(); createTicket(conv, submit); });
    els.ticketForm = form;
    return section("ticketTitle", "ticket-box", [els.ticketInfo, form]);
  }

  function buildTransfer(conv) {
    var els = conv.els;
    els.transferQueue = h("select", { testid: "transfer-queue", i18nLabel: "transferQueue" }, [
      HL.option("", "", "transferQueuePlaceholder")
    ]);
    els.transferAgent = h("input", {
      type: "text", testid: "transfer-agent", maxlength: "64",
      i18nPlaceholder: "transferAgent",
      i18nLabel: "transferAgent"
    });
    els.transferNote = h("textarea", {
      testid: "transfer-note", rows: "2", maxlength: "1000",
      i18nPlaceholder: "transferNote",
      i18nLabel: "transferNote"
    });
    // Calls only: the third kind of target, a number outside the hotline.
    els.transferNumber = h("input", {
      type: "tel", testid: "transfer-number", maxlength: "40", inputmode: "tel", autocomplete: "off",
      i18nPlaceholder: "transferNumber",
      i18nLabel: "transferNumber",
      hidden: true
    });
    els.transferError = h("p", { className: "error", testid: "transfer-error", role: "alert", hidden: true });
    var submit = h("button", { type: "submit", testid: "transfer-submit", i18n: "transferSubmit" });
    var form = h("form", { className: "stack" }, [els.transferQueue, els.transferAgent, els.transferNumber, els.transferNote, submit, els.transferError]);
    form.addEventListener("submit", function (ev) { ev.preventDefault(); transfer(conv, submit); });
    loadQueues(conv);
    return section("transferTitle", "transfer-box", [form]);
  }

  function buildClose(conv) {
    var els = conv.els;
    els.disposition = h("select", { testid: "close-disposition", i18nLabel: "disposition" },
      DISPOSITIONS.map(function (d) { return HL.option(d, "", "disp_" + d); }));
    els.closeError = h("p", { className: "error", testid: "close-error", role: "alert", hidden: true });
    var submit = h("button", { type: "submit", className: "danger", testid: "close-submit", i18n: "closeSubmit" });
    els.closeSubmit = submit;
    var form = h("form", { className: "inline-form" }, [els.disposition, submit]);
    form.addEventListener("submit", function (ev) { ev.preventDefault(); closeConversation(conv, submit); });
    var box = section("closeTitle", "close-box", [form, els.closeError]);
    els.closeTitle = box.querySelector("h4");
    return box;
  }

  // ------------------------------------------------------------ call panel
  function buildCallBox(conv) {
    var els = conv.els;
    els.callCaller = h("strong", { className: "v", testid: "call-caller", text: "—" });
    els.callDialled = h("span", { className: "v", testid: "call-dialled", text: "—" });
    els.callState = h("span", { className: "call-state", testid: "call-state", role: "status" });
    els.callTimer = h("span", { className: "v call-timer", testid: "call-timer", text: "—" });
    els.callWaited = h("span", { className: "v", testid: "call-waited", text: "—" });
    els.ivrPath = h("ol", { className: "ivr-path", testid: "ivr-path" });
    els.hangup = h("button", { type: "button", className: "danger", testid: "call-hangup", i18n: "hangup", onclick: function () { hangup(conv); } });
    els.callTransfer = h("button", { type: "button", testid: "call-transfer", i18n: "callTransfer", "aria-expanded": "false", onclick: function () { toggleTransfer(conv); } });
    els.callError = h("p", { className: "error", testid: "call-error", role: "alert", hidden: true });
    return h("section", { className: "call-box", testid: "call-panel", hidden: true }, [
      h("div", { className: "call-head" }, [h("h4", { i18n: "callTitle" }), h("span", { className: "k", i18n: "callState" }), els.callState]),
      h("div", { className: "call-grid" }, [
        offerRow("caller", els.callCaller), offerRow("dialled", els.callDialled),
        offerRow("talkTime", els.callTimer), offerRow("callWaited", els.callWaited)
      ]),
      h("h5", { i18n: "ivrPathTitle" }),
      els.ivrPath,
      h("div", { className: "actions" }, [els.hangup, els.callTransfer]),
      els.callError
    ]);
  }

  function callOver(conv) { return !!CALL_OVER[conv.callState]; }

  /**
   * Show or hide what differs between a call and a chat. A call has no composer; its
   * transfer box opens from the call panel's Transfer button, like a dialog.
   */
  function renderVoiceControls(conv) {
    var els = conv.els;
    if (!els.callBox) return; // still building the panel
    var live = conv.mode === "live", call = conv.realtime, over = callOver(conv);
    conv.panel.setAttribute("data-channel", conv.channel || "");
    conv.panel.setAttribute("data-media", call ? "realtime" : (conv.caps && conv.caps.media) || "");
    els.callBox.hidden = !call;
    els.voiceHint.hidden = !call;
    els.composer.hidden = !live || call;
    els.transfer.hidden = !live || (call && (!conv.transferOpen || over));
    els.transferNumber.hidden = !call;
    els.hangup.hidden = !live;
    els.callTransfer.hidden = !live;
    els.hangup.disabled = over || conv.hangingUp;
    els.callTransfer.disabled = over;
    els.callTransfer.setAttribute("aria-expanded", conv.transferOpen && !over ? "true" : "false");
    els.callTransfer.classList.toggle("pressed", conv.transferOpen && !over);
    tr(els.closeTitle, call ? "closeTitleCall" : "closeTitle");
    tr(els.closeSubmit, call ? "closeSubmitCall" : "closeSubmit");
  }

  function renderCall(conv) {
    var els = conv.els, call = conv.call || {};
    els.callCaller.textContent = call.caller == null || call.caller === "" ? "—" : String(call.caller);
    els.callDialled.textContent = call.dialled == null || call.dialled === "" ? "—" : String(call.dialled);
    els.callWaited.textContent = call.wait_seconds == null ? "—" : HL.fmtDuration(Number(call.wait_seconds));
    renderCallState(conv);
    renderIvrPath(conv);
  }

  function renderCallState(conv) {
    var el = conv.els.callState;
    el.setAttribute("data-state", conv.callState || "");
    conv.panel.setAttribute("data-call-state", conv.callState || "");
    labelled(el, "callstate_", conv.callState);
    renderTimer(conv);
    renderVoiceControls(conv);
  }

  /**
   * When the agent's talk began (ms): the last "agent_answered" step of the IVR path.
   * Not answered_at: that is when the IVR picked the call up, before the menu and the
   * queue. Until a fresh GET brings the step, the moment this page saw "talking".
   */
  function talkStart(conv) {
    var path = conv.call && Array.isArray(conv.call.ivr_path) ? conv.call.ivr_path : [];
    for (var i = path.length - 1; i >= 0; i--) {
      var step = path[i];
      if (step && typeof step === "object" && step.step === "agent_answered") {
        var at = HL.parseTime(step.at);
        if (at) return at.getTime();
      }
    }
    return conv.talkSeenAt;
  }

  /** Talk time: counts while the agent talks; frozen once the call is over. */
  function renderTimer(conv) {
    var el = conv.els.callTimer;
    var start = talkStart(conv);
    var secs = null;
    if (callOver(conv)) {
      if (conv.talkFinal != null) secs = conv.talkFinal;
      else if (start != null && conv.callStoppedAt) secs = (conv.callStoppedAt - start) / 1000;
    } else if (start != null && conv.callState === "talking") {
      secs = (Date.now() - start) / 1000;
    }
    el.textContent = secs == null ? "—" : HL.fmtDuration(secs);
    el.classList.toggle("running", secs != null && !callOver(conv));
  }

  /** The steps the caller took in the IVR, with the time of each. */
  function renderIvrPath(conv) {
    var el = conv.els.ivrPath, call = conv.call || {};
    HL.clear(el);
    var path = Array.isArray(call.ivr_path) ? call.ivr_path : [];
    if (!path.length) { el.appendChild(h("li", { className: "muted", i18n: "none" })); return; }
    var start = HL.parseTime(call.started_at);
    path.forEach(function (step) {
      if (!step || typeof step !== "object") return;
      var at = HL.parseTime(step.at);
      var when = h("time", { className: "ivr-time", text: HL.fmtClock(step.at) });
      if (at) when.setAttribute("datetime", String(step.at));
      var since = start && at ? h("span", { className: "muted", text: t("ivrSince", { t: HL.fmtDuration((at.getTime() - start.getTime()) / 1000) }) }) : null;
      el.appendChild(h("li", { testid: "ivr-step", "data-step": step.step == null ? "" : String(step.step) }, [
        when, since ? " " : null, since, " ", h("span", { className: "ivr-text", text: HL.ivrText(step) })
      ]));
    });
  }

  /**
   * A new call state, from a `call` frame or a fresh GET. A GET answered after the
   * call ended may still say "talking": the end is kept.
   */
  function applyCallState(conv, state, fromFrame) {
    if (typeof state !== "string" || !state) return;
    if (!fromFrame && callOver(conv) && !CALL_OVER[state]) return;
    if (state === "talking" && conv.callState !== "talking") conv.talkSeenAt = Date.now();
    conv.callState = state;
    if (CALL_OVER[state]) {
      if (!conv.callStoppedAt) conv.callStoppedAt = Date.now();
      conv.transferOpen = false;
    }
    renderCallState(conv);
  }

  function onCallFrame(f) {
    var id = f.conversation_id != null ? String(f.conversation_id) : null;
    if (!id) return;
    var conv = convs[id];
    if (conv) {
      if (!conv.realtime) { conv.realtime = true; renderTabLabel(conv); }
      applyCallState(conv, f.state, true);
      // The IVR path, the wait and the talk start have moved on with the state.
      loadConversation(conv);
      return;
    }
    // The caller hung up while our phone was still ringing.
    var offer = offers[id];
    if (offer && !offer.dead && f.state === "ended") removeOffer(id);
  }

  function hangup(conv) {
    var els = conv.els;
    if (conv.mode !== "live" || callOver(conv)) return;
    conv.hangingUp = true;
    renderVoiceControls(conv);
    HL.say(els.callError, "");
    conversationPost(conv, "hangup", {}).then(function (r) {
      if (!r.ok) {
        conv.hangingUp = false;
        renderVoiceControls(conv);
        HL.say(els.callError, HL.errorText(r));
      }
      // On success the `call` frame brings the new state; the button stays off.
    });
  }

  function toggleTransfer(conv) {
    if (conv.mode !== "live" || callOver(conv)) return;
    conv.transferOpen = !conv.transferOpen;
    renderVoiceControls(conv);
    if (conv.transferOpen) {
      try { conv.els.transfer.scrollIntoView({ block: "nearest" }); } catch (e) { /* old browser */ }
      try { conv.els.transferQueue.focus(); } catch (e) { /* not focusable */ }
    }
  }

  // ------------------------------------------------------------- loading
  function loadConversation(conv) {
    var mine = ++conv.loadSeq; // answers may cross: only the newest is shown
    return api("GET", "/api/conversations/" + encodeURIComponent(conv.id)).then(function (r) {
      if (!convs[conv.id] || mine !== conv.loadSeq) return;
      if (!r.ok || !r.data) { HL.say(conv.els.loadError, HL.errorText(r)); return; }
      HL.say(conv.els.loadError, "");
      conv.detail = r.data;
      renderDetail(conv);
      var c = r.data.conversation || {};
      // A live tab for a chat that has already ended turns into wrap-up.
      if (conv.mode === "live" && c.state === "closed") enterWrapup(conv, c.disposition);
    });
  }

  function renderDetail(conv) {
    var d = conv.detail, els = conv.els;
    var c = d.conversation || {};
    if (c.channel != null) conv.channel = String(c.channel);
    conv.caps = c.capabilities && typeof c.capabilities === "object" ? c.capabilities : null;
    if ((conv.caps && conv.caps.media === "realtime") || (d.call && typeof d.call === "object")) conv.realtime = true;
    if (conv.realtime) {
      conv.call = d.call && typeof d.call === "object" ? d.call : {};
      if (CALL_OVER[conv.call.state] && typeof conv.call.talk_seconds === "number") conv.talkFinal = conv.call.talk_seconds;
      renderCall(conv);
      applyCallState(conv, conv.call.state, false);
    }
    renderTabLabel(conv);
    renderMeta(conv);
    renderTranscript(conv);
    renderVoiceControls(conv);
    draftChanged(conv);
    if (conv.caps && conv.caps.delivery_reports) loadDeliveries(conv, true);
    loadAttachments(conv);
    renderFields(els.fields, d.fields);
    renderIdentityState(conv);
    renderHistory(conv, d.contact);
    renderSuggestions(conv, d.suggestions);
    renderQueue(conv, d.queue);
    if (d.ticket) renderTicket(conv, d.ticket, null);
    if (c.language && c.language !== conv.cannedLang) loadCanned(conv);
    if (!queuesPromise) loadQueues(conv);
  }

  function renderMeta(conv) {
    var c = (conv.detail && conv.detail.conversation) || {};
    var meta = conv.els.meta;
    HL.clear(meta);
    var chan = h("span");
    labelled(chan, "channel_", c.channel);
    var state = h("span", { testid: "conv-state", "data-state": c.state || "" });
    labelled(state, "cstate_", c.state);
    HL.appendAll(meta, [chan, " · ", state, c.created_at ? " · " + HL.fmtTime(c.created_at) : ""]);

    var intent = conv.els.intent;
    HL.clear(intent);
    intent.setAttribute("data-intent", c.intent || "");
    intent.setAttribute("data-language", c.language || "");
    var intentVal = h("span", { className: "v" });
    labelled(intentVal, "intent_", c.intent);
    var langVal = h("span", { className: "v" });
    labelled(langVal, "lang_", c.language);
    HL.appendAll(intent, [
      h("span", { className: "k", i18n: "intent" }), ": ", intentVal, c.intent ? " (" + c.intent + ")" : "",
      "  ·  ", h("span", { className: "k", i18n: "language" }), ": ", langVal
    ]);
  }

  function renderQueue(conv, q) {
    var el = conv.els.queue;
    if (!q || q.position == null) { el.hidden = true; el.removeAttribute("data-i18n"); el.textContent = ""; return; }
    el.hidden = false;
    el.setAttribute("data-position", String(q.position));
    tr(el, "queuePosition", { n: q.position, m: Math.max(1, Math.ceil((Number(q.eta_seconds) || 0) / 60)) });
  }

  // ---------------------------------------------------------- transcript
  function msgNode(m, opts) {
    opts = opts || {};
    var from = typeof m.from === "string" ? m.from : "system";
    var node = h("div", { className: "msg from-" + from.replace(/[^a-z_]/g, ""), testid: "msg", "data-from": from });
    if (m.id != null) node.setAttribute("data-id", String(m.id));
    var who = h("span", { className: "who" });
    if (HL.has("from_" + from)) tr(who, "from_" + from);
    else who.textContent = from;
    var when = h("time", { className: "when", text: m.at ? HL.fmtTime(m.at) : "" });
    if (m.at) when.setAttribute("datetime", String(m.at));
    var state = h("span", { className: "send-state" });
    node.appendChild(h("div", { className: "msg-meta" }, [who, when, state]));
    node.appendChild(h("div", { className: "msg-text", text: m.text == null ? "" : String(m.text) }));
    if (opts.pending) { node.setAttribute("data-state", "pending"); tr(state, "sending"); }
    return node;
  }

  function renderTranscript(conv) {
    var el = conv.els.transcript;
    var keep = Array.prototype.filter.call(el.children, function (n) { return n.getAttribute("data-state") === "pending" || n.getAttribute("data-state") === "failed"; });
    HL.clear(el);
    conv.seen = {};
    var list = Array.isArray(conv.detail.transcript) ? conv.detail.transcript : [];
    list.forEach(function (m) { appendMessage(conv, m, false); });
    // Messages pushed while the GET was in flight, if the answer did not have them yet.
    conv.live.forEach(function (m) { appendMessage(conv, m, false); });
    keep.forEach(function (n) { el.appendChild(n); });
    renderDeliveries(conv);
    scrollDown(conv);
  }

  /** Append one stored message unless it is already on screen. Returns true if added. */
  function appendMessage(conv, m, fromSocket) {
    if (!m || typeof m !== "object") return false;
    if (m.id != null) {
      if (conv.seen[String(m.id)]) return false;
      conv.seen[String(m.id)] = true;
    }
    if (fromSocket) conv.live.push(m);
    // Our own reply may come back as a message frame before its ack: adopt the bubble.
    if (m.from === "agent" && adoptPending(conv, m)) return false;
    conv.els.transcript.appendChild(msgNode(m));
    return true;
  }

  function scrollDown(conv) {
    var el = conv.els.transcript;
    el.scrollTop = el.scrollHeight;
  }

  function onMessageFrame(frame) {
    var id = frame.conversation_id != null ? String(frame.conversation_id) : null;
    var conv = id && convs[id];
    if (!conv || !frame.message) return;
    if (appendMessage(conv, frame.message, true)) {
      if (OUTBOUND[frame.message.from]) { renderDeliveries(conv); loadDeliveries(conv, true); }
      scrollDown(conv);
      if (activeId !== id) conv.tab.classList.add("unread");
    }
  }

  // ---------------------------------------------------------------- reply
  function insertText(conv, text) {
    var ta = conv.els.reply;
    var value = ta.value;
    var start = typeof ta.selectionStart === "number" ? ta.selectionStart : value.length;
    var end = typeof ta.selectionEnd === "number" ? ta.selectionEnd : value.length;
    var piece = String(text == null ? "" : text);
    ta.value = value.slice(0, start) + piece + value.slice(end);
    var at = start + piece.length;
    try { ta.setSelectionRange(at, at); } catch (e) { /* not focused */ }
    ta.focus();
    draftChanged(conv);
  }

  function sendReply(conv) {
    if (conv.mode !== "live") return;
    var text = conv.els.reply.value.trim();
    if (!text) return;
    var clientId = HL.uuid();
    var bubble = msgNode({ from: "agent", text: text }, { pending: true });
    bubble.setAttribute("data-client-id", clientId);
    conv.els.transcript.appendChild(bubble);
    scrollDown(conv);
    conv.els.reply.value = "";
    draftChanged(conv);
    HL.say(conv.els.sendError, "");
    var item = { conv: conv, bubble: bubble, text: text, id: clientId, timer: null };
    pending[clientId] = item;
    var frame = { type: "send", conversation_id: conv.id, text: text, id: clientId };
    if (socket && socket.send(frame)) item.timer = setTimeout(function () { postReply(item); }, ACK_TIMEOUT);
    else postReply(item);
  }

  /** HTTP fallback; the same client id lets the server drop a duplicate. */
  function postReply(item) {
    if (!pending[item.id]) return;
    clearTimeout(item.timer);
    item.timer = null;
    item.posting = true;
    api("POST", "/api/conversations/" + encodeURIComponent(item.conv.id) + "/messages", { text: item.text, id: item.id }).then(function (r) {
      if (!pending[item.id]) return;
      if (r.ok) replySent(item, r.data && r.data.message);
      else replyFailed(item, HL.errorText(r));
    });
  }

  function replySent(item, message) {
    delete pending[item.id];
    clearTimeout(item.timer);
    var b = item.bubble;
    b.removeAttribute("data-state");
    b.querySelector(".send-state").removeAttribute("data-i18n");
    b.querySelector(".send-state").textContent = "";
    if (message && typeof message === "object") {
      if (message.id != null) { b.setAttribute("data-id", String(message.id)); item.conv.seen[String(message.id)] = true; }
      if (message.at) {
        b.querySelector(".when").textContent = HL.fmtTime(message.at);
        b.querySelector(".when").setAttribute("datetime", String(message.at));
      }
    }
    renderDeliveries(item.conv);
    loadDeliveries(item.conv, true);
  }

  /** Mark a reply as not sent; the reason is server text, or one of our keys. */
  function replyFailed(item, text, key) {
    delete pending[item.id];
    clearTimeout(item.timer);
    item.bubble.setAttribute("data-state", "failed");
    tr(item.bubble.querySelector(".send-state"), "sendFailed");
    if (key) HL.sayKey(item.conv.els.sendError, key);
    else HL.say(item.conv.els.sendError, text);
  }

  function adoptPending(conv, m) {
    var ids = Object.keys(pending);
    for (var i = 0; i < ids.length; i++) {
      var item = pending[ids[i]];
      if (item.conv === conv && item.text === String(m.text).trim()) { replySent(item, m); return true; }
    }
    return false;
  }

  function onAck(frame) {
    var item = typeof frame.id === "string" && pending[frame.id];
    if (item) replySent(item, frame.message);
  }

  function onSocketError(frame) {
    var item = typeof frame.id === "string" && pending[frame.id];
    if (!item) return;
    // A server that does not know the send frame yet: use HTTP instead.
    if (frame.error === "unknown_type" || frame.error === "bad_frame") { postReply(item); return; }
    replyFailed(item, HL.errorText({ status: 400, data: frame }));
  }

  // ------------------------------------------- by capability: segments, delivery
  function channelApi(conv, rest) {
    return "/api/channels/" + encodeURIComponent(conv.channel) + rest;
  }

  function stopTimers(conv) {
    clearTimeout(conv.segmentTimer);
    clearTimeout(conv.deliveryTimer);
    conv.segmentTimer = conv.deliveryTimer = null;
    conv.segmentSeq++;
    conv.deliveryPolls = 0;
  }

  /**
   * The reply box changed. A segmented channel counts the draft's segments (asked
   * from the channel, once typing pauses); a draft longer than max_length is flagged:
   * the channel will send it as several messages.
   */
  function draftChanged(conv) {
    var els = conv.els, caps = conv.caps || {};
    if (!els.segments) return; // still building the panel
    clearTimeout(conv.segmentTimer);
    conv.segmentTimer = null;
    var text = els.reply.value.trim();
    var max = typeof caps.max_length === "number" && caps.max_length > 0 ? caps.max_length : null;
    if (max && text.length > max) HL.sayKey(els.tooLong, "replyTooLong", { n: text.length, max: max });
    else HL.say(els.tooLong, "");
    if (!caps.segmented || !conv.channel || !text) {
      conv.segmentSeq++; // an answer still on its way is dropped
      HL.say(els.segments, "");
      els.segments.removeAttribute("data-segments");
      els.segments.removeAttribute("data-encoding");
      return;
    }
    els.segments.setAttribute("aria-busy", "true");
    conv.segmentTimer = setTimeout(function () { countSegments(conv, text); }, SEGMENTS_DELAY);
  }

  function countSegments(conv, text) {
    conv.segmentTimer = null;
    var mine = ++conv.segmentSeq;
    api("POST", channelApi(conv, "/segments"), { text: text }).then(function (r) {
      if (convs[conv.id] !== conv || mine !== conv.segmentSeq) return;
      var el = conv.els.segments, d = r.data;
      el.removeAttribute("aria-busy");
      if (!r.ok || !d || typeof d.segments !== "number") {
        // The channel is down, or the draft is over the hub's limit.
        el.removeAttribute("data-segments");
        el.removeAttribute("data-encoding");
        HL.sayKey(el, "replySegmentsUnknown");
        return;
      }
      var enc = d.encoding == null ? "" : String(d.encoding);
      var args = { n: d.segments, enc: HL.tOr("encoding_" + enc, enc), m: d.messages };
      el.setAttribute("data-segments", String(d.segments));
      el.setAttribute("data-encoding", enc);
      if (typeof d.messages === "number" && d.messages > 1) HL.sayKey(el, "replySegmentsSplit", args);
      else HL.sayKey(el, "replySegments", args);
    });
  }

  /**
   * Fetch the channel's delivery reports for this conversation; while some are still
   * open (sent, no final report yet), look again every DELIVERY_EVERY ms, at most
   * DELIVERY_POLLS times after the last message (fresh: a new message, start again).
   */
  function loadDeliveries(conv, fresh) {
    if (!conv.caps || !conv.caps.delivery_reports || !conv.channel || convs[conv.id] !== conv) return;
    if (fresh) conv.deliveryPolls = DELIVERY_POLLS;
    if (conv.deliveryBusy) { conv.deliveryAgain = true; return; }
    clearTimeout(conv.deliveryTimer);
    conv.deliveryTimer = null;
    conv.deliveryBusy = true;
    api("GET", channelApi(conv, "/conversations/" + encodeURIComponent(conv.id) + "/deliveries")).then(function (r) {
      conv.deliveryBusy = false;
      if (convs[conv.id] !== conv) return;
      if (r.ok && r.data) {
        conv.deliveries = HL.listFrom(r.data, ["deliveries"]);
        renderDeliveries(conv);
      }
      if (conv.deliveryAgain) { conv.deliveryAgain = false; loadDeliveries(conv); return; }
      if (conv.deliveryPolls > 0 && (conv.deliveryOpen || !r.ok)) {
        conv.deliveryPolls--;
        conv.deliveryTimer = setTimeout(function () { loadDeliveries(conv); }, DELIVERY_EVERY);
      }
    });
  }

  /** The delivery rows (pieces sent) of each transcript message id. */
  function piecesById(rows) {
    var out = {};
    rows.forEach(function (r) {
      if (r.message_id == null) return; // sent before rows named their message
      var key = String(r.message_id);
      (out[key] = out[key] || []).push(r);
    });
    return out;
  }

  /** One line's state from its pieces: failed, suppressed, delivered, sending or sent. */
  function deliveryState(pieces) {
    if (!pieces.length) return null;
    var failed = false, suppressed = false, sending = false, delivered = 0;
    pieces.forEach(function (r) {
      if (r.status === "failed" || r.dlr_state === "failed" || r.dlr_state === "smsc_reject") failed = true;
      else if (r.status === "suppressed") suppressed = true;
      else if (r.dlr_state === "delivered") delivered++;
      else if (r.status === "sending") sending = true;
    });
    if (failed) return "failed";
    if (suppressed) return "suppressed";
    if (delivered === pieces.length) return "delivered";
    return sending ? "sending" : "sent";
  }

  /** Mark each stored bot, agent and system line with its delivery state. */
  function renderDeliveries(conv) {
    if (!conv.caps || !conv.caps.delivery_reports) return;
    var nodes = Array.prototype.filter.call(conv.els.transcript.children, function (n) {
      return OUTBOUND[n.getAttribute("data-from")] && n.getAttribute("data-id") != null && !n.getAttribute("data-state");
    });
    var rows = (Array.isArray(conv.deliveries) ? conv.deliveries : []).filter(function (r) {
      return r && typeof r === "object" && r.kind === "reply";
    });
    var pieces = piecesById(rows);
    var open = false;
    nodes.forEach(function (n) {
      var mine = pieces[n.getAttribute("data-id")] || [], state = deliveryState(mine);
      if (state === null || state === "sending" || state === "sent") open = true;
      var el = n.querySelector(".delivery");
      if (!el) {
        el = h("span", { className: "delivery", testid: "msg-delivery" });
        n.querySelector(".msg-meta").appendChild(el);
      }
      if (state === null) {
        n.removeAttribute("data-delivery");
        el.hidden = true;
        el.removeAttribute("data-i18n");
        el.textContent = "";
        el.removeAttribute("title");
        return;
      }
      n.setAttribute("data-delivery", state);
      el.setAttribute("data-state", state);
      el.hidden = false;
      tr(el, "delivery_" + state);
      var reported = mine.map(function (r) { return r.dlr_at; }).filter(Boolean).sort();
      var segments = mine.reduce(function (sum, r) { return sum + (Number(r.segments) || 0); }, 0);
      var title = t("deliveryPieces", { n: segments });
      if (reported.length) title += " · " + t("deliveryReportAt", { at: HL.fmtTime(reported[reported.length - 1]) });
      el.setAttribute("title", title);
    });
    conv.deliveryOpen = open || rows.some(function (r) {
      return r.status === "sending" || (r.status === "sent" && !FINAL_REPORTS[r.dlr_state]);
    });
  }

  /**
   * The files the citizen sent (a channel with attachments: email), from the channel's
   * staff route; each is a download through the same session (the server audits it).
   */
  function loadAttachments(conv) {
    var box = conv.els.attachmentsBox;
    if (!conv.caps || !conv.caps.attachments || !conv.channel) { box.hidden = true; return; }
    api("GET", channelApi(conv, "/conversations/" + encodeURIComponent(conv.id) + "/attachments")).then(function (r) {
      if (convs[conv.id] !== conv) return;
      var list = conv.els.attachments;
      HL.clear(list);
      var rows = r.ok && r.data ? HL.listFrom(r.data, ["attachments"]) : [];
      box.hidden = !rows.length && r.ok;
      if (!r.ok) {
        list.appendChild(h("li", { className: "error", text: HL.errorText(r) }));
        return;
      }
      rows.forEach(function (a) {
        if (!a || typeof a !== "object" || typeof a.url !== "string" || a.url.indexOf("/api/channels/") !== 0) return;
        var link = h("a", { href: a.url, download: String(a.filename || ""), testid: "attachment-link", text: String(a.filename || "") });
        var size = Number(a.size) || 0;
        var meta = h("span", { className: "muted", text: " " + String(a.content_type || "") + " · " + fmtBytes(size) });
        list.appendChild(h("li", { testid: "attachment" }, [link, meta]));
      });
    });
  }

  function fmtBytes(n) {
    if (n >= 1048576) return (n / 1048576).toFixed(1) + " MB";
    return Math.max(1, Math.round(n / 1024)) + " KB";
  }

  // ----------------------------------------------------------- side boxes
  var FIELD_ORDER = ["case_kind", "summary", "person", "unit", "position", "details", "when", "place", "evidence", "anonymous"];

  function renderFields(el, fields) {
    HL.clear(el);
    var names = fields && typeof fields === "object" ? Object.keys(fields) : [];
    names.sort(function (a, b) {
      var ia = FIELD_ORDER.indexOf(a), ib = FIELD_ORDER.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || (a < b ? -1 : a > b ? 1 : 0);
    });
    if (!names.length) { el.appendChild(h("p", { className: "muted", i18n: "none" })); return; }
    names.forEach(function (name) {
      var v = fields[name];
      var label = h("span", { className: "k" });
      if (HL.has("field_" + name)) tr(label, "field_" + name);
      else label.textContent = name;
      var value = v == null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
      el.appendChild(h("div", { className: "field", testid: "field", "data-name": name }, [label, ": ", h("span", { className: "v", text: value })]));
    });
  }

  function renderIdentityState(conv) {
    var els = conv.els;
    var mode = conv.detail.identity;
    els.identityReveal.hidden = mode !== "revealable" || !els.identityValue.hidden;
    var key = mode === "revealable" ? "identityRevealable" : mode === "hidden" ? "identityHidden" : "identityNone";
    tr(els.identityState, key);
    els.identityState.setAttribute("data-identity", mode || "none");
  }

  function revealIdentity(conv) {
    var els = conv.els;
    els.identityReveal.disabled = true;
    api("POST", "/api/conversations/" + encodeURIComponent(conv.id) + "/identity", {}).then(function (r) {
      els.identityReveal.disabled = false;
      if (!r.ok || !r.data) { HL.say(els.identityError, HL.errorText(r)); return; }
      HL.say(els.identityError, "");
      var ident = r.data.identity || {};
      HL.clear(els.identityValue);
      ["name", "phone", "id_number"].forEach(function (k) {
        els.identityValue.appendChild(h("div", { className: "field", "data-name": k }, [
          h("span", { className: "k", i18n: "ident_" + k }), ": ", h("span", { className: "v", text: ident[k] == null ? "—" : String(ident[k]) })
        ]));
      });
      els.identityValue.hidden = false;
      els.identityReveal.hidden = true;
    });
  }

  function renderHistory(conv, contact) {
    var el = conv.els.history;
    HL.clear(el);
    if (!contact || typeof contact !== "object") { el.appendChild(h("p", { className: "muted", i18n: "none" })); return; }
    var badges = h("p", { className: "badges" });
    if (contact.vip) badges.appendChild(h("span", { className: "badge vip", i18n: "vip" }));
    if (contact.blacklisted) badges.appendChild(h("span", { className: "badge blocked", i18n: "blacklisted" }));
    if (badges.firstChild) el.appendChild(badges);
    renderLinks(conv, contact, el);

    var prev = Array.isArray(contact.previous) ? contact.previous : [];
    el.appendChild(h("h5", { i18n: "previousConversations", i18nArgs: { n: prev.length } }));
    var ul = h("ul", { className: "plain" });
    prev.forEach(function (p) {
      var line = [HL.fmtTime(p.created_at), HL.tOr("cstate_" + p.state, p.state || "")];
      if (p.disposition) line.push(HL.tOr("disp_" + p.disposition, p.disposition));
      if (p.rating != null) line.push(t("rating", { n: p.rating }));
      if (p.channel) line.unshift(HL.tOr("channel_" + p.channel, String(p.channel)));
      ul.appendChild(h("li", { testid: "history-previous", "data-conversation-id": p.id, "data-channel": p.channel || "" }, [
        h("button", { type: "button", className: "link", text: line.filter(Boolean).join(" · "), onclick: function () { openConversation(p.id, "readonly", true); } })
      ]));
    });
    el.appendChild(ul);

    var tickets = Array.isArray(contact.tickets) ? contact.tickets : [];
    el.appendChild(h("h5", { i18n: "contactTickets", i18nArgs: { n: tickets.length } }));
    var tl = h("ul", { className: "plain" });
    tickets.forEach(function (tk) {
      tl.appendChild(h("li", { testid: "contact-ticket", "data-case-code": tk.case_code }, [
        String(tk.case_code || "") + " · " + HL.tOr("kind_" + tk.kind, tk.kind || "") + " · " +
        HL.tOr("tstatus_" + tk.status, tk.status || "") + " · " + HL.fmtTime(tk.created_at)
      ]));
    });
    el.appendChild(tl);
  }

  // The contacts linked with this one: the same citizen on another channel (the same
  // number, a code the citizen typed back, or a supervisor). Channels, never addresses.
  // The agent holding the conversation or a supervisor may undo a link; a supervisor may
  // link this contact with another conversation's. The server decides either way.
  function renderLinks(conv, contact, el) {
    var links = Array.isArray(contact.links) ? contact.links : [];
    var els = conv.els;
    el.appendChild(h("h5", { i18n: "contactLinks", i18nArgs: { n: links.length } }));
    var ul = h("ul", { className: "plain contact-links", testid: "contact-links" });
    var mayUndo = HL.supervising(HL.user()) || conv.mode === "live";
    links.forEach(function (link) {
      if (!link || typeof link !== "object") return;
      var how = link.how == null ? "" : String(link.how);
      var line = [HL.tOr("channel_" + link.channel, String(link.channel || "")), HL.tOr("linkHow_" + how, how)];
      if (link.at) line.push(HL.fmtTime(link.at));
      if (how === "supervisor" && link.by) line.push(t("linkBy", { who: String(link.by) }));
      var undo = h("button", {
        type: "button", className: "small", testid: "contact-unlink", i18n: "unlink", hidden: !mayUndo,
        onclick: function () { unlinkContact(conv, String(link.contact_id), undo); }
      });
      ul.appendChild(h("li", { testid: "contact-link", "data-contact-id": link.contact_id, "data-channel": link.channel || "", "data-how": how }, [
        h("span", { text: line.filter(Boolean).join(" · ") }), " ", undo
      ]));
    });
    if (!links.length) ul.appendChild(h("li", { className: "muted", i18n: "none" }));
    el.appendChild(ul);
    if (!els.linkError) els.linkError = h("p", { className: "error", testid: "contact-link-error", role: "alert", hidden: true });
    el.appendChild(els.linkError);
    if (!HL.supervising(HL.user())) return;
    if (!els.linkForm) {
      // Built once, so a reload of the detail keeps what the supervisor is typing.
      els.linkInput = h("input", {
        type: "text", testid: "contact-link-conversation", maxlength: "64", autocomplete: "off",
        i18nPlaceholder: "linkConversation", i18nLabel: "linkConversation"
      });
      var submit = h("button", { type: "submit", className: "small", testid: "contact-link-submit", i18n: "linkSubmit" });
      els.linkForm = h("form", { className: "inline-form", testid: "contact-link-form" }, [els.linkInput, submit]);
      els.linkForm.addEventListener("submit", function (ev) { ev.preventDefault(); linkContact(conv, submit); });
    }
    el.appendChild(els.linkForm);
  }

  function contactId(conv) {
    var c = conv.detail && conv.detail.contact;
    return c && typeof c.id === "string" ? c.id : null;
  }

  function linkContact(conv, button) {
    var id = contactId(conv), other = conv.els.linkInput.value.trim();
    if (!id) return;
    if (!other) { HL.sayKey(conv.els.linkError, "linkMissing"); return; }
    button.disabled = true;
    api("POST", "/api/contacts/" + encodeURIComponent(id) + "/links", { conversation_id: other }).then(function (r) {
      button.disabled = false;
      if (!r.ok) { HL.say(conv.els.linkError, HL.errorText(r)); return; }
      HL.say(conv.els.linkError, "");
      conv.els.linkInput.value = "";
      loadConversation(conv);
    });
  }

  function unlinkContact(conv, id, button) {
    button.disabled = true;
    api("DELETE", "/api/contacts/" + encodeURIComponent(id) + "/link").then(function (r) {
      button.disabled = false;
      if (!r.ok) { HL.say(conv.els.linkError, HL.errorText(r)); return; }
      HL.say(conv.els.linkError, "");
      loadConversation(conv);
    });
  }

  function renderSuggestions(conv, list) {
    var el = conv.els.suggestions;
    HL.clear(el);
    list = Array.isArray(list) ? list : [];
    if (!list.length) { el.appendChild(h("li", { className: "muted", i18n: "none" })); return; }
    list.forEach(function (s) { el.appendChild(snippetItem(conv, s, "suggestion", "suggestion-insert")); });
  }

  /** A KB article as a list item with an "insert" button (suggestions and search). */
  function snippetItem(conv, a, testid, insertId) {
    var snippet = a.snippet == null ? "" : String(a.snippet);
    return h("li", { className: "snippet", testid: testid, "data-article-id": a.id }, [
      h("strong", { text: a.title == null ? "" : String(a.title) }),
      h("p", { text: snippet }),
      h("button", { type: "button", className: "small", testid: insertId, i18n: "insert", hidden: conv.mode !== "live" || conv.realtime, onclick: function () { insertText(conv, snippet); } })
    ]);
  }

  function kbSearch(conv, q, results, msg) {
    HL.clear(results);
    if (!q) return;
    HL.sayKey(msg, "searching");
    var c = (conv.detail && conv.detail.conversation) || {};
    var url = "/api/kb/search?q=" + encodeURIComponent(q);
    if (c.language === "zh" || c.language === "en") url += "&lang=" + c.language;
    api("GET", url).then(function (r) {
      if (!r.ok) { HL.say(msg, HL.errorText(r)); return; }
      var list = HL.listFrom(r.data, ["results"]);
      if (list.length) HL.say(msg, ""); else HL.sayKey(msg, "noResults");
      list.forEach(function (a) { results.appendChild(snippetItem(conv, a, "kb-result", "kb-insert")); });
    });
  }

  // ------------------------------------------------------- canned / queues
  function loadCanned(conv) {
    var c = conv.detail && conv.detail.conversation;
    var lang = c && (c.language === "zh" || c.language === "en") ? c.language : HL.lang();
    conv.cannedLang = lang;
    if (!cannedCache[lang]) {
      cannedCache[lang] = api("GET", "/api/canned?lang=" + lang).then(function (r) {
        if (!r.ok) { delete cannedCache[lang]; return []; }
        return HL.listFrom(r.data, ["canned", "replies", "items", "results"]);
      });
    }
    cannedCache[lang].then(function (list) {
      var sel = conv.els.canned;
      while (sel.options.length > 1) sel.remove(1);
      conv.els.cannedItems = list;
      list.forEach(function (item, i) { sel.appendChild(HL.option(String(i), item.title || item.text || "")); });
      sel.disabled = !list.length;
    });
  }

  /**
   * Fill the transfer form's queue list from GET /api/queues (agents may read it, to
   * pick transfer targets). Should that fail, the queues seen so far (the chats' and
   * offers' queue ids) are offered, and the next chat asks again.
   */
  function loadQueues(conv) {
    if (!queuesPromise) {
      queuesPromise = api("GET", "/api/queues").then(function (r) {
        if (!r.ok) { queuesPromise = null; return knownQueues(); }
        return HL.listFrom(r.data, ["queues"]);
      });
    }
    queuesPromise.then(function (list) {
      var sel = conv.els.transferQueue;
      var keep = sel.value;
      while (sel.options.length > 1) sel.remove(1);
      list.forEach(function (q) { if (q && q.id != null) sel.appendChild(HL.option(String(q.id), q.name ? q.name + " (" + q.id + ")" : q.id)); });
      sel.value = keep;
      if (sel.value !== keep) sel.value = "";
    });
  }

  function knownQueues() {
    var seen = {};
    Object.keys(convs).forEach(function (id) {
      var c = convs[id].detail && convs[id].detail.conversation;
      if (c && c.queue_id) seen[c.queue_id] = true;
    });
    Object.keys(offers).forEach(function (id) { if (offers[id].data.queue_id) seen[offers[id].data.queue_id] = true; });
    return Object.keys(seen).sort().map(function (id) { return { id: id }; });
  }

  // --------------------------------------------------------------- actions
  function conversationPost(conv, action, body) {
    return api("POST", "/api/conversations/" + encodeURIComponent(conv.id) + "/" + action, body);
  }

  function transfer(conv, button) {
    var els = conv.els;
    var body = {};
    if (els.transferQueue.value) body.queue_id = els.transferQueue.value;
    if (els.transferAgent.value.trim()) body.agent_id = els.transferAgent.value.trim();
    // A call may also go to an outside number: digits with an optional leading +, at
    // most 32 characters (spaces, dashes, dots and brackets people type are dropped first).
    var number = conv.realtime ? els.transferNumber.value.replace(/[\s\-().]/g, "") : "";
    if (number) {
      if (!PHONE_NUMBER.test(number)) { HL.sayKey(els.transferError, "transferNumberBad"); return; }
      if (body.queue_id || body.agent_id) { HL.sayKey(els.transferError, "transferOneTarget"); return; }
      body.number = number;
    }
    if (els.transferNote.value.trim()) body.note = els.transferNote.value.trim();
    if (!body.queue_id && !body.agent_id && !body.number) {
      HL.sayKey(els.transferError, conv.realtime ? "transferMissingCall" : "transferMissing");
      return;
    }
    button.disabled = true;
    HL.say(els.transferError, "");
    conversationPost(conv, "transfer", body).then(function (r) {
      button.disabled = false;
      if (!r.ok) { HL.say(els.transferError, HL.errorText(r)); return; }
      els.transferNumber.value = "";
      var notice = "transferred";
      if (conv.realtime) notice = body.number ? "callTransferredOut" : "callTransferred";
      setMode(conv, "unassigned", notice);
    });
  }

  function createTicket(conv, button) {
    var els = conv.els;
    var summary = els.ticketSummary.value.trim();
    if (!summary) { HL.sayKey(els.ticketError, "ticketMissing"); return; }
    button.disabled = true;
    HL.say(els.ticketError, "");
    conversationPost(conv, "ticket", { kind: els.ticketKind.value, fields: { summary: summary } }).then(function (r) {
      button.disabled = false;
      if (!r.ok || !r.data || !r.data.ticket) { HL.say(els.ticketError, HL.errorText(r)); return; }
      var ticket = r.data.ticket;
      conv.ticketCreated = true;
      els.ticketSummary.value = "";
      els.disposition.value = "ticket_created";
      renderTicket(conv, ticket, ticket.pin);
    });
  }

  /** The case code, and the PIN when just created: it is never shown again. */
  function renderTicket(conv, ticket, pin) {
    var el = conv.els.ticketInfo;
    if (pin == null && el.getAttribute("data-pin-shown") === "1") return; // keep the PIN on screen until hidden
    HL.clear(el);
    el.hidden = false;
    conv.els.ticket.hidden = false;
    el.setAttribute("data-case-code", ticket.case_code || "");
    el.appendChild(h("div", { className: "field" }, [h("span", { className: "k", i18n: "caseCode" }), ": ", h("strong", { testid: "ticket-case-code", text: ticket.case_code || "" })]));
    el.appendChild(h("div", { className: "muted" }, [
      HL.tOr("kind_" + ticket.kind, ticket.kind || "") + " · " + HL.tOr("tstatus_" + ticket.status, ticket.status || "")
    ]));
    if (ticket.reply_due) el.appendChild(h("div", { className: "muted" }, [h("span", { i18n: "replyDue" }), ": " + HL.fmtTime(ticket.reply_due)]));
    if (pin != null) {
      el.setAttribute("data-pin-shown", "1");
      var pinBox = h("div", { className: "pin", testid: "ticket-pin" }, [
        h("div", { className: "field" }, [h("span", { className: "k", i18n: "pin" }), ": ", h("strong", { text: String(pin) })]),
        h("p", { className: "hint", i18n: "pinHint" }),
        h("button", { type: "button", className: "small", testid: "ticket-pin-hide", i18n: "pinDone", onclick: function () { pinBox.remove(); el.removeAttribute("data-pin-shown"); } })
      ]);
      el.appendChild(pinBox);
    }
  }

  function closeConversation(conv, button) {
    var els = conv.els;
    button.disabled = true;
    HL.say(els.closeError, "");
    var disposition = els.disposition.value;
    conversationPost(conv, "close", { disposition: disposition }).then(function (r) {
      button.disabled = false;
      if (!r.ok) { HL.say(els.closeError, HL.errorText(r)); return; }
      enterWrapup(conv, disposition);
    });
  }

  function enterWrapup(conv, disposition) {
    if (conv.mode === "wrapup") return;
    setMode(conv, "wrapup");
    var text = conv.els.wrapup.querySelector(".wrapup-text");
    if (disposition) tr(text, conv.realtime ? "callWrapupWith" : "wrapupWith", { d: HL.tOr("disp_" + disposition, disposition) });
    else tr(text, conv.realtime ? "callWrapup" : "wrapup");
    // A later language switch re-translates the disposition too.
    if (disposition) text.setAttribute("data-disposition", disposition);
    Object.keys(pending).forEach(function (k) { if (pending[k].conv === conv) replyFailed(pending[k], null, "chatClosed"); });
    conv.panel.querySelectorAll('[data-testid="suggestion-insert"],[data-testid="kb-insert"]').forEach(function (b) { b.hidden = true; });
  }

  // --------------------------------------------------------------- history
  function searchHistory(ev) {
    ev.preventDefault();
    var q = $("history-search").value.trim();
    var list = $("history-results");
    var msg = $("history-message");
    HL.clear(list);
    HL.sayKey(msg, "searching");
    var url = "/api/conversations?state=closed&mine=1&limit=50";
    if (q) url += "&q=" + encodeURIComponent(q);
    api("GET", url).then(function (r) {
      if (!r.ok) { HL.say(msg, HL.errorText(r)); return; }
      var items = HL.listFrom(r.data, ["conversations"]);
      if (items.length) HL.say(msg, ""); else HL.sayKey(msg, "noResults");
      items.forEach(function (c) { list.appendChild(historyItem(c)); });
    });
  }

  function historyItem(c) {
    var head = [HL.fmtTime(c.closed_at || c.created_at), HL.tOr("channel_" + c.channel, c.channel || "")];
    if (c.intent) head.push(HL.tOr("intent_" + c.intent, c.intent));
    if (c.disposition) head.push(HL.tOr("disp_" + c.disposition, c.disposition));
    return h("li", { testid: "history-result", "data-conversation-id": c.id }, [
      h("button", { type: "button", className: "history-item", onclick: function () { openConversation(c.id, "readonly", true); } }, [
        h("span", { className: "muted", text: head.filter(Boolean).join(" · ") }),
        h("span", { className: "last-text", text: c.last_text == null ? "" : String(c.last_text) })
      ])
    ]);
  }

  // ------------------------------------------------------------- socket
  function onFrame(f) {
    switch (f.type) {
      case "hello": onHello(f); break;
      case "offer": showOffer(f); break;
      case "offer_withdrawn": {
        // A card showing why accepting failed stays until the agent dismisses it.
        var gone = offers[String(f.conversation_id)];
        if (gone && !gone.dead) removeOffer(gone.id);
        break;
      }
      case "assigned": {
        // Screen pop: the tab opens in front (a call the agent just answered on the
        // phone included; the offer told us it is one before the details load).
        var was = offers[String(f.conversation_id)];
        var known = was && was.data ? was.data : null;
        removeOffer(String(f.conversation_id));
        openConversation(f.conversation_id, "live", true, known);
        break;
      }
      case "call": onCallFrame(f); break;
      case "unassigned": onUnassigned(f); break;
      case "message": onMessageFrame(f); break;
      case "status": applyStatus(f); break;
      case "closed": {
        var conv = convs[String(f.conversation_id)];
        if (conv && conv.mode === "live") enterWrapup(conv, null);
        break;
      }
      case "ack": onAck(f); break;
      case "error": onSocketError(f); break;
      default: break; // pong, queues and anything newer
    }
  }

  /** Restore the screen after a (re)connect: status, held chats and the offer. */
  function onHello(f) {
    if (f.status) applyStatus(f.status);
    restoreHeld(Array.isArray(f.conversations) ? f.conversations : []);
    var offerId = f.offer && f.offer.conversation_id != null ? String(f.offer.conversation_id) : null;
    Object.keys(offers).forEach(function (id) { if (id !== offerId && !offers[id].dead) removeOffer(id); });
    if (offerId && !offers[offerId]) showOffer(f.offer);
  }

  function restoreHeld(ids) {
    var held = {};
    ids.forEach(function (id) { held[String(id)] = true; openConversation(id, "live", false); });
    // Live tabs the server no longer gives us ended or moved while we were away.
    Object.keys(convs).forEach(function (id) {
      var conv = convs[id];
      if (conv.mode === "live" && !held[id]) { setMode(conv, "unassigned", "unassigned_other"); loadConversation(conv); }
    });
  }

  function onUnassigned(f) {
    var conv = convs[String(f.conversation_id)];
    if (!conv || conv.mode !== "live") return;
    setMode(conv, "unassigned", HL.has("unassigned_" + f.reason) ? "unassigned_" + f.reason : "unassigned_other");
    conv.hangingUp = false;
  }

  function onSocketState(state) {
    HL.showConnection(state);
  }

  // ------------------------------------------------------------- lifecycle
  function tick() {
    renderStatus();
    Object.keys(offers).forEach(function (id) { renderOfferTimes(offers[id]); });
    Object.keys(convs).forEach(function (id) { if (convs[id].realtime && convs[id].call) renderTimer(convs[id]); });
  }

  // ------------------------------------------------------------ phone status
  /** "Phone: registered / not registered" in the top bar; hidden when voice is off (404). */
  function loadPhone(gen) {
    phoneTimer = null;
    api("GET", "/api/agents/me/phone").then(function (r) {
      if (gen !== phoneGen) return; // signed out (or in again) meanwhile
      if (r.ok && r.data && typeof r.data === "object") {
        phoneInfo = r.data;
        renderPhone();
      } else if (r.status === 404 || r.status === 403 || r.status === 401) {
        // No voice on this hub, or not for this role: asking again will not change it.
        phoneInfo = null;
        $("phone-status").hidden = true;
        return;
      }
      // A network error keeps the last answer on screen until the next try.
      phoneTimer = setTimeout(function () { loadPhone(gen); }, PHONE_EVERY);
    });
  }

  function renderPhone() {
    var el = $("phone-status");
    if (!phoneInfo) { el.hidden = true; return; }
    var registered = phoneInfo.registered === true;
    el.setAttribute("data-registered", registered ? "true" : "false");
    tr(el, registered ? "phone_registered" : "phone_unregistered");
    el.setAttribute("title", t("phoneTitle", {
      endpoint: phoneInfo.endpoint == null ? "—" : String(phoneInfo.endpoint),
      server: phoneInfo.sip_server == null ? "—" : String(phoneInfo.sip_server)
    }));
    el.hidden = false;
  }

  function signedIn(user) {
    $("to-supervisor").hidden = !HL.supervising(user);
    $("to-calls").hidden = false;
    phoneGen++;
    loadPhone(phoneGen);
    api("GET", "/api/agents/me").then(function (r) {
      if (!r.ok || !r.data) return;
      if (r.data.status) applyStatus(r.data.status);
      restoreHeld(Array.isArray(r.data.conversations) ? r.data.conversations : []);
      if (r.data.offer) showOffer(r.data.offer);
    });
    socket = HL.Socket("/ws/agent", onFrame, onSocketState);
    ticker = setInterval(tick, 1000);
  }

  function signedOut() {
    if (socket) { socket.stop(); socket = null; }
    clearInterval(ticker);
    phoneGen++;
    clearTimeout(phoneTimer);
    phoneTimer = null;
    phoneInfo = null;
    $("phone-status").hidden = true;
    $("to-calls").hidden = true;
    Object.keys(offers).forEach(removeOffer);
    Object.keys(pending).forEach(function (k) { clearTimeout(pending[k].timer); delete pending[k]; });
    Object.keys(convs).forEach(function (id) { stopTimers(convs[id]); convs[id].tab.remove(); convs[id].panel.remove(); delete convs[id]; });
    activeId = null;
    cannedCache = {};
    queuesPromise = null;
    HL.clear($("history-results"));
    updateEmpty();
    applyStatus({ state: "offline", reason: null });
    $("connection").hidden = true;
  }

  function onLangChange() {
    document.title = baseTitle();
    renderStatus();
    renderPhone();
    Object.keys(convs).forEach(function (id) {
      var conv = convs[id];
      renderTabLabel(conv);
      if (conv.detail) { renderMeta(conv); renderHistory(conv, conv.detail.contact); }
      var wrap = conv.els.wrapup.querySelector(".wrapup-text");
      var d = wrap.getAttribute("data-disposition");
      if (d) tr(wrap, conv.realtime ? "callWrapupWith" : "wrapupWith", { d: HL.tOr("disp_" + d, d) });
      if (conv.realtime) { renderIvrPath(conv); renderTimer(conv); }
      renderDeliveries(conv);
    });
  }

  function init() {
    $("status-select").addEventListener("change", postStatus);
    $("break-reason").addEventListener("change", function () { if ($("status-select").value === "break") postStatus(); });
    $("history-form").addEventListener("submit", searchHistory);
    HL.onLang(onLangChange);
    renderStatus();
    HL.start({ onSignedIn: signedIn, onSignedOut: signedOut });
  }

  init();
})();
