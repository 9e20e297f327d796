"""robustlab plumbing: specs, the results store, submission, scheduling and the CLI."""
