"""A realistic machine-sensor dataset for the demo, from a documented process model.

The model is a CNC milling machine machining a batch of aluminium parts, sampled at 1 Hz:

- the machine runs 300-second part cycles: 20 s load/unload (spindle stopped), then
  roughing (spindle 9,000 rpm, feed 1,200 mm/min) and finishing (12,000 rpm, 600 mm/min);
- tool wear grows linearly with cutting time (0.0 -> 1.0 over the tool's life, ~8 h of
  cutting); the tool is changed when wear passes 0.95, which resets wear;
- spindle current (A) = idle 2.1 A + load proportional to feed x (1 + 0.6 · wear) + noise;
- vibration RMS (mm/s) = 0.4 baseline + 1.1 · rpm/10,000 · (1 + 2 · wear²) + noise, with
  rare chatter events (probability 0.002 per cutting second) adding 3-6 mm/s for 5-15 s;
- spindle bearing temperature (°C) follows a first-order lag (τ = 600 s) towards
  24 °C + 0.0016 °C per rpm while cutting, 24 °C when stopped;
- each row is labelled with the part number, phase and a ``quality_flag`` (1 when
  vibration exceeds 4.5 mm/s, i.e. the part needs inspection).

Deterministic for a given seed, so the demo's Merkle root is reproducible.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

HEADER = (
    "timestamp_s,machine_id,part_no,phase,spindle_rpm,feed_mm_min,spindle_current_a,"
    "vibration_rms_mm_s,bearing_temp_c,tool_wear,quality_flag\n"
)
CYCLE_S = 300
LOAD_S = 20
ROUGH_S = 180
TOOL_LIFE_S = 8 * 3600


def generate_csv(path: Path, rows: int, *, seed: int = 7, machine_id: str = "CNC-07") -> int:
    """Write ``rows`` samples to ``path``; returns the file size in bytes."""
    rng = random.Random(seed)
    wear = 0.0
    temp = 24.0
    chatter_left = 0
    chatter_amp = 0.0
    start = 1_767_225_600  # 2026-01-01T00:00:00Z
    with open(path, "w", encoding="ascii", newline="") as f:
        f.write(HEADER)
        for t in range(rows):
            in_cycle = t % CYCLE_S
            part = t // CYCLE_S + 1
            if in_cycle < LOAD_S:
                phase, rpm, feed = "load", 0, 0
            elif in_cycle < LOAD_S + ROUGH_S:
                phase, rpm, feed = "rough", 9000, 1200
            else:
                phase, rpm, feed = "finish", 12000, 600
            cutting = rpm > 0
            if cutting:
                wear += 1.0 / TOOL_LIFE_S
                if wear > 0.95:
                    wear = 0.0  # tool change
            current = 2.1 + (feed / 1200) * 9.5 * (1 + 0.6 * wear) + rng.gauss(0, 0.15)
            vib = 0.4 + 1.1 * rpm / 10000 * (1 + 2 * wear * wear) + abs(rng.gauss(0, 0.08))
            if cutting and chatter_left == 0 and rng.random() < 0.002:
                chatter_left = rng.randint(5, 15)
                chatter_amp = rng.uniform(3.0, 6.0)
            if chatter_left:
                vib += chatter_amp
                chatter_left -= 1
            target = 24.0 + (0.0016 * rpm if cutting else 0.0)
            temp += (target - temp) * (1 - math.exp(-1 / 600))
            flag = 1 if vib > 4.5 else 0
            f.write(
                f"{start + t},{machine_id},{part},{phase},{rpm},{feed},{current:.2f},"
                f"{vib:.3f},{temp + rng.gauss(0, 0.05):.2f},{wear:.4f},{flag}\n"
            )
    return path.stat().st_size


def generate_fleet_csv(path: Path, rows_per_machine: int, machines: tuple[str, ...]) -> int:
    """Several machines' samples in one table (each machine its own seed): the clean-room
    demo's dataset. Returns the file size in bytes."""
    parts = path.with_name(path.name + ".parts")
    parts.mkdir(exist_ok=True)
    with open(path, "w", encoding="ascii", newline="") as out:
        out.write(HEADER)
        for i, machine in enumerate(machines):
            one = parts / f"{machine}.csv"
            generate_csv(one, rows_per_machine, seed=7 + i, machine_id=machine)
            with open(one, encoding="ascii") as f:
                next(f)
                out.writelines(f)
            one.unlink()
    parts.rmdir()
    return path.stat().st_size
