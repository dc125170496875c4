"""Backfill: HyperTracker's history endpoints turned into heatmap states (issue 15)."""
