"""The source system: HyperTracker's API, its client and the payload contract."""
