"""`python -m fleet_location.sim`: the same as `fleet-sim`."""

from fleet_location.sim.cli import main

main()
