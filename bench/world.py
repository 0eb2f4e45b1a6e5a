"""``python -m bench.world DIR``: build the bench world once for several figures to share."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.common import build_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path)
    directory = parser.parse_args().directory
    directory.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    world = build_world(directory)
    took = time.perf_counter() - began
    print(f"bench world: {len(world.tickers)} models in {directory} ({took:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
