"""`fleet-sim`: demo vehicles created through the public API, driven over MQTT.

Each simulated vehicle gets a vehicle and a device through the gateway, then connects to
the broker with that device's own credentials and drives a road-like route (straight
stretches on a street grid with turns, traffic-light stops, parking with the ignition off,
now and then faster than its speed limit), publishing QoS 1 positions at the given rate.
"""
