"""hotline: an omnichannel, bot-driven front office for public report hotlines."""

__version__ = "0.1.0"
