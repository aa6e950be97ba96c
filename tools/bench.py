#!/usr/bin/env python3
"""Benchmark deconvnd_cl against PyTorch, ONNX Runtime and OpenVINO on the suite of layer families (bench.SUITE).

    python tools/bench.py                      # the suite, table to stdout
    python tools/bench.py --markdown docs/performance-table.md --plot docs/performance.png
Same options as `deconvnd-cl bench` (this script is that command).
"""

import sys

from deconvnd_cl.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
