"""``python -m simulator``: serve the simulated API until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os

from simulator.server import SimulatedApi, parse_iso


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, start the server, print its base URL, wait for Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="Serve the simulated HyperTracker API on this machine.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8765, help="port (0 = any free port)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the simulated market")
    parser.add_argument(
        "--token",
        default=os.environ.get("HT_API_TOKEN", "sim-token"),
        help="the Bearer token accepted (default: $HT_API_TOKEN, else sim-token)",
    )
    parser.add_argument("--now", type=parse_iso, help="freeze the clock at this ISO time")
    parser.add_argument("--start", type=parse_iso, help="the market's first state (ISO time)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    api = SimulatedApi(
        seed=args.seed,
        token=args.token,
        host=args.host,
        port=args.port,
        start=args.start,
        now=args.now,
    )
    with api.start(warm=True):
        print(api.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            api.wait()


if __name__ == "__main__":
    main()
