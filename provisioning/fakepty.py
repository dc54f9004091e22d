"""A fake device for bench runs and tests: the real agent behind a pseudo-terminal pair, so the real station
tool and real pyserial talk to it as to a sensor on a USB serial cable. `pull_cable()` closes the line
mid-conversation, as yanking the cable does. `Cable` is a serial cable with a named port at each end (two
pseudo-terminal pairs joined master to master); as a program it holds one open for a container or a second
process (packaging/firstboot_test.sh):

    python -m provisioning.fakepty cable --owner 0:20 --mode 660   # prints the two ports; runs until SIGTERM
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import threading
import tty

from provisioning.agent import DeviceAgent


class FakeDevice:
    def __init__(self, agent: DeviceAgent, *, cut_after_requests: int | None = None) -> None:
        self.agent = agent
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self.cut_after_requests = cut_after_requests  # pull the cable after this many answered requests
        self.answered = 0
        self.wire: list[tuple[str, bytes]] = []  # every byte each way, as a line tap would see it
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._open = True
        self._thread = threading.Thread(target=self._serve, name=f"fake-device-{self.port}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.master], [], [], 0.05)
                if not ready:
                    continue
                data = os.read(self.master, 4096)
            except OSError:
                return  # the line is gone
            if not data:
                return
            self.wire.append(("to_device", data))
            for frame in self.agent.feed(data):
                if self.cut_after_requests is not None and self.answered >= self.cut_after_requests:
                    self.pull_cable()
                    return
                self.wire.append(("from_device", frame))
                try:
                    os.write(self.master, frame)
                except OSError:
                    return
                self.answered += 1

    def pull_cable(self) -> None:
        self._stop.set()
        with self._lock:
            if self._open:
                self._open = False
                os.close(self.master)

    def close(self) -> None:
        self.pull_cable()
        self._thread.join(2)
        try:
            os.close(self.slave)
        except OSError:
            pass


class Cable:
    """Two pty pairs joined master to master: a serial cable with a named port at each end. It holds both ends'
    slaves open, so a side that closes its port and opens it again (a station run, a restarted agent) finds the
    line as it was, and bytes written to one port before the other is opened wait in the line."""

    def __init__(self) -> None:
        self.pairs = [os.openpty(), os.openpty()]
        for _, slave in self.pairs:
            tty.setraw(slave)
        self.ports = [os.ttyname(s) for _, s in self.pairs]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        a, b = self.pairs[0][0], self.pairs[1][0]
        while not self._stop.is_set():
            ready, _, _ = select.select([a, b], [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                    os.write(b if fd == a else a, data)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for m, s in self.pairs:
            os.close(m)
            os.close(s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m provisioning.fakepty", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cable", help="print a serial cable's two ports, then join them until SIGTERM or SIGINT")
    c.add_argument("--owner", default="", metavar="UID:GID", help="owner of both ports (as a UART's root:dialout)")
    c.add_argument("--mode", default="620", help="octal mode of both ports (a UART's: 660)")
    a = ap.parse_args(argv)
    cable = Cable()
    try:
        for port in cable.ports:
            if a.owner:
                uid, _, gid = a.owner.partition(":")
                os.chown(port, int(uid), int(gid or -1))
            os.chmod(port, int(a.mode, 8))
    except (OSError, ValueError) as e:
        print(f"fakepty: {e}", file=sys.stderr)
        cable.close()
        return 2
    print(*cable.ports, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    cable.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
