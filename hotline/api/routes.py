"""Every ``/api/`` route of the staff API, and the module that answers it.

The contract is ``docs/agent-api.md``. The agent socket (``/ws/agent``) is added by
``hotline.web`` with the socket registry it owns.
"""

from __future__ import annotations

from aiohttp import web

from hotline.api import (
    blacklist,
    call_control,
    calls,
    canned,
    contacts,
    conversations,
    handling,
    identity,
    login,
    phones,
    presence,
    queues,
    recordings,
    supervisor,
    tickets,
    units,
    users,
)


def add_routes(app: web.Application) -> None:
    r = app.router
    # sessions
    r.add_post("/api/login", login.login)
    r.add_post("/api/logout", login.logout)
    r.add_get("/api/me", login.get_me)
    # administration
    r.add_get("/api/users", users.list_users)
    r.add_post("/api/users", users.create_user)
    r.add_get("/api/users/{id}", users.get_user)
    r.add_patch("/api/users/{id}", users.update_user)
    r.add_delete("/api/users/{id}", users.deactivate_user)
    r.add_get("/api/org-units", units.list_units)
    r.add_post("/api/org-units", units.create_unit)
    r.add_patch("/api/org-units/{id}", units.update_unit)
    r.add_delete("/api/org-units/{id}", units.delete_unit)
    r.add_get("/api/queues", queues.list_queues)
    r.add_post("/api/queues", queues.create_queue)
    r.add_patch("/api/queues/{id}", queues.update_queue)
    r.add_delete("/api/queues/{id}", queues.delete_queue)
    r.add_get("/api/queues/{id}/members", queues.list_members)
    r.add_put("/api/queues/{id}/members", queues.replace_members)
    r.add_get("/api/blacklist", blacklist.list_blacklist)
    r.add_post("/api/blacklist", blacklist.add_blacklist)
    r.add_delete("/api/blacklist/{contact_id}", blacklist.remove_blacklist)
    r.add_get("/api/canned", canned.list_canned)
    r.add_post("/api/canned", canned.create_canned)
    r.add_delete("/api/canned/{id}", canned.delete_canned)
    # conversations
    r.add_get("/api/conversations", conversations.list_conversations)
    r.add_get("/api/conversations/{id}", conversations.conversation_detail)
    r.add_post("/api/conversations/{id}/identity", identity.reveal_identity)
    r.add_post("/api/conversations/{id}/accept", handling.accept)
    r.add_post("/api/conversations/{id}/reject", handling.reject)
    r.add_post("/api/conversations/{id}/messages", conversations.post_message)
    r.add_post("/api/conversations/{id}/transfer", handling.transfer)
    r.add_post("/api/conversations/{id}/hangup", call_control.hangup)
    r.add_post("/api/conversations/{id}/reassign", supervisor.reassign)
    r.add_post("/api/conversations/{id}/vip", supervisor.set_vip)
    r.add_post("/api/conversations/{id}/close", handling.close)
    r.add_post("/api/conversations/{id}/ticket", tickets.create_ticket)
    r.add_patch("/api/conversations/{id}/ticket", tickets.edit_ticket)
    # one citizen across channels
    r.add_post("/api/contacts/{contact_id}/links", contacts.link_contacts)
    r.add_delete("/api/contacts/{contact_id}/link", contacts.unlink_contact)
    # agents and supervisors
    r.add_get("/api/agents/me", presence.me)
    r.add_post("/api/agents/me/status", presence.set_my_status)
    r.add_get("/api/supervisor/overview", supervisor.overview)
    r.add_post("/api/supervisor/agents/{id}/status", supervisor.force_status)
    # calls
    r.add_get("/api/calls", calls.list_calls)
    r.add_get("/api/recordings/{id}/audio", recordings.recording_audio)
    r.add_get("/api/agents/me/phone", phones.my_phone)
    r.add_post("/api/users/{id}/phone", phones.issue_phone)
