"""The lake: the raw archive of API bodies and the Parquet tables built from it."""
