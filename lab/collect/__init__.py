"""Collection while a trial runs: a time series of each container's resources and each
service's own counters (`collector`)."""
