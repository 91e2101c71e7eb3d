"""Trips, stops and the per-vehicle summary report, derived from stored positions."""
