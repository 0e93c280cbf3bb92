"""tern broker: the front door (src/broker/door.c). A thread of its own accepts, reads each
connection's first packet and applies admission control, then hands the connection, with the
bytes it read, to a worker loop. Whatever way the first bytes arrive (in pieces, together with
the packets that follow, longer than the door reads), the client must see exactly what it would
see from a broker that read everything itself; and the door's refusals must be counted."""
import os
import time

import pytest

from broker_fixture import (CONNACK, PUBLISH, SUBACK, V5, Paho, Raw, broker,  # noqa: F401
                            connect_packet, make_broker, publish_packet, subscribe_packet)

VERSIONS = [pytest.param(4, id="v311"), pytest.param(5, id="v5")]


@pytest.mark.parametrize("version", VERSIONS)
def test_connect_arriving_byte_by_byte(broker, version):
    """A CONNECT split over many segments: the door waits for the whole packet."""
    data = connect_packet(f"slow-{version}", version=version)
    with Raw(broker.port, version) as r:
        for i in range(len(data)):
            r.send(data[i:i + 1])
            time.sleep(0.005)  # pacing only, so that the bytes arrive apart
        assert r.expect(CONNACK).reason == 0
        r.send(subscribe_packet(1, [("door/slow", 1)], version=version))
        assert r.expect(SUBACK).codes == [1]


@pytest.mark.parametrize("version", VERSIONS)
def test_packets_behind_the_connect_in_the_same_segment(broker, version):
    """CONNECT, SUBSCRIBE and PUBLISH in one write: the door reads them all and hands them over;
    the worker handles the two that follow the CONNECT in order."""
    with Raw(broker.port, version) as r:
        r.send(connect_packet(f"eager-{version}", version=version)
               + subscribe_packet(1, [("door/eager", 0)], version=version)
               + publish_packet("door/eager", b"right behind", version=version))
        assert r.expect(CONNACK).reason == 0
        assert r.expect(SUBACK).codes == [0]
        p = r.expect(PUBLISH)
        assert (p.topic, p.payload) == (b"door/eager", b"right behind")


def test_connect_longer_than_the_door_reads(broker):
    """A CONNECT over 16 KiB (a large will): the door hands the connection over unread past
    that, the worker reads the rest, and the will arrives whole when the client dies."""
    will = bytes(range(256)) * 96  # 24 KiB
    with Paho(broker.port, "will-watcher", V5) as w:
        assert w.subscribe("door/will", qos=1) == [1]
        r = Raw(broker.port, 4)
        r.send(connect_packet("big-connect", version=4, will=("door/will", will, 1, False)))
        assert r.expect(CONNACK).reason == 0
        r.close()  # no DISCONNECT: the will is published
        assert w.wait_for("door/will", will).payload == will


def test_partial_connect_times_out_at_the_door(make_broker):
    """Half a CONNECT and then silence: closed after broker.connect_timeout, like no CONNECT."""
    b = make_broker("--set", "broker.connect_timeout=1s")
    with Raw(b.port, 4) as r:
        r.send(connect_packet("half", version=4)[:7])
        assert r.wait_closed() == []
    with Paho(b.port, "after-half", V5):
        pass


def test_door_refusals_are_counted(make_broker):
    """Refusals made at the door show in $SYS like any other refusal."""
    b = make_broker("--set", "broker.connect_rate=1", "--set", "broker.connect_burst=1",
                    "--set", "broker.sys_interval=1s",
                    acl="topic readwrite #\ntopic read $SYS/#\n")
    watcher = Raw(b.port, 4)
    assert watcher.connect("sys-watcher").reason == 0  # the one token
    refused = 0
    for i in range(3):
        with Raw(b.port, 5) as r:
            r.send(connect_packet(f"over-{i}", version=5))
            if r.expect(CONNACK).reason == 0x9F:
                refused += 1
    assert refused >= 1
    watcher.send(subscribe_packet(1, [("$SYS/broker/clients/admission refused", 0)]))
    watcher.expect(SUBACK)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        p = watcher.recv()
        if p.type == PUBLISH and int(p.payload) >= refused:
            break
    else:
        raise AssertionError(f"$SYS admission refused never reached {refused}")
    watcher.close()


def door_thread(pid: int) -> int:
    """The thread id of the broker's front door (named tern-door)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if f.read().strip() == "tern-door":
                return int(tid)
    raise AssertionError("no tern-door thread")


@pytest.mark.parametrize("setting", ["default", "low", "normal"])
def test_accept_priority(make_broker, setting):
    """broker.accept_priority: the door runs at SCHED_IDLE by default (a loop woken by its
    client preempts it at once), at nice 19 with low, untouched with normal; it serves either
    way."""
    args = [] if setting == "default" else ["--set", f"broker.accept_priority={setting}"]
    b = make_broker(*args)
    with Paho(b.port, f"prio-{setting}", V5):
        tid = door_thread(b.proc.pid)
        policy = os.sched_getscheduler(tid)
        if setting == "default":
            assert policy == os.SCHED_IDLE
        else:
            assert policy == os.SCHED_OTHER
            main = os.getpriority(os.PRIO_PROCESS, b.proc.pid)
            assert os.getpriority(os.PRIO_PROCESS, tid) == (19 if setting == "low" else main)
