"""`umbra-cloud serve` (or `python -m cloud serve`): the reference cloud on this machine.

On first start it makes a development CA, server certificate (plus a backup key named in the pin set),
a device certificate and key, the fleet root key that signs pin sets, and the dev device's first signing key,
all under `<dir>/pki/`. Copy those to a bench device (or point its config at them)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from cloud import ops_cli
from cloud.app import Cloud, CloudConfig, serve_forever
from cloud.errors import AccessError, DbError
from cloud.push import PushConfig
from hal.clock import SystemClock
from ota.errors import OtaError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="umbra-cloud", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the HTTPS reference cloud")
    s.add_argument("--dir", default="cloud-data", help="data folder (PKI, SQLite store, OTA repo)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8443)
    s.add_argument("--ota-dir", default="", help="folder served at /ota/ (default <dir>/ota)")
    s.add_argument("--database", default="", help="postgresql:// URL (workers share it); default SQLite in --dir")
    s.add_argument("--api-port", type=int, default=8444, help="the customer/ops API and dashboard (API keys)")
    s.add_argument("--daily-epsilon", type=float, default=0.0, metavar="EPS",
                   help="the fleet's [privacy] daily_epsilon: a device whose releases of a stream pass it on a day "
                        "is flagged (budget_passed); default 0: epsilon times the windows in a day")
    s.add_argument("--mqtt", default="", metavar="HOST[:PORT]", help="push to this MQTT broker (topics: docs/CLOUD.md)")
    ops_cli.add_parsers(sub)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.cmd != "serve":
        try:
            return int(args.func(args))
        except (DbError, AccessError, OtaError) as e:
            print(f"umbra-cloud: {e}", file=sys.stderr)
            return 2
    try:
        host, _, mport = args.mqtt.partition(":")
        if mport and not mport.isdigit():
            raise ValueError(f"--mqtt: the port {mport!r} is not a number")
        push = PushConfig(mqtt_host=host, mqtt_port=int(mport or 1883))
        push.validate()
        config = CloudConfig(data_dir=args.dir, host=args.host, port=args.port, ota_dir=args.ota_dir,
                             database=args.database, api_port=args.api_port, push=push,
                             daily_epsilon=args.daily_epsilon)
        config.validate()
    except ValueError as e:
        print(f"umbra-cloud: {e}", file=sys.stderr)
        return 2
    try:
        cloud = Cloud(config, SystemClock())
        asyncio.run(serve_forever(cloud))
    except KeyboardInterrupt:
        pass
    except (OSError, DbError) as e:  # a folder it cannot write, a port taken, a database that does not answer
        print(f"umbra-cloud: cannot serve: {' '.join(str(e).split())}", file=sys.stderr)  # (libpq's hint: one line)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
