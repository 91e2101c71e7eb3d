"""Position history, latest positions and queries."""
