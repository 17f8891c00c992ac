"""Release analysis: metrics providers and the sequential judge of canary against baseline."""
