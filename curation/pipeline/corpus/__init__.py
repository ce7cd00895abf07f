"""Corpus-scale curation over file shards (no Django): manifests, shard readers, per-shard scoring
with the existing blocks, atomic score files, and the Ray job that runs them shard by shard."""
