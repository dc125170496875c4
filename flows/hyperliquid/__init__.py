"""Hyperliquid's public info API, the second source: client.py (HTTP, weight-paced),
payload.py (the three responses' contract), errors.py (what can go wrong, in one line)."""
