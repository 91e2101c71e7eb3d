"""Fleet Tracker location service."""
