"""Automatic contact distribution: a pure engine and the service around it."""
