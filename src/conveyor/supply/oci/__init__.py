"""OCI images: the data model, a reproducible builder, and the stores that hold images."""
