"""The staff front end: the agent console (``/console/``) and the supervisor page.

Plain static files (no build step) plus :func:`agent_console.routes.add_routes`, which
serves them with a strict Content-Security-Policy. Everything they show comes from the
staff API described in ``docs/agent-api.md``.
"""
