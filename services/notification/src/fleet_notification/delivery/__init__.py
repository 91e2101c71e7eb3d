"""Delivery of alerts over in-app, webhook, email and Firebase push, from a persistent queue."""
