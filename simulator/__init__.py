"""The simulated HyperTracker API: a synthetic market served over real HTTP on 127.0.0.1.

- :mod:`.market`: the deterministic market (coins, cohorts, states) and the payloads it emits;
- :mod:`.faults`: what can go wrong (rate limits, 5xx, drops, truncation, schema drift);
- :mod:`.server`: :class:`SimulatedApi`, the HTTP server, with a clock and fault injection;
- :mod:`.control`: :class:`SimulatorControl`, steering a server in another process.
"""

from simulator.control import SimulatorControl
from simulator.faults import Fault
from simulator.market import COHORTS, WINDOWS, Market
from simulator.server import SimulatedApi

__all__ = ["COHORTS", "WINDOWS", "Fault", "Market", "SimulatedApi", "SimulatorControl"]
