"""Geofences: polygons and circles an org draws on the map, and their in-memory index."""
