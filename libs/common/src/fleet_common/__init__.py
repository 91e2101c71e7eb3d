"""Plumbing shared by every Fleet Tracker service."""
