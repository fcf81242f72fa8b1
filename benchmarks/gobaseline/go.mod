module fleetbox-baseline

go 1.22
