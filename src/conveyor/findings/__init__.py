"""One findings model for every scanner: SARIF 2.1.0, content fingerprints, baselines,
exceptions with expiry, and the gates that decide on them."""
