"""MqttBroker for bench/mqtt_bench.py: ``python mqtt_broker.py PORT plain|features [UPSTREAM]``.

*plain* is ``MqttBroker(mgr, url, sys_interval=0)``.  *features* switches on
what a gateway runs with: an ACL file (every topic allowed to anonymous
clients, so each publish and each new route consults it), kept sessions (the
load's subscribers connect with clean_session=0), ``$SYS`` every 10 s and a
bridge to the mosquitto at port UPSTREAM forwarding ``gw/# out 0`` (a topic
the load does not use: the bridge's cost is its per-publish check).
"""

import os
import signal
import sys
import tempfile

import cymongoose as cm


def main() -> None:
    port, variant = int(sys.argv[1]), sys.argv[2]
    mgr = cm.Manager()
    url = "mqtt://127.0.0.1:%d" % port
    if variant == "features":
        acl = os.path.join(tempfile.mkdtemp(), "acl")
        with open(acl, "w") as f:
            f.write("topic readwrite #\n")
        broker = cm.MqttBroker(mgr, url, acl_file=acl, max_queued=100000)
        broker.add_bridge("mqtt://127.0.0.1:%s" % sys.argv[3], ["gw/# out 0"], name="bench")
    else:
        try:
            broker = cm.MqttBroker(mgr, url, sys_interval=0, max_queued=100000)
        except TypeError:  # an older checkout, measured for comparison: no options
            broker = cm.MqttBroker(mgr, url)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    print("READY", broker.port, flush=True)
    while not stop:
        mgr.poll(100)
    broker.close()
    mgr.close()


if __name__ == "__main__":
    main()
