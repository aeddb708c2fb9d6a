"""MQTT client: subscribe to a topic, publish to it, print what arrives.

    python examples/mqtt_client.py --url mqtt://127.0.0.1:1883 --topic demo/# --count 3
"""

import argparse
import sys

import cymongoose as cm


def main() -> int:
    parser = argparse.ArgumentParser(description="MQTT client example")
    parser.add_argument("--url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--topic", default="cymongoose/demo")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    received: list = []
    errors: list = []

    def handler(conn: cm.Connection, ev: int, data: object) -> None:
        if ev == cm.MG_EV_MQTT_OPEN:            # CONNACK; data is its return code
            if data != 0:
                errors.append("broker refused: %s" % data)
                return
            conn.mqtt_sub(args.topic, qos=1)
            for i in range(args.count):
                conn.mqtt_pub(args.topic, "message %d" % i, qos=1)
        elif ev == cm.MG_EV_MQTT_MSG:
            msg: cm.MqttMessage = data           # type: ignore[assignment]
            received.append("%s: %s" % (msg.topic, msg.text))
            print(received[-1], flush=True)
        elif ev == cm.MG_EV_ERROR:
            errors.append(data)

    with cm.Manager() as mgr:
        conn = mgr.mqtt_connect(args.url, handler, client_id="cymongoose-example", keepalive=30)
        deadline = cm.millis() + int(args.timeout * 1000)
        while len(received) < args.count and not errors and cm.millis() < deadline:
            mgr.poll(50)
        if not conn.is_closing:
            conn.mqtt_disconnect()
            mgr.poll(50)
    if len(received) < args.count:
        print("error: %s" % (errors[0] if errors else "timed out"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
