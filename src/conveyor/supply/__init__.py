"""The software supply chain: OCI images, image stores, SBOM, vulnerability scan,
signed attestations and the admission policy."""
