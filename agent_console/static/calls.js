/*!
 * hotline call records (/console/calls).
 *
 * Search the call records (GET /api/calls), page through them 50 at a time and listen
 * to a call's recording in an <audio> element: the server streams
 * /api/recordings/{id}/audio with range requests and the session cookie
 * authenticates it. Caller numbers, names and IVR values are data: text only.
 */
(function () {
  "use strict";

  var HL = window.HL;
  var t = HL.t, tr = HL.tr, h = HL.h, api = HL.api;

  var LIMIT = 50;
  // Offered in the outcome filter (the values GET /api/calls accepts); a value not
  // listed here is still shown as it came.
  var DISPOSITIONS = ["completed", "caller_hangup", "abandoned", "transferred_out", "message", "refused", "failed"];

  var query = null;        // the filters of the last search (paging keeps them)
  var offset = 0;
  var total = 0;
  var calls = [];
  var searchSeq = 0;       // only the newest search's answer is shown
  var playSeq = 0;         // only the newest Play press reaches the player
  var playing = null;      // the call whose recording is in the player: "call id|recording id"
  var queueNames = {};     // queue id -> name
  var agentNames = {};     // user id -> name
  var running = false;

  function $(id) { return document.getElementById(id); }

  function dash(v) { return v == null || v === "" ? "—" : String(v); }

  // ---------------------------------------------------------------- filters
  function fillDispositions() {
    var sel = $("calls-disposition");
    DISPOSITIONS.forEach(function (d) { sel.appendChild(HL.option(d, "", "calldisp_" + d)); });
  }

  function dispositionText(d) {
    if (d == null || d === "") return "—";
    return HL.tOr("calldisp_" + d, HL.tOr("disp_" + d, d));
  }

  function replaceOptions(sel, list) {
    var keep = sel.value;
    while (sel.options.length > 1) sel.remove(1);
    list.forEach(function (o) { sel.appendChild(o); });
    sel.value = keep;
    if (sel.value !== keep) sel.value = "";
  }

  /**
   * The queue and agent choices. Agents may read GET /api/queues; GET /api/users is
   * for supervisors and admins, so an agent gets "all" and themself.
   */
  function loadChoices(user) {
    api("GET", "/api/queues").then(function (r) {
      if (!running || !r.ok) return; // the filter stays at "all queues"
      queueNames = {};
      var options = [];
      HL.listFrom(r.data, ["queues"]).forEach(function (q) {
        if (!q || q.id == null) return;
        queueNames[String(q.id)] = q.name ? String(q.name) : String(q.id);
        options.push(HL.option(String(q.id), q.name ? q.name + " (" + q.id + ")" : q.id));
      });
      replaceOptions($("calls-queue"), options);
      if (calls.length) renderRows();
    });
    var sel = $("calls-agent");
    if (HL.supervising(user)) {
      api("GET", "/api/users").then(function (r) {
        if (!running || !r.ok) return;
        agentNames = {};
        var options = [];
        HL.listFrom(r.data, ["users"]).forEach(function (u) {
          if (!u || u.id == null || u.role === "editor") return;
          var name = u.display_name || u.username || u.id;
          agentNames[String(u.id)] = String(name);
          options.push(HL.option(String(u.id), u.display_name && u.username ? u.display_name + " (" + u.username + ")" : name));
        });
        replaceOptions(sel, options);
        if (calls.length) renderRows();
      });
    } else if (user.id != null) {
      replaceOptions(sel, [HL.option(String(user.id), "", "callsAgentMe")]);
    }
  }

  /** The form as query parameters, or {error: key}. Local datetime-local → ISO (UTC). */
  function readForm() {
    var q = {};
    var from = $("calls-from").value, to = $("calls-to").value;
    var fromD = from ? new Date(from) : null;
    var toD = to ? new Date(to) : null;
    if ((fromD && isNaN(fromD.getTime())) || (toD && isNaN(toD.getTime()))) return { error: "callsRangeBad" };
    if (fromD && toD && fromD.getTime() > toD.getTime()) return { error: "callsRangeBad" };
    if (fromD) q.from = fromD.toISOString();
    if (toD) q.to = toD.toISOString();
    if ($("calls-agent").value) q.agent_id = $("calls-agent").value;
    if ($("calls-queue").value) q.queue_id = $("calls-queue").value;
    var caller = $("calls-caller").value.trim();
    if (caller) q.caller = caller;
    if ($("calls-disposition").value) q.disposition = $("calls-disposition").value;
    return { query: q };
  }

  function submit(ev) {
    ev.preventDefault();
    var read = readForm();
    if (read.error) { HL.sayKey($("calls-error"), read.error); return; }
    query = read.query;
    search(0);
  }

  function reset() {
    $("calls-form").reset();
    HL.say($("calls-error"), "");
    query = {};
    search(0);
  }

  // ----------------------------------------------------------------- search
  function search(at) {
    var mine = ++searchSeq;
    var params = [];
    Object.keys(query || {}).forEach(function (k) { params.push(k + "=" + encodeURIComponent(query[k])); });
    params.push("limit=" + LIMIT, "offset=" + Math.max(0, at));
    HL.say($("calls-error"), "");
    tr($("calls-total"), "searching");
    $("calls-prev").disabled = true;
    $("calls-next").disabled = true;
    api("GET", "/api/calls?" + params.join("&")).then(function (r) {
      if (mine !== searchSeq || !running) return;
      if (!r.ok || !r.data) {
        HL.say($("calls-error"), HL.errorText(r));
        $("calls-total").textContent = "";
        $("calls-total").removeAttribute("data-i18n");
        renderPager();
        return;
      }
      calls = HL.listFrom(r.data, ["calls"]);
      var n = Number(r.data.total);
      total = isFinite(n) && n >= 0 ? n : calls.length;
      offset = Math.max(0, at);
      renderRows();
    });
  }

  function renderRows() {
    var body = $("calls-rows");
    HL.clear(body);
    calls.forEach(function (c) { if (c && typeof c === "object") body.appendChild(callRow(c)); });
    $("calls-empty").hidden = calls.length > 0;
    tr($("calls-total"), "callsTotal", { n: total });
    renderPager();
  }

  function renderPager() {
    var pages = Math.max(1, Math.ceil(total / LIMIT));
    var page = Math.min(pages, Math.floor(offset / LIMIT) + 1);
    tr($("calls-page"), "callsPage", { page: page, pages: pages });
    $("calls-prev").disabled = offset <= 0;
    $("calls-next").disabled = offset + LIMIT >= total;
  }

  function cell(className, testid, content) {
    var td = h("td", { className: className || null, testid: testid });
    if (content != null && typeof content === "object") td.appendChild(content);
    else td.textContent = dash(content);
    return td;
  }

  function callRow(c) {
    var row = h("tr", { testid: "call-row", "data-call-id": c.id == null ? "" : String(c.id) });
    var started = h("time", { text: HL.fmtTime(c.started_at) || "—" });
    if (c.started_at) started.setAttribute("datetime", String(c.started_at));
    var queue = c.queue_id == null ? null : queueNames[String(c.queue_id)] || c.queue_id;
    var agent = c.agent_name || (c.agent_id == null ? null : agentNames[String(c.agent_id)] || c.agent_id);
    var language = c.language ? HL.tOr("lang_" + c.language, c.language) : null;
    var disposition = h("span", { testid: "call-disposition", "data-disposition": c.disposition || "", text: dispositionText(c.disposition) });
    HL.appendAll(row, [
      cell("", "call-started", started),
      cell("nowrap", "call-caller", c.caller),
      cell("nowrap", "call-dialled", c.dialled),
      cell("", "call-queue", queue),
      cell("", "call-agent", agent),
      cell("num", "call-wait", c.wait_seconds == null ? null : HL.fmtDuration(Number(c.wait_seconds))),
      cell("num", "call-talk", c.talk_seconds == null ? null : HL.fmtDuration(Number(c.talk_seconds))),
      cell("", null, disposition),
      cell("", "call-language", language),
      cell("num", "call-survey", c.survey),
      ivrCell(c),
      recordingCell(c)
    ]);
    row.classList.toggle("playing", !!c.recording && playing === playKey(c));
    return row;
  }

  /** The IVR path in one line; the times are in the tooltip. */
  function ivrCell(c) {
    var path = Array.isArray(c.ivr_path) ? c.ivr_path.filter(function (s) { return s && typeof s === "object"; }) : [];
    var td = h("td", { className: "ivr-cell", testid: "call-ivr" });
    if (!path.length) { td.textContent = "—"; return td; }
    td.textContent = path.map(HL.ivrText).join(" › ");
    td.setAttribute("title", path.map(function (s) { return HL.fmtClock(s.at) + "  " + HL.ivrText(s); }).join("\n"));
    return td;
  }

  function recordingCell(c) {
    var td = h("td", { className: "nowrap", testid: "call-recording" });
    var rec = c.recording;
    if (!rec || typeof rec !== "object" || rec.id == null) { td.textContent = "—"; return td; }
    var id = String(rec.id);
    var on = playing === playKey(c);
    td.appendChild(h("button", {
      type: "button", className: on ? "small primary" : "small", testid: "call-play", "data-recording-id": id,
      "data-play": playKey(c),
      i18n: on ? "playing" : "play", onclick: function () { play(c); }
    }));
    if (rec.duration_seconds != null) td.appendChild(h("span", { className: "muted", text: " " + HL.fmtDuration(Number(rec.duration_seconds)) }));
    return td;
  }

  // ----------------------------------------------------------------- player
  function playKey(c) {
    return String(c.id == null ? "" : c.id) + "|" + String(c.recording && c.recording.id != null ? c.recording.id : "");
  }

  /**
   * Ask for the first bytes before handing the URL to <audio>: a media element only
   * says "error", and a 403 has to read "you may not listen to this recording".
   * Resolves with the HTTP status (0: network).
   */
  function probe(url) {
    return fetch(url, {
      method: "GET", headers: { Range: "bytes=0-1" }, credentials: "same-origin", cache: "no-store"
    }).then(function (res) {
      try { if (res.body && typeof res.body.cancel === "function") res.body.cancel(); } catch (e) { /* done anyway */ }
      return res.status;
    }, function () { return 0; });
  }

  function play(c) {
    var rec = c.recording;
    if (!rec || rec.id == null) return;
    var id = String(rec.id);
    var url = "/api/recordings/" + encodeURIComponent(id) + "/audio";
    var audio = $("player");
    var mine = ++playSeq;
    try { audio.pause(); } catch (e) { /* nothing playing */ }
    HL.say($("player-error"), "");
    playing = playKey(c);
    markPlaying();
    tr($("player-label"), "nowPlaying", { caller: dash(c.caller), time: HL.fmtTime(c.started_at) || "—" });
    probe(url).then(function (status) {
      if (mine !== playSeq) return;
      if (status === 403) { playFailed("recordingForbidden"); return; }
      if (status === 404) { playFailed("recordingMissing"); return; }
      if (status === 401) { playFailedText(HL.errorText({ status: 401, data: { error: "unauthenticated" } })); return; }
      if (status === 0) { playFailedText(HL.errorText({ status: 0, data: null })); return; }
      if (status >= 400 && status !== 416) { playFailedText(t("recordingFailed") + " " + t("err_http", { status: status })); return; }
      audio.setAttribute("data-recording-id", id);
      audio.src = url;
      var p = audio.play();
      if (p && typeof p.catch === "function") p.catch(function () { /* autoplay refused: the controls are there */ });
    });
  }

  function stopPlayer() {
    var audio = $("player");
    try { audio.pause(); } catch (e) { /* not playing */ }
    audio.removeAttribute("src");
    audio.removeAttribute("data-recording-id");
    try { audio.load(); } catch (e) { /* nothing loaded */ }
  }

  function playFailed(key) {
    stopPlayer();
    HL.sayKey($("player-error"), key);
  }

  function playFailedText(text) {
    stopPlayer();
    HL.say($("player-error"), text);
  }

  function onAudioError() {
    var audio = $("player");
    if (!audio.getAttribute("src")) return; // emptied on purpose
    HL.sayKey($("player-error"), "recordingFailed");
  }

  function markPlaying() {
    var buttons = $("calls-rows").querySelectorAll('[data-testid="call-play"]');
    for (var i = 0; i < buttons.length; i++) {
      var on = buttons[i].getAttribute("data-play") === playing;
      tr(buttons[i], on ? "playing" : "play");
      buttons[i].className = on ? "small primary" : "small";
      var row = buttons[i].closest("tr");
      if (row) row.classList.toggle("playing", on);
    }
  }

  // --------------------------------------------------------------- lifecycle
  function signedIn(user) {
    running = true;
    $("to-supervisor").hidden = !HL.supervising(user);
    loadChoices(user);
    var read = readForm();
    query = read.query || {};
    search(0);
  }

  function signedOut() {
    running = false;
    searchSeq++;
    playSeq++;
    playing = null;
    stopPlayer();
    calls = [];
    total = 0;
    offset = 0;
    query = null;
    queueNames = {};
    agentNames = {};
    HL.clear($("calls-rows"));
    replaceOptions($("calls-agent"), []);
    replaceOptions($("calls-queue"), []);
    $("calls-empty").hidden = true;
    $("calls-total").textContent = "";
    $("calls-total").removeAttribute("data-i18n");
    tr($("player-label"), "playerIdle");
    HL.say($("player-error"), "");
    HL.say($("calls-error"), "");
  }

  function onLangChange() {
    document.title = t("callsTitle");
    if (calls.length) renderRows();
  }

  function init() {
    fillDispositions();
    $("calls-form").addEventListener("submit", submit);
    $("calls-reset").addEventListener("click", reset);
    $("calls-prev").addEventListener("click", function () { if (query) search(offset - LIMIT); });
    $("calls-next").addEventListener("click", function () { if (query) search(offset + LIMIT); });
    $("player").addEventListener("error", onAudioError);
    HL.onLang(onLangChange);
    HL.start({ onSignedIn: signedIn, onSignedOut: signedOut });
  }

  init();
})();
