"""Fleet Tracker vehicle service."""
