"""The supervisor behind `handoff airflow up`: a service runs in the background, is started again when it dies,
is reported dead when its supervisor is gone, and `stop` leaves no process of its session behind."""

from __future__ import annotations

import os
import signal
import sys

from handoff import supervisor

from tests.waiting import wait_until

# a stand-in service that also starts a grandchild in a process group of its own, as Airflow does with each task
SERVICE = ("import os, subprocess, sys, time; "
           "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], process_group=0); "
           "time.sleep(600)")


def test_a_service_is_restarted_reported_dead_and_stopped_without_leftovers(tmp_path):
    service = supervisor.Service("dummy", tmp_path)
    sup = supervisor.start(service, [sys.executable, "-c", SERVICE], os.environ)
    first = wait_until(service.child_pid, "the service to start", timeout=30)
    assert service.alive() and service.describe().startswith(f"running (pid {first}, supervisor {sup}")
    assert wait_until(lambda: len(supervisor.pids_in_sessions({sup})) == 3, "the grandchild", timeout=30)

    os.kill(first, signal.SIGKILL)  # a crash: the supervisor starts it again (after 2 s)
    second = wait_until(lambda: service.child_pid() not in {None, first} and service.child_pid(), "a restart",
                        timeout=30)
    assert service.child()["restarts"] == 1 and "restarted 1×" in service.describe()

    os.kill(sup, signal.SIGKILL)  # the supervisor itself gone: status says so, though its command still runs
    wait_until(lambda: service.supervisor_pid() is None, "the supervisor to die", timeout=30)
    assert not service.alive() and service.describe().startswith("DEAD (supervisor gone")
    leftovers = supervisor.pids_in_sessions({sup})
    assert second in leftovers and len(leftovers) >= 2  # the restarted command and both grandchildren

    assert supervisor.stop([service], timeout=10) == []
    assert supervisor.pids_in_sessions({sup}) == []
    assert not service.pidfile.exists() and service.describe() == "stopped"
