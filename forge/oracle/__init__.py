"""Exact Texas 42 oracle: rules, deals, packed states, the solver and parquet shards."""
