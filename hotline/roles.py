"""Which staff roles may do what: the one definition of each role set.

Handlers pass a set to :func:`hotline.auth.require_user` (``require_user(request,
*SUPERVISING)``) or test membership (``user.role in SUPERVISING``). Editors are not
console staff: they sign in for the knowledge base only.
"""

from __future__ import annotations

from hotline.store.models import Role

# Everyone who works in the agent console.
STAFF = frozenset({Role.AGENT, Role.SUPERVISOR, Role.ADMIN})
# Who oversees others: sees every conversation and call of their units, reveals
# identities, forces agent status, blacklists, writes canned replies.
SUPERVISING = frozenset({Role.SUPERVISOR, Role.ADMIN})
# Who changes accounts, org units, queues and phones.
ADMIN_ONLY = frozenset({Role.ADMIN})
# Who takes conversations: gets a presence row and may join queues.
TAKES_CONTACTS = frozenset({Role.AGENT, Role.SUPERVISOR})
