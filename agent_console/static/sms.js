/*!
 * hotline SMS group sends (/console/sms), for supervisors and admins.
 *
 * Templates with placeholders, contact groups and their members, preview and send
 * (now or at a time, in the hotline's time zone), and the sends' progress, polled
 * every 2 s. Everything from the server reaches the page as text (HL.h / textContent).
 */
(function () {
  "use strict";

  var HL = window.HL;
  var t = HL.t, tr = HL.tr, h = HL.h, api = HL.api;

  var REFRESH_MS = 2000;
  var MEMBERS_SHOWN = 100;

  var running = false;
  var timer = null;
  var config = { placeholders: [], timezone: "" };
  var templates = [];
  var groups = [];
  var editing = null;       // template id being edited
  var openGroup = null;     // group id whose members are shown
  var openSend = null;      // send id whose messages are shown
  var previewed = null;     // the request body the last good preview was for
  var sendRows = {};        // send id -> {row, cells}

  function $(id) { return document.getElementById(id); }
  function num(v) { return v == null ? "—" : String(v); }
  function fail(el, r) { HL.say(el, HL.errorText(r)); }

  // -------------------------------------------------------------- templates
  function loadTemplates() {
    return api("GET", "/api/sms/templates").then(function (r) {
      if (!r.ok) { fail($("sms-error"), r); return; }
      templates = HL.listFrom(r.data, ["templates"]);
      renderTemplates();
      fillTemplateChoices();
    });
  }

  function renderTemplates() {
    var body = HL.clear($("sms-templates"));
    templates.forEach(function (tpl) {
      body.appendChild(h("tr", { testid: "sms-template", "data-template-id": String(tpl.id) }, [
        h("td", { testid: "sms-template-name-cell", text: tpl.name || "" }),
        h("td", { className: "sms-text", text: tpl.text_zh || "" }),
        h("td", { className: "sms-text", text: tpl.text_en || "" }),
        h("td", { className: "actions" }, [
          h("button", { type: "button", className: "small", testid: "sms-template-edit", i18n: "smsEdit", onclick: function () { editTemplate(tpl); } }),
          h("button", { type: "button", className: "small danger", testid: "sms-template-delete", i18n: "smsDelete", onclick: function () { deleteTemplate(tpl); } })
        ])
      ]));
    });
    $("sms-templates-empty").hidden = templates.length > 0;
  }

  function editTemplate(tpl) {
    editing = tpl.id;
    $("sms-template-name").value = tpl.name || "";
    $("sms-template-zh").value = tpl.text_zh || "";
    $("sms-template-en").value = tpl.text_en || "";
    tr($("sms-template-form-title"), "smsEditTemplate", { name: tpl.name || "" });
    $("sms-template-cancel").hidden = false;
  }

  function resetTemplateForm() {
    editing = null;
    $("sms-template-name").value = "";
    $("sms-template-zh").value = "";
    $("sms-template-en").value = "";
    tr($("sms-template-form-title"), "smsNewTemplate");
    $("sms-template-cancel").hidden = true;
    HL.say($("sms-template-error"), "");
  }

  function saveTemplate(ev) {
    ev.preventDefault();
    var body = {
      name: $("sms-template-name").value.trim(),
      text_zh: $("sms-template-zh").value.trim() || null,
      text_en: $("sms-template-en").value.trim() || null
    };
    if (!body.name || (!body.text_zh && !body.text_en)) { HL.sayKey($("sms-template-error"), "smsTemplateMissing"); return; }
    var req = editing == null ? api("POST", "/api/sms/templates", body)
      : api("PATCH", "/api/sms/templates/" + encodeURIComponent(editing), body);
    req.then(function (r) {
      if (!r.ok) { fail($("sms-template-error"), r); return; }
      resetTemplateForm();
      loadTemplates();
    });
  }

  function deleteTemplate(tpl) {
    if (!window.confirm(t("smsConfirmDeleteTemplate", { name: tpl.name || "" }))) return;
    api("DELETE", "/api/sms/templates/" + encodeURIComponent(tpl.id)).then(function (r) {
      if (!r.ok) { fail($("sms-error"), r); return; }
      if (editing === tpl.id) resetTemplateForm();
      loadTemplates();
    });
  }

  function renderPlaceholders() {
    var names = (config.placeholders || []).map(function (p) { return "{" + p + "}"; }).join(" ");
    tr($("sms-placeholders"), "smsPlaceholdersHint", { names: names });
    if (config.timezone) tr($("sms-timezone"), "smsTimezone", { tz: config.timezone });
  }

  // ----------------------------------------------------------------- groups
  function loadGroups() {
    return api("GET", "/api/sms/groups").then(function (r) {
      if (!r.ok) { fail($("sms-error"), r); return; }
      groups = HL.listFrom(r.data, ["groups"]);
      renderGroups();
      fillGroupChoices();
    });
  }

  function renderGroups() {
    var body = HL.clear($("sms-groups"));
    groups.forEach(function (g) {
      body.appendChild(h("tr", { testid: "sms-group", "data-group-id": String(g.id) }, [
        h("td", { testid: "sms-group-name-cell", text: g.name || "" }),
        h("td", { className: "num", testid: "sms-group-count", text: num(g.members) }),
        h("td", { className: "actions" }, [
          h("button", { type: "button", className: "small", testid: "sms-group-open", i18n: "smsMembers", onclick: function () { showMembers(g.id); } }),
          h("button", { type: "button", className: "small", testid: "sms-group-rename", i18n: "smsRename", onclick: function () { renameGroup(g); } }),
          h("button", { type: "button", className: "small danger", testid: "sms-group-delete", i18n: "smsDelete", onclick: function () { deleteGroup(g); } })
        ])
      ]));
    });
    $("sms-groups-empty").hidden = groups.length > 0;
    if (openGroup != null && !groups.some(function (g) { return g.id === openGroup; })) {
      openGroup = null;
      $("sms-members").hidden = true;
    }
  }

  function createGroup(ev) {
    ev.preventDefault();
    var name = $("sms-group-name").value.trim();
    if (!name) { HL.sayKey($("sms-error"), "smsGroupMissing"); return; }
    api("POST", "/api/sms/groups", { name: name }).then(function (r) {
      if (!r.ok) { fail($("sms-error"), r); return; }
      HL.say($("sms-error"), "");
      $("sms-group-name").value = "";
      loadGroups().then(function () { if (r.data && r.data.group) showMembers(r.data.group.id); });
    });
  }

  function renameGroup(g) {
    var name = window.prompt(t("smsRenamePrompt"), g.name || "");
    if (name == null || !name.trim()) return;
    api("PATCH", "/api/sms/groups/" + encodeURIComponent(g.id), { name: name.trim() }).then(function (r) {
      if (!r.ok) { fail($("sms-error"), r); return; }
      loadGroups().then(function () { if (openGroup === g.id) showMembers(g.id); });
    });
  }

  function deleteGroup(g) {
    if (!window.confirm(t("smsConfirmDeleteGroup", { name: g.name || "" }))) return;
    api("DELETE", "/api/sms/groups/" + encodeURIComponent(g.id)).then(function (r) {
      if (!r.ok) { fail($("sms-error"), r); return; }
      loadGroups();
    });
  }

  function groupById(id) {
    for (var i = 0; i < groups.length; i++) if (groups[i].id === id) return groups[i];
    return null;
  }

  function showMembers(id) {
    openGroup = id;
    var g = groupById(id);
    $("sms-members").hidden = false;
    tr($("sms-members-title"), "smsMembersOf", { name: g ? g.name : String(id) });
    api("GET", "/api/sms/groups/" + encodeURIComponent(id) + "/members?limit=" + MEMBERS_SHOWN).then(function (r) {
      if (openGroup !== id) return;
      if (!r.ok) { fail($("sms-member-error"), r); return; }
      var body = HL.clear($("sms-member-rows"));
      HL.listFrom(r.data, ["members"]).forEach(function (m) {
        var values = m.fields && typeof m.fields === "object" ? Object.keys(m.fields).map(function (k) { return k + "=" + m.fields[k]; }).join(", ") : "";
        body.appendChild(h("tr", { testid: "sms-member", "data-phone": String(m.phone) }, [
          h("td", { text: m.phone }),
          h("td", { text: m.name || "" }),
          h("td", { text: HL.tOr("lang_" + m.language, m.language) }),
          h("td", { text: values }),
          h("td", { className: "actions" }, [
            h("button", { type: "button", className: "small danger", testid: "sms-member-remove", i18n: "smsRemove", onclick: function () { removeMember(id, m.phone); } })
          ])
        ]));
      });
      var total = r.data && r.data.total != null ? Number(r.data.total) : 0;
      var more = $("sms-members-more");
      if (total > MEMBERS_SHOWN) { tr(more, "smsMembersMore", { shown: MEMBERS_SHOWN, total: total }); more.hidden = false; }
      else more.hidden = true;
    });
  }

  function memberBody(phone, name, caseCode, lang) {
    var body = { phone: phone, language: lang || "zh" };
    if (name) body.name = name;
    if (caseCode) body.fields = { case_code: caseCode };
    return body;
  }

  function addMember(ev) {
    ev.preventDefault();
    if (openGroup == null) return;
    var id = openGroup;
    var body = memberBody($("sms-member-phone").value.trim(), $("sms-member-name").value.trim(),
      $("sms-member-case").value.trim(), $("sms-member-lang").value);
    api("POST", "/api/sms/groups/" + encodeURIComponent(id) + "/members", body).then(function (r) {
      if (!r.ok) { fail($("sms-member-error"), r); return; }
      HL.say($("sms-member-error"), "");
      $("sms-member-phone").value = "";
      $("sms-member-name").value = "";
      $("sms-member-case").value = "";
      loadGroups();
      showMembers(id);
    });
  }

  function bulkAdd() {
    if (openGroup == null) return;
    var id = openGroup;
    var lang = $("sms-member-lang").value;
    var members = $("sms-bulk").value.split(/\r?\n/).map(function (line) { return line.trim(); })
      .filter(function (line) { return line; })
      .map(function (line) {
        var parts = line.split(/[,，\t]/).map(function (p) { return p.trim(); });
        return memberBody(parts[0], parts[1] || "", parts[2] || "", lang);
      });
    if (!members.length) return;
    api("POST", "/api/sms/groups/" + encodeURIComponent(id) + "/members/bulk", { members: members }).then(function (r) {
      if (!r.ok) { fail($("sms-member-error"), r); return; }
      HL.say($("sms-member-error"), "");
      $("sms-bulk").value = "";
      tr($("sms-bulk-result"), "smsBulkDone", { added: r.data.added, updated: r.data.updated });
      loadGroups();
      showMembers(id);
    });
  }

  function removeMember(id, phone) {
    api("DELETE", "/api/sms/groups/" + encodeURIComponent(id) + "/members/" + encodeURIComponent(phone)).then(function (r) {
      if (!r.ok) { fail($("sms-member-error"), r); return; }
      loadGroups();
      showMembers(id);
    });
  }

  // ------------------------------------------------------------------- send
  function fillTemplateChoices() {
    var sel = $("sms-send-template");
    var keep = sel.value;
    HL.clear(sel);
    sel.appendChild(HL.option("", "", "smsChooseTemplate"));
    templates.forEach(function (tpl) { sel.appendChild(HL.option(String(tpl.id), tpl.name || String(tpl.id))); });
    if (keep) sel.value = keep;
  }

  function fillGroupChoices() {
    var box = $("sms-send-groups");
    var checked = {};
    box.querySelectorAll("input[type=checkbox]").forEach(function (c) { if (c.checked) checked[c.value] = true; });
    HL.clear(box);
    groups.forEach(function (g) {
      var id = "sms-send-group-" + g.id;
      var input = h("input", { type: "checkbox", id: id, value: String(g.id), testid: "sms-send-group", "data-group-name": g.name || "", onchange: invalidatePreview });
      if (checked[String(g.id)]) input.checked = true;
      box.appendChild(h("label", { "for": id, className: "check" }, [input, " " + (g.name || "") + " (" + num(g.members) + ")"]));
    });
  }

  function sendBody() {
    var ids = [];
    $("sms-send-groups").querySelectorAll("input[type=checkbox]").forEach(function (c) { if (c.checked) ids.push(Number(c.value)); });
    var body = { template_id: Number($("sms-send-template").value) || null, group_ids: ids };
    var at = $("sms-send-at").value;
    if (at) body.scheduled_at = at;
    return body;
  }

  function invalidatePreview() {
    previewed = null;
    $("sms-send").disabled = true;
  }

  function preview() {
    var body = sendBody();
    HL.say($("sms-send-error"), "");
    if (!body.template_id || !body.group_ids.length) { HL.sayKey($("sms-send-error"), "smsSendMissing"); return; }
    api("POST", "/api/sms/preview", body).then(function (r) {
      if (!r.ok) { invalidatePreview(); fail($("sms-send-error"), r); return; }
      var p = r.data.preview || {};
      $("sms-preview-box").hidden = false;
      $("sms-preview-count").textContent = num(p.recipients);
      var ex = p.excluded || {};
      var seg = p.segments || {};
      tr($("sms-preview-detail"), "smsPreviewDetail", {
        members: num(p.members), opted: num(ex.opted_out), black: num(ex.blacklisted),
        segments: num(seg.total), max: num(seg.max), seconds: num(p.seconds)
      });
      var list = HL.clear($("sms-preview-samples"));
      (Array.isArray(p.samples) ? p.samples : []).forEach(function (s) {
        var segs = s.segments && s.segments.segments;
        list.appendChild(h("li", { testid: "sms-preview-sample" }, [
          h("span", { className: "muted", text: String(s.phone) + (s.name ? " " + s.name : "") + " · " }),
          h("span", { className: "sms-text", text: s.text }),
          h("span", { className: "muted", text: " · " + t("smsSegments", { n: num(segs) }) })
        ]));
      });
      var missing = p.missing && typeof p.missing === "object" ? Object.keys(p.missing) : [];
      if (missing.length) {
        HL.sayKey($("sms-send-error"), "smsMissingValues", { names: missing.map(function (k) { return "{" + k + "}"; }).join(" ") });
        invalidatePreview();
        return;
      }
      previewed = JSON.stringify(body);
      $("sms-send").disabled = !(p.recipients > 0);
      tr($("sms-send"), body.scheduled_at ? "smsSchedule" : "smsSendNow");
    });
  }

  function send(ev) {
    ev.preventDefault();
    var body = sendBody();
    if (previewed !== JSON.stringify(body)) { invalidatePreview(); HL.sayKey($("sms-send-error"), "smsPreviewFirst"); return; }
    $("sms-send").disabled = true;
    api("POST", "/api/sms/sends", body).then(function (r) {
      if (!r.ok) { fail($("sms-send-error"), r); $("sms-send").disabled = false; return; }
      var s = r.data.send || {};
      var args = { n: num(s.total), at: (s.scheduled_local || "").replace("T", " ") };
      if (s.state === "scheduled" && body.scheduled_at) HL.sayKey($("sms-send-result"), "smsScheduled", args);
      else HL.sayKey($("sms-send-result"), "smsStarted", args);
      invalidatePreview();
      openSend = s.id || null;
      refreshSoon();
    });
  }

  // ------------------------------------------------------------------ sends
  function refresh() {
    timer = null;
    if (!running) return;
    api("GET", "/api/sms/sends?limit=50").then(function (r) {
      if (!running) return;
      if (r.ok) {
        renderSends(HL.listFrom(r.data, ["sends"]));
        tr($("sms-updated"), "updatedAt", { time: new Date().toLocaleTimeString(HL.lang() === "zh" ? "zh-CN" : "en-GB", { hour12: false }) });
      } else fail($("sms-error"), r);
      var after = openSend ? loadSendDetail(openSend) : Promise.resolve();
      after.then(function () { if (running && r.status !== 403) timer = setTimeout(refresh, REFRESH_MS); });
    });
  }

  function refreshSoon() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 0);
  }

  var SEND_CELLS = ["when", "template", "state", "total", "queued", "sent", "delivered", "failed", "other", "actions"];

  function renderSends(sends) {
    var body = $("sms-sends");
    var seen = {};
    sends.forEach(function (s) {
      if (!s || !s.id) return;
      seen[s.id] = true;
      var entry = sendRows[s.id] || (sendRows[s.id] = newSendRow(s.id));
      fillSendRow(entry, s);
      body.appendChild(entry.row);
    });
    Object.keys(sendRows).forEach(function (id) { if (!seen[id]) { sendRows[id].row.remove(); delete sendRows[id]; } });
    $("sms-sends-empty").hidden = sends.length > 0;
  }

  function newSendRow(id) {
    var cells = {};
    var row = h("tr", { testid: "sms-send-row", "data-send-id": id });
    SEND_CELLS.forEach(function (name) {
      cells[name] = h("td", { className: ["when", "template", "state", "actions"].indexOf(name) >= 0 ? "" : "num", testid: "sms-send-" + name });
      row.appendChild(cells[name]);
    });
    cells.cancel = h("button", { type: "button", className: "small danger", testid: "sms-send-cancel", i18n: "smsCancelSend", onclick: function () { cancelSend(id); } });
    cells.detail = h("button", { type: "button", className: "small", testid: "sms-send-details", i18n: "smsDetails", onclick: function () { openSend = id; loadSendDetail(id); } });
    cells.actions.appendChild(cells.detail);
    cells.actions.appendChild(cells.cancel);
    return { row: row, cells: cells };
  }

  function fillSendRow(entry, s) {
    var c = entry.cells, p = s.progress || {};
    entry.row.setAttribute("data-state", s.state || "");
    c.when.textContent = (s.scheduled_local || "").replace("T", " ");
    c.template.textContent = s.template_name || "";
    c.state.textContent = HL.tOr("smsState_" + s.state, s.state);
    c.total.textContent = num(s.total);
    c.queued.textContent = num((p.queued || 0) + (p.sending || 0));
    c.sent.textContent = num(p.sent);
    c.delivered.textContent = num(p.delivered);
    c.failed.textContent = num(p.failed);
    c.other.textContent = num((p.unknown || 0) + (p.skipped || 0) + (p.cancelled || 0));
    c.cancel.hidden = !(s.state === "scheduled" || s.state === "sending");
  }

  function cancelSend(id) {
    if (!window.confirm(t("smsConfirmCancel"))) return;
    api("POST", "/api/sms/sends/" + encodeURIComponent(id) + "/cancel", {}).then(function (r) {
      if (!r.ok) { fail($("sms-error"), r); return; }
      refreshSoon();
    });
  }

  function loadSendDetail(id) {
    return api("GET", "/api/sms/sends/" + encodeURIComponent(id) + "?limit=200").then(function (r) {
      if (openSend !== id) return;
      if (!r.ok) { openSend = null; $("sms-send-detail").hidden = true; return; }
      var s = r.data.send || {};
      $("sms-send-detail").hidden = false;
      tr($("sms-send-detail-title"), "smsSendDetail", { name: s.template_name || "", at: (s.scheduled_local || "").replace("T", " ") });
      var body = HL.clear($("sms-send-messages"));
      HL.listFrom(r.data, ["messages"]).forEach(function (m) {
        body.appendChild(h("tr", { testid: "sms-message", "data-state": m.state || "" }, [
          h("td", { text: m.phone }),
          h("td", { text: m.name || "" }),
          h("td", { testid: "sms-message-state", text: HL.tOr("smsMsg_" + m.state, m.state) }),
          h("td", { text: m.report ? HL.tOr("smsReport_" + m.report, m.report) : "" }),
          h("td", { text: m.error || "" })
        ]));
      });
    });
  }

  // -------------------------------------------------------------- lifecycle
  function signedIn() {
    running = true;
    api("GET", "/api/sms/config").then(function (r) {
      if (r.ok && r.data) { config = r.data; renderPlaceholders(); }
      else fail($("sms-error"), r);
    });
    loadTemplates();
    loadGroups();
    refresh();
  }

  function signedOut() {
    running = false;
    clearTimeout(timer);
    Object.keys(sendRows).forEach(function (id) { sendRows[id].row.remove(); delete sendRows[id]; });
  }

  function onLangChange() {
    document.title = t("smsTitle");
    renderPlaceholders();
    renderTemplates();
    renderGroups();
    fillGroupChoices();
  }

  function init() {
    $("sms-template-form").addEventListener("submit", saveTemplate);
    $("sms-template-cancel").addEventListener("click", resetTemplateForm);
    $("sms-group-form").addEventListener("submit", createGroup);
    $("sms-member-form").addEventListener("submit", addMember);
    $("sms-bulk-add").addEventListener("click", bulkAdd);
    $("sms-preview").addEventListener("click", preview);
    $("sms-send-form").addEventListener("submit", send);
    $("sms-send-template").addEventListener("change", invalidatePreview);
    $("sms-send-at").addEventListener("change", invalidatePreview);
    HL.onLang(onLangChange);
    HL.start({ onSignedIn: signedIn, onSignedOut: signedOut });
  }

  init();
})();
