"""How a call's phases stop early."""


class Hangup(Exception):
    """The caller hung up: the call's task ends."""


class NeedsAgent(Exception):
    """Speech synthesis failed: the caller heard "please hold" and goes to a person."""
