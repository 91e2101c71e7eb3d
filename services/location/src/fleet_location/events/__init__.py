"""Event detection on committed positions and device status; events go to `fleet:events`."""

from fleet_location.events.detector import EventDetector, create_event_detector

__all__ = ["EventDetector", "create_event_detector"]
