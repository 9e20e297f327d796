"""The spec language: Pydantic models, YAML loading with line numbers, sweeps, hashing."""
