"""Writes for curation. Scores are written through curation.scoring.scores_write."""
from curation.scoring import scorer_run_start, scores_write  # noqa: F401  (the public write path)
