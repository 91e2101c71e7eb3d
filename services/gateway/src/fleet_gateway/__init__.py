"""Fleet Tracker gateway service."""
