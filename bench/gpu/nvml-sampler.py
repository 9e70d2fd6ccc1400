"""Reads one GPU's NVML total-energy counter every few milliseconds and prints `epoch_ms,millijoules`.

The GPU benchmark's independent reading: NVML through its own Python binding (nvidia-ml-py), not
through nvidia-smi, which Gravity's `measured:nvml` source uses. It runs until stdin closes or it is
killed, flushing each line, so the reader sees every sample as it is taken.

    python3 bench/gpu/nvml-sampler.py [gpu_index] [interval_ms]
"""

import sys
import threading
import time

import pynvml


def main() -> None:
    index = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    interval_s = (float(sys.argv[2]) if len(sys.argv) > 2 else 10.0) / 1000
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    stop = threading.Event()
    # The parent closes our stdin when it is done (or dies): stop then, rather than outlive it.
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.is_set():
        millijoules = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        sys.stdout.write(f"{time.time() * 1000:.3f},{millijoules}\n")
        sys.stdout.flush()
        stop.wait(interval_s)
    pynvml.nvmlShutdown()


if __name__ == "__main__":
    main()
