"""Hyperliquid cohort positioning warehouse: HyperTracker heatmap snapshots, kept."""
