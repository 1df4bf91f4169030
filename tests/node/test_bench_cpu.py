"""``mdtp bench``'s CPU figures: a process's own CPU time read from ``/proc/<pid>/stat``."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from mdtp.node.ops.bench import CpuMeter, cpu_ratio, process_cpu_s, stat_cpu_s


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_process_cpu_time_matches_the_processes_own_account() -> None:
    tick = 1 / os.sysconf("SC_CLK_TCK")
    before = process_cpu_s(os.getpid())
    own_before = sum(os.times()[:2])
    _spin(0.2)
    after = process_cpu_s(os.getpid())
    own_after = sum(os.times()[:2])
    assert before is not None and after is not None
    # the same clock ticks the kernel reports to the process itself (os.times)
    assert abs((after - before) - (own_after - own_before)) <= 2 * tick
    assert after - before >= 0.2 - 2 * tick


def test_a_command_name_with_spaces_and_parentheses_is_skipped() -> None:
    tps = os.sysconf("SC_CLK_TCK")
    rest = " ".join(["0"] * 10 + [str(3 * tps), str(2 * tps)] + ["0"] * 30)
    assert stat_cpu_s(f"4242 (a) b (c)) S {rest}") == 5.0


def test_another_process_is_read_and_a_gone_one_is_none() -> None:
    code = "import time\nend = time.process_time() + 0.2\nwhile time.process_time() < end: pass\n"
    proc = subprocess.Popen([sys.executable, "-c", code + "input()"], stdin=subprocess.PIPE)
    try:
        for _ in range(200):
            used = process_cpu_s(proc.pid)
            if used is not None and used >= 0.2:
                break
            time.sleep(0.05)
        assert used is not None and used >= 0.2 - 2 / os.sysconf("SC_CLK_TCK")
    finally:
        proc.kill()
        proc.wait()
    assert process_cpu_s(proc.pid) is None  # gone


def test_a_nodes_cpu_counts_its_worker_processes() -> None:
    """A node's signature checks run in child processes: its CPU includes theirs (and a
    reaped child's, through the parent's cutime), but a process read alone does not."""
    spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
    parent_code = (
        "import subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, '-c', {spin + 'input()'!r}],"
        " stdin=subprocess.PIPE)\n"
        "print(child.pid, flush=True)\n"
        "input()\n"
        "child.communicate(b'\\n')\n"  # reaped: its CPU moves into the parent's cutime
        "print('reaped', flush=True)\n"
        "input()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert parent.stdin is not None and parent.stdout is not None
    try:
        child = int(parent.stdout.readline())
        for _ in range(200):
            used = process_cpu_s(child)
            if used is not None and used >= 0.3:
                break
            time.sleep(0.05)
        tick = 1 / os.sysconf("SC_CLK_TCK")
        alone, with_children = process_cpu_s(parent.pid), process_cpu_s(parent.pid, children=True)
        assert alone is not None and with_children is not None
        assert with_children - alone >= 0.3 - 2 * tick
        parent.stdin.write(b"\n")
        parent.stdin.flush()
        assert parent.stdout.readline() == b"reaped\n"
        after = process_cpu_s(parent.pid, children=True)
        assert after is not None and after >= with_children - 2 * tick
    finally:
        parent.kill()
        parent.wait()


def test_cpu_meter_reports_per_committed_transaction() -> None:
    meter = CpuMeter({"node0": os.getpid(), "node1": None})
    meter.start()
    _spin(0.1)
    meter.stop()
    doc = meter.per_tx(100)
    assert list(doc["cpu_us_per_tx"]) == ["node0"]  # a node without a process is left out
    assert doc["cpu_us_per_tx"]["node0"] >= 0.09 * 1e6 / 100
    assert doc["cpu_us_per_tx_mean"] == doc["cpu_us_per_tx"]["node0"]
    # the same process read twice, one clock tick apart at most (/proc counts in ticks)
    tick_us_per_tx = 1e6 / os.sysconf("SC_CLK_TCK") / 100
    assert abs(doc["loadgen_cpu_us_per_tx"] - doc["cpu_us_per_tx"]["node0"]) <= tick_us_per_tx
    assert meter.per_tx(0)["cpu_us_per_tx_mean"] is None


def test_the_cpu_ratio_compares_cpu_per_transaction_with_the_ceilings() -> None:
    # 4 nodes each verifying once at 50 us: 200 us; the level spent 4 x 100 + 100 = 500 us
    level = {"cpu_us_per_tx_mean": 100.0, "loadgen_cpu_us_per_tx": 100.0}
    assert cpu_ratio(level, 4, 50.0) == 0.4
    assert cpu_ratio({"cpu_us_per_tx_mean": None, "loadgen_cpu_us_per_tx": 1.0}, 4, 50.0) is None
