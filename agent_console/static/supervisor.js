/*!
 * hotline supervisor page (/console/supervisor).
 *
 * Queue and agent figures from GET /api/supervisor/overview every 2 s, and the queue
 * table also from `queues` frames on /ws/agent. Rows are keyed by id and updated in
 * place, so a button is never swapped out from under a click.
 */
(function () {
  "use strict";

  var HL = window.HL;
  var t = HL.t, tr = HL.tr, h = HL.h, api = HL.api;

  var REFRESH_MS = 2000;
  // Queue table columns, in order: cell name -> data-testid.
  var QUEUE_CELLS = [
    ["name", "sup-queue-name"], ["waiting", "sup-waiting"], ["offered", "sup-offered"],
    ["longest", "sup-longest"], ["overflowed", "sup-overflowed"], ["logged_in", "sup-logged-in"],
    ["ready", "sup-ready"]
  ];

  var socket = null;
  var timer = null;
  var ticker = null;
  var running = false;
  var queueRows = {};   // queue id -> {row, cells}
  var agentRows = {};   // agent id -> {row, cells, data, fetchedAt}

  function $(id) { return document.getElementById(id); }

  // ---------------------------------------------------------------- polling
  function refresh() {
    timer = null;
    if (!running) return;
    api("GET", "/api/supervisor/overview").then(function (r) {
      if (!running) return;
      if (r.ok && r.data) {
        HL.say($("sup-error"), "");
        renderQueues(HL.listFrom(r.data, ["queues"]));
        renderAgents(HL.listFrom(r.data, ["agents"]));
        tr($("sup-updated"), "updatedAt", { time: new Date().toLocaleTimeString(HL.lang() === "zh" ? "zh-CN" : "en-GB", { hour12: false }) });
      } else {
        HL.say($("sup-error"), HL.errorText(r));
      }
      // 403 will not change by asking again every 2 s.
      if (r.status !== 403) timer = setTimeout(refresh, REFRESH_MS);
    });
  }

  function refreshSoon() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 0);
  }

  // ----------------------------------------------------------------- queues
  function renderQueues(queues) {
    var body = $("sup-queues");
    var seen = {};
    queues.forEach(function (q) {
      if (!q || q.id == null) return;
      var id = String(q.id);
      seen[id] = true;
      var entry = queueRows[id] || (queueRows[id] = newQueueRow(id));
      var c = entry.cells;
      c.name.textContent = q.name ? String(q.name) : id;
      c.name.setAttribute("title", id);
      c.waiting.textContent = num(q.waiting);
      c.offered.textContent = num(q.offered);
      c.longest.textContent = HL.fmtDuration(q.longest_wait_seconds);
      c.overflowed.textContent = num(q.overflowed);
      c.logged_in.textContent = num(q.agents_logged_in);
      c.ready.textContent = num(q.agents_ready);
      entry.row.classList.toggle("alert", Number(q.waiting) > 0 && Number(q.agents_ready) === 0);
      body.appendChild(entry.row); // keeps server order; moving a node keeps its listeners
    });
    dropMissing(queueRows, seen);
    $("sup-queues-empty").hidden = Object.keys(queueRows).length > 0;
  }

  function newQueueRow(id) {
    var cells = {};
    var row = h("tr", { testid: "sup-queue", "data-queue-id": id });
    QUEUE_CELLS.forEach(function (col) {
      cells[col[0]] = h("td", { className: col[0] === "name" ? "" : "num", testid: col[1] });
      row.appendChild(cells[col[0]]);
    });
    return { row: row, cells: cells };
  }

  function num(v) { return v == null ? "—" : String(v); }

  function dropMissing(rows, seen) {
    Object.keys(rows).forEach(function (id) {
      if (!seen[id]) { rows[id].row.remove(); delete rows[id]; }
    });
  }

  // ----------------------------------------------------------------- agents
  function renderAgents(agents) {
    var body = $("sup-agents");
    var seen = {};
    agents.forEach(function (a) {
      if (!a || a.id == null) return;
      var id = String(a.id);
      seen[id] = true;
      var entry = agentRows[id] || (agentRows[id] = newAgentRow(id));
      entry.data = a;
      entry.fetchedAt = Date.now();
      fillAgentRow(entry);
      body.appendChild(entry.row);
    });
    dropMissing(agentRows, seen);
    $("sup-agents-empty").hidden = Object.keys(agentRows).length > 0;
    fillAgentChoices();
  }

  function newAgentRow(id) {
    var c = {
      name: h("td", { testid: "sup-agent-name" }),
      state: h("td", {}, []),
      reason: h("td", { testid: "sup-agent-reason" }),
      time: h("td", { className: "num", testid: "sup-agent-time" }),
      contacts: h("td", { testid: "sup-agent-contacts" }),
      actions: h("td", { className: "actions" })
    };
    c.stateLabel = h("span", { className: "state-pill", testid: "sup-agent-state" });
    c.state.appendChild(c.stateLabel);
    c.forceBreak = h("button", { type: "button", className: "small", testid: "sup-force-break", i18n: "forceBreak", onclick: function () { force(id, "break", c); } });
    c.forceOffline = h("button", { type: "button", className: "small danger", testid: "sup-force-offline", i18n: "forceOffline", onclick: function () { force(id, "offline", c); } });
    c.actions.appendChild(c.forceBreak);
    c.actions.appendChild(c.forceOffline);
    var row = h("tr", { testid: "sup-agent", "data-agent-id": id }, [c.name, c.state, c.reason, c.time, c.contacts, c.actions]);
    return { row: row, cells: c, data: null, fetchedAt: 0 };
  }

  function fillAgentRow(entry) {
    var a = entry.data, c = entry.cells;
    HL.clear(c.name);
    HL.appendAll(c.name, [
      h("span", { text: a.display_name || a.username || a.id }),
      a.display_name && a.username ? h("span", { className: "muted", text: " " + a.username }) : null
    ]);
    c.stateLabel.setAttribute("data-state", a.state || "");
    c.stateLabel.textContent = HL.tOr("state_" + a.state, a.state || "—");
    c.reason.textContent = a.reason ? HL.tOr("reason_" + a.reason, a.reason) : "";
    HL.clear(c.contacts);
    (Array.isArray(a.conversations) ? a.conversations : []).forEach(function (cid) {
      // Clicking a contact puts it into the reassign form.
      c.contacts.appendChild(h("button", {
        type: "button", className: "chip", testid: "sup-agent-contact", "data-conversation-id": cid, text: String(cid).slice(0, 8),
        title: String(cid), onclick: function () { $("sup-reassign-conversation").value = String(cid); }
      }));
    });
    c.forceBreak.disabled = a.state === "break" || a.state === "offline";
    c.forceOffline.disabled = a.state === "offline";
    renderAgentTime(entry);
  }

  function renderAgentTime(entry) {
    var a = entry.data;
    if (!a) return;
    var secs;
    if (a.seconds_in_state != null) secs = Number(a.seconds_in_state) + (Date.now() - entry.fetchedAt) / 1000;
    else {
      var since = HL.parseTime(a.since);
      secs = since ? (Date.now() - since.getTime()) / 1000 : 0;
    }
    entry.cells.time.textContent = HL.fmtDuration(secs);
  }

  function force(id, state, cells) {
    var body = { status: state };
    if (state === "break") body.reason = $("sup-break-reason").value;
    cells.forceBreak.disabled = true;
    cells.forceOffline.disabled = true;
    api("POST", "/api/supervisor/agents/" + encodeURIComponent(id) + "/status", body).then(function (r) {
      if (!r.ok) {
        HL.say($("sup-error"), HL.errorText(r));
        if (agentRows[id]) fillAgentRow(agentRows[id]);
        return;
      }
      HL.say($("sup-error"), "");
      refreshSoon();
    });
  }

  // --------------------------------------------------------------- reassign
  /** The agent <select>, rebuilt only when the set of agents changes. */
  function fillAgentChoices() {
    var sel = $("sup-reassign-agent");
    var ids = Object.keys(agentRows);
    var signature = ids.map(function (id) { var a = agentRows[id].data; return id + "=" + (a.display_name || a.username || ""); }).join("|");
    if (sel.getAttribute("data-signature") === signature) return;
    var keep = sel.value;
    while (sel.options.length > 1) sel.remove(1);
    ids.forEach(function (id) {
      var a = agentRows[id].data;
      sel.appendChild(HL.option(id, (a.display_name || a.username || id) + (a.username ? " (" + a.username + ")" : "")));
    });
    sel.setAttribute("data-signature", signature);
    if (keep && agentRows[keep]) sel.value = keep;

    var list = $("sup-conversation-ids");
    HL.clear(list);
    ids.forEach(function (id) {
      (agentRows[id].data.conversations || []).forEach(function (cid) { list.appendChild(HL.option(String(cid), String(cid))); });
    });
  }

  function reassign(ev) {
    ev.preventDefault();
    var cid = $("sup-reassign-conversation").value.trim();
    var agent = $("sup-reassign-agent").value;
    var out = $("sup-reassign-result");
    out.classList.remove("error");
    if (!cid || !agent) { out.classList.add("error"); HL.sayKey(out, "reassignMissing"); return; }
    var btn = $("sup-reassign-submit");
    btn.disabled = true;
    api("POST", "/api/conversations/" + encodeURIComponent(cid) + "/reassign", { agent_id: agent }).then(function (r) {
      btn.disabled = false;
      if (!r.ok) { out.classList.add("error"); HL.say(out, HL.errorText(r)); return; }
      HL.sayKey(out, "reassigned");
      $("sup-reassign-conversation").value = "";
      refreshSoon();
    });
  }

  // --------------------------------------------------------------- lifecycle
  function onFrame(f) {
    if (f.type === "queues" && Array.isArray(f.queues)) renderQueues(f.queues);
  }

  function tick() {
    Object.keys(agentRows).forEach(function (id) { renderAgentTime(agentRows[id]); });
  }

  function signedIn() {
    running = true;
    refresh();
    socket = HL.Socket("/ws/agent", onFrame, HL.showConnection);
    ticker = setInterval(tick, 1000);
  }

  function signedOut() {
    running = false;
    clearTimeout(timer);
    clearInterval(ticker);
    if (socket) { socket.stop(); socket = null; }
    dropMissing(queueRows, {});
    dropMissing(agentRows, {});
    $("connection").hidden = true;
  }

  function onLangChange() {
    document.title = t("supervisorTitle");
    Object.keys(agentRows).forEach(function (id) { fillAgentRow(agentRows[id]); });
    $("sup-reassign-agent").removeAttribute("data-signature");
    if (Object.keys(agentRows).length) fillAgentChoices();
  }

  function init() {
    $("sup-reassign-form").addEventListener("submit", reassign);
    HL.onLang(onLangChange);
    HL.start({ onSignedIn: signedIn, onSignedOut: signedOut });
  }

  init();
})();
