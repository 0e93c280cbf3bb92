"""Peak shaving: the log is the reservoir between the broker and a consumer held to a fixed
rate. Devices publish at 0.75x the consumer's rate, then burst to 3x that (rush hour), then
stop. The broker keeps acknowledging while the consumer group's lag grows (it is never blocked
by the slow consumer), the lag drains to zero once the burst is over, and every acknowledged
message is consumed. Publish latencies per phase are printed for the record, not asserted:
speed belongs to bench/."""
import json
import re
import statistics
import subprocess
import threading
import time
from pathlib import Path

import pytest

import tern_harness as th
from broker_fixture import PUBACK, Raw, publish_packet

CONSUMER_RATE = 200  # records per second


def total_lag(kafka, topic, group):
    out = th.run([th.tern_bin(), "log", "offsets", "--set", "log.backend=kafka", "--set",
                  f"log.kafka_brokers={kafka.bootstrap}", "--topic", topic, "--group", group],
                 timeout_s=60)
    assert out.returncode == 0, out.stderr
    m = re.search(rb"total lag of group '.*': (\d+)", out.stdout)
    assert m, out.stdout
    total_lag.last_table = out.stdout.decode()
    return int(m.group(1))


def test_burst_becomes_lag_then_drains(start, tmp_path, kafka):
    topic = kafka.unique_topic("shave")
    group = topic + "-group"
    acl = tmp_path / "acl"
    acl.write_text("pattern write fleet/%c/#\n")
    b = start("tern-broker", lambda p: [
        th.tern_bin(), "broker", "--listen", f"127.0.0.1:{p}", "--data", str(tmp_path / "d"),
        "--allow-anonymous", "--set", f"broker.acl_file={acl}", "--set", "log.backend=kafka",
        "--set", f"log.kafka_brokers={kafka.bootstrap}", "--set", "log.partitions=4",
        "--set", "log.kafka_linger=1ms", "--set", f"broker.ingest_topic={topic}"],
        ready_timeout_s=60)
    consumer_bin = Path(th.os.environ.get("TERN_BUILD_DIR", th.SOURCE_DIR / "build/dev")) \
        / "tests" / "log_consume"
    # The consumer prints every record (~100 KiB in all) while this test is busy publishing and
    # polling the lag, reading nothing: into a pipe, it would fill the pipe's 64 KiB, block in
    # write(2) and stop polling and committing, so the lag could never drain. Files never block.
    consumer_out = tmp_path / "consumer.out"
    consumer_err = tmp_path / "consumer.err"
    with open(consumer_out, "wb") as out_f, open(consumer_err, "wb") as err_f:
        consumer = subprocess.Popen(
            [str(consumer_bin), "--backend", "kafka", "--brokers", kafka.bootstrap, "--topic",
             topic, "--group", group, "--rate", str(CONSUMER_RATE), "--idle-ms", "8000"],
            stdout=out_f, stderr=err_f)

    latencies = {"calm": [], "burst": []}
    sent = []
    lock = threading.Lock()

    def device(name, phase, rate, seconds):
        r = Raw(b.port, 4)
        r.connect(name)
        pid, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < seconds:
            pid += 1
            payload = json.dumps({"dev": name, "phase": phase, "seq": pid}).encode()
            due = t0 + pid / rate
            if due > time.monotonic():
                time.sleep(due - time.monotonic())
            ts = time.monotonic()
            r.send(publish_packet(f"fleet/{name}/telemetry", payload, qos=1, packet_id=pid))
            r.expect(PUBACK, timeout=30)
            with lock:
                latencies[phase].append(time.monotonic() - ts)
                sent.append(payload.decode())
        r.close()

    def phase(name, total_rate, seconds, n_devices=3):
        threads = [threading.Thread(target=device, args=(f"{name}{i}", name,
                                                          total_rate / n_devices, seconds))
                   for i in range(n_devices)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    try:
        phase("calm", 0.75 * CONSUMER_RATE, 4)
        lag_calm = total_lag(kafka, topic, group)
        t_calm, n_calm = time.monotonic(), len(sent)
        phase("burst", 3 * 0.75 * CONSUMER_RATE, 4)
        lag_burst = total_lag(kafka, topic, group)
        burst_window_s, n_burst = time.monotonic() - t_calm, len(sent) - n_calm
        drained = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if total_lag(kafka, topic, group) == 0:
                drained = True
                break
            time.sleep(1)
        consumer.wait(timeout=60)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
    out, err = consumer_out.read_bytes(), consumer_err.read_bytes()
    for name, lat in latencies.items():
        q = statistics.quantiles(lat, n=100)
        print(f"publish->PUBACK {name}: n={len(lat)} p50={q[49] * 1e3:.2f} ms "
              f"p99={q[98] * 1e3:.2f} ms")
    print(f"lag after calm={lag_calm}, after burst={lag_burst}")
    print("consumer:", err.decode()[-2000:])
    # The consumer reads at most CONSUMER_RATE per second (plus 100 ms of catch-up), and commits
    # every 200 ms: so whatever this machine's speed, the lag must have grown by at least what
    # the burst published beyond that. At the nominal rates that is about 1,000 records.
    least_growth = n_burst - CONSUMER_RATE * (burst_window_s + 0.3)
    print(f"burst: {n_burst} published in {burst_window_s:.1f} s; lag must grow >= {least_growth:.0f}")
    assert lag_burst - lag_calm >= least_growth, (lag_calm, lag_burst, least_growth)
    assert drained, "lag did not drain to zero:\n" + total_lag.last_table
    consumed = out.decode().splitlines()
    assert sorted(consumed) == sorted(sent), "consumed records differ from acknowledged ones"
    if n_burst < 1.5 * CONSUMER_RATE * burst_window_s:
        pytest.skip(f"this machine published only {n_burst / burst_window_s:.0f}/s: no burst")
    assert lag_burst > lag_calm, "the burst did not become lag"
