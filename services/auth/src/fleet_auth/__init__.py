"""Fleet Tracker auth service."""
