"""The offline vulnerability scan: OSV advisories in a local database, PEP 440 matching,
findings with a severity gate, SARIF and CycloneDX VEX output."""
