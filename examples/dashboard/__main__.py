"""The device dashboard: live values, an MQTT broker, settings and uploads.

    python examples/dashboard --listen http://127.0.0.1:8000

The password comes from $DASHBOARD_PASSWORD, else from the "password" key of
the JSON file given with --config, else a random one is printed at start.
Ctrl-C stops it.
"""

import argparse
import json
import os
import secrets
import sys

from app import MAX_UPLOAD, Dashboard


def password_from(config: str) -> "tuple[str, str]":
    """(password, where it came from)."""
    env = os.environ.get("DASHBOARD_PASSWORD")
    if env:
        return env, "$DASHBOARD_PASSWORD"
    if config:
        with open(config, encoding="utf-8") as f:
            value = json.load(f).get("password")
        if not isinstance(value, str) or not value:
            sys.exit("%s: a non-empty \"password\" string is required" % config)
        return value, config
    return secrets.token_urlsafe(9), "generated"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="http://127.0.0.1:8000",
                        help="HTTP URL of the dashboard (port 0 picks a free port)")
    parser.add_argument("--mqtt", default="mqtt://127.0.0.1:1883",
                        help="URL of the built-in MQTT broker (port 0 picks a free port)")
    parser.add_argument("--config", default="", help="JSON file with a \"password\"")
    parser.add_argument("--data", default=os.path.join("build", "dashboard"),
                        help="folder for settings.json and uploads (default build/dashboard)")
    parser.add_argument("--max-upload", type=int, default=MAX_UPLOAD,
                        help="largest upload in bytes (default %d)" % MAX_UPLOAD)
    args = parser.parse_args()
    password, source = password_from(args.config)
    dash = Dashboard(args.listen, args.mqtt, password,
                     os.path.join(args.data, "settings.json"),
                     os.path.join(args.data, "uploads"), args.max_upload)
    host = args.listen.split("://", 1)[-1].rsplit(":", 1)[0] or "127.0.0.1"
    print("Dashboard on http://%s:%d/" % (host, dash.port))
    print("MQTT broker on mqtt://%s:%d" % (host, dash.broker.port))
    if source == "generated":
        print("Password (generated; set DASHBOARD_PASSWORD to choose one): %s" % password)
    else:
        print("Password from %s" % source)
    print("Press Ctrl+C to stop", flush=True)
    dash.run()


if __name__ == "__main__":
    main()
