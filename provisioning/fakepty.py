"""A fake device for bench runs and tests: the real agent behind a pseudo-terminal pair, so the real station
tool and real pyserial talk to it as to a sensor on a USB serial cable. `pull_cable()` closes the line
mid-conversation, as yanking the cable does."""

from __future__ import annotations

import os
import select
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
