"""One build per router: plan, inputs and state, dist output, fleets, verify."""
