"""Hand-offs from a verified artifact to the serving engines users grow into: Triton, DeepStream."""
