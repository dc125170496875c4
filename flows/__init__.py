"""Hyperliquid cohort positioning warehouse: HyperTracker heatmap snapshots, kept."""

import logging

# The pipeline's modules log what they fetched, landed, loaded and published at INFO, each
# to its own logger (flows.*); Prefect carries them into each run's log
# (PREFECT_LOGGING_EXTRA_LOGGERS=flows) and its console handler prints them.
logging.getLogger(__name__).setLevel(logging.INFO)
