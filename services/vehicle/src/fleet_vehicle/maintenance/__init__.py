"""Maintenance schedules of vehicles (by odometer km or engine hours)."""
