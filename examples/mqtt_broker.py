"""MQTT broker: a small MQTT 3.1.1 broker any MQTT client can use.

    python examples/mqtt_broker.py --listen mqtt://127.0.0.1:1883
    mosquitto_sub -p 1883 -t 'demo/#' &  mosquitto_pub -p 1883 -t demo/a -m hi

The broker runs inside the Manager's polls, so the same Manager could serve
HTTP or anything else too.  Ctrl-C stops it.
"""

import argparse
from typing import List, Tuple

import cymongoose as cm


def main() -> None:
    parser = argparse.ArgumentParser(description="MQTT broker example")
    parser.add_argument("--listen", default="mqtt://127.0.0.1:1883")
    args = parser.parse_args()
    mgr = cm.Manager()
    broker = cm.MqttBroker(mgr, args.listen)
    print("MQTT broker on mqtt://%s:%d" % (cm.url_host(args.listen), broker.port), flush=True)

    # The broker has no callbacks of its own: a timer shows who is connected.
    shown: List[Tuple[str, ...]] = [()]

    def show_clients() -> None:
        clients = tuple(sorted(broker.clients))
        if clients != shown[0]:
            shown[0] = clients
            print("clients: %s" % (", ".join(clients) or "none"), flush=True)

    mgr.timer_add(200, show_clients, repeat=True)
    mgr.run()


if __name__ == "__main__":
    main()
