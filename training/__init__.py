"""Training: datasets over record shards, collator, trainer, recipes and merging."""
