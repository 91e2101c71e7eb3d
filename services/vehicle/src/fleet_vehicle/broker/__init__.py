"""Device credentials on the MQTT broker, administered through Mosquitto's dynamic security."""
