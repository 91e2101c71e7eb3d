"""Local PostgreSQL+PostGIS, Redis and Mosquitto for `make run` and `make test`.

Servers run as child processes under a state folder on ports of our own, so they never
collide with servers already running on the machine's standard ports.
"""
