"""Alerts raised by rules from events: listing, acknowledging, resolving."""
