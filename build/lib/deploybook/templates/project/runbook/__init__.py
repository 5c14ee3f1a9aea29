"""The release runbook: one module per stage, run in order by ``pytest runbook --env ENV``."""
