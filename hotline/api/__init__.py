"""HTTP handlers for staff: accounts, administration, conversations, the agent socket."""
