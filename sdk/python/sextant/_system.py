"""System metrics sampled every few seconds: CPU and memory of the machine (from
``/proc`` on Linux, ``os`` elsewhere), CPU and memory of this process, and GPU
utilisation, memory and temperature where ``nvidia-smi`` is on the ``PATH``.

Series are named ``system/...``; their steps count samples.
"""

import logging
import os
import shutil
import subprocess
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

log = logging.getLogger("sextant")

Sample = Dict[str, float]


def _read_cpu_times() -> Optional[Tuple[float, float]]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    try:
        with open("/proc/stat") as file:
            fields = file.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [float(v) for v in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    total = sum(values[:8])  # guest time is already in user/nice
    return total - idle, total


def _meminfo() -> Optional[Dict[str, float]]:
    """/proc/meminfo in kB."""
    try:
        with open("/proc/meminfo") as file:
            info = {}
            for line in file:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts:
                    info[key] = float(parts[0])
            return info
    except OSError:
        return None


def _process_rss_bytes() -> Optional[float]:
    try:
        with open("/proc/self/statm") as file:
            return float(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return float(peak) * (1 if os.uname().sysname == "Darwin" else 1024)
    except (ImportError, OSError, AttributeError):
        return None


def gpu_query(nvidia_smi: str, timeout: float = 5.0) -> List[Sample]:
    """One sample per GPU from ``nvidia-smi``."""
    output = subprocess.run(
        [
            nvidia_smi,
            "--query-gpu=utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw",
            "--format=csv,noheader,nounits",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    ).stdout
    gpus = []
    for line in output.strip().splitlines():
        fields = [f.strip() for f in line.split(",")]

        def number(index: int) -> Optional[float]:
            try:
                return float(fields[index])
            except (IndexError, ValueError):
                return None  # "[N/A]"

        sample: Sample = {}
        util, used, total, temp, power = (number(i) for i in range(5))
        if util is not None:
            sample["utilization_percent"] = util
        if used is not None:
            sample["memory_used_mb"] = used
            if total:
                sample["memory_percent"] = 100.0 * used / total
        if temp is not None:
            sample["temperature_c"] = temp
        if power is not None:
            sample["power_w"] = power
        gpus.append(sample)
    return gpus


class SystemSampler:
    """Computes one sample of system metrics per call (rates since the last call)."""

    def __init__(self, gpu: bool = True) -> None:
        self._cpu = _read_cpu_times()
        self._proc = (time.monotonic(), sum(os.times()[:2]))
        self._nvidia_smi = shutil.which("nvidia-smi") if gpu else None

    def sample(self) -> Sample:
        metrics: Sample = {}
        cpu = _read_cpu_times()
        if cpu is not None and self._cpu is not None and cpu[1] > self._cpu[1]:
            busy = cpu[0] - self._cpu[0]
            metrics["system/cpu_percent"] = 100.0 * busy / (cpu[1] - self._cpu[1])
        elif cpu is None and hasattr(os, "getloadavg"):
            metrics["system/load_1m"] = os.getloadavg()[0]
        self._cpu = cpu

        now, used = time.monotonic(), sum(os.times()[:2])
        if now > self._proc[0]:
            metrics["system/process_cpu_percent"] = 100.0 * (used - self._proc[1]) / (
                now - self._proc[0]
            )
        self._proc = (now, used)

        info = _meminfo()
        if info and "MemTotal" in info:
            total = info["MemTotal"]
            available = info.get("MemAvailable", info.get("MemFree", 0.0))
            metrics["system/memory_used_gb"] = (total - available) / 1024 / 1024
            metrics["system/memory_percent"] = 100.0 * (total - available) / total
        rss = _process_rss_bytes()
        if rss is not None:
            metrics["system/process_memory_mb"] = rss / 1024 / 1024

        if self._nvidia_smi:
            try:
                for index, gpu in enumerate(gpu_query(self._nvidia_smi)):
                    for key, value in gpu.items():
                        metrics["system/gpu{}/{}".format(index, key)] = value
            except (OSError, subprocess.SubprocessError) as error:
                log.info("sextant: GPU metrics disabled: nvidia-smi failed: %s", error)
                self._nvidia_smi = None
        return metrics


class SystemMonitor:
    """A daemon thread logging a sample every ``interval`` seconds through
    ``log(metrics, step)``."""

    def __init__(
        self,
        log_metrics: Callable[[Sample, int], None],
        interval: float = 5.0,
        first_step: int = 0,
        gpu: bool = True,
    ) -> None:
        self._log = log_metrics
        self.interval = interval
        self._step = first_step
        self._stop = threading.Event()
        self._gpu = gpu
        self._thread = threading.Thread(target=self._loop, name="sextant-system", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        sampler = SystemSampler(self._gpu)
        while not self._stop.wait(self.interval):
            try:
                metrics = sampler.sample()
            except Exception:  # pragma: no cover - a broken /proc must not matter
                log.debug("sextant: system metrics failed", exc_info=True)
                continue
            if metrics:
                self._log(metrics, self._step)
                self._step += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10.0)
