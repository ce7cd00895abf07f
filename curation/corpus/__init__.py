"""Corpora: registered manifests of Parquet/JSONL shards, scored on Ray (issue 16).

Rows of a corpus never enter the database: it keeps the manifest (shards, counts), each run's
aggregates, and the samples that become normal datasets. Shard work is in curation/pipeline/corpus.
"""
