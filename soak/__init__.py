"""``make soak``: a bounded soak of the platform under a mixed workload and provider faults."""
