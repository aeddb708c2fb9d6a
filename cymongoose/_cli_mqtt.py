"""``cymongoose mqtt-broker`` options: passwords, ACLs, limits, persistence, a bridge."""

import argparse
from typing import Callable

from ._cli_util import UsageError
from .broker import MqttBroker
from .manager import Manager

BrokerFactory = Callable[[Manager, str], MqttBroker]


def add_broker_options(parser: argparse.ArgumentParser) -> None:
    """The MqttBroker options of the ``mqtt-broker`` command."""
    parser.usage = "%(prog)s [-h] [--listen URL] [options]"  # the options list is long
    g = parser.add_argument_group("clients")
    g.add_argument("--password-file", metavar="FILE",
                   help="mosquitto password file (made by mosquitto_passwd); anonymous "
                        "clients are then refused unless --allow-anonymous")
    g.add_argument("--allow-anonymous", action="store_true",
                   help="admit clients without a user name even with --password-file")
    g.add_argument("--acl-file", metavar="FILE", help="mosquitto ACL file")
    g.add_argument("--max-connections", type=int, default=0, metavar="N",
                   help="refuse clients beyond N (default 0: no limit)")
    g.add_argument("--max-inflight", type=int, default=20, metavar="N",
                   help="QoS 1/2 messages per client awaiting acknowledgement (default 20)")
    g.add_argument("--max-queued", type=int, default=1000, metavar="N",
                   help="messages queued per client; newer ones are dropped (default 1000)")
    g.add_argument("--max-packet-size", type=int, default=0, metavar="BYTES",
                   help="close connections that send bigger packets (default 0: 3 MB)")
    g.add_argument("--sys-interval", type=float, default=10, metavar="SECONDS",
                   help="publish $SYS/broker statistics this often (default 10; 0: never)")
    g.add_argument("--persistence-file", metavar="FILE",
                   help="keep sessions and retained messages in FILE across restarts")
    b = parser.add_argument_group("bridge")
    b.add_argument("--bridge", metavar="URL", help="bridge to the MQTT 5 broker at URL")
    b.add_argument("--bridge-topic", action="append", default=[], metavar="SPEC",
                   help='a mosquitto bridge topic line, e.g. "sensors/# out 1" '
                        "(repeatable; PATTERN [in|out|both [QOS [LOCAL REMOTE]]])")
    b.add_argument("--bridge-name", default="bridge", metavar="NAME",
                   help="client id cymongoose-bridge-NAME upstream (default: bridge)")
    b.add_argument("--bridge-username", default="", metavar="USER")
    b.add_argument("--bridge-password", default="", metavar="PASSWORD")


def broker_factory(args: argparse.Namespace) -> BrokerFactory:
    """Builds the broker the options ask for; bad values raise ``UsageError``."""
    if args.bridge_topic and not args.bridge:
        raise UsageError("--bridge-topic needs --bridge")
    if args.bridge and not args.bridge_topic:
        raise UsageError("--bridge needs at least one --bridge-topic")

    def make(mgr: Manager, url: str) -> MqttBroker:
        try:
            broker = MqttBroker(
                mgr, url, password_file=args.password_file, acl_file=args.acl_file,
                allow_anonymous=True if args.allow_anonymous else None,
                max_connections=args.max_connections, max_inflight=args.max_inflight,
                max_queued=args.max_queued, max_packet_size=args.max_packet_size,
                sys_interval=args.sys_interval, persistence_file=args.persistence_file)
            if args.bridge:
                broker.add_bridge(args.bridge, args.bridge_topic, name=args.bridge_name,
                                  username=args.bridge_username,
                                  password=args.bridge_password)
        except (ValueError, OSError) as exc:
            raise UsageError(str(exc)) from None
        return broker

    return make
