"""Open-loop, coordinated-omission-correct load generation in worker subprocesses.

schedule   when each request is due (constant, Poisson, stages; or closed loop)
operation  what one request is: an async call the workload describes
http       a lean HTTP/1.1 keep-alive client for the hot path
histogram  log-linear (HDR-style) latency histograms that merge exactly
worker     one process: scheduler, in-flight cap, samples to Parquet in chunks
runner     the parent: starts `lab worker` subprocesses, shows progress, merges
"""
