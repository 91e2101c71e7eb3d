"""Firebase Cloud Messaging registration tokens of users' devices."""
