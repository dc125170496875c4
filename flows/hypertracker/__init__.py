"""The source system: HyperTracker's API, its client, payload schema and a simulated server."""
