"""The dashboard example (examples/dashboard) in a child process."""

import json
import os
import re
from typing import Any, Dict, Optional

from support.paths import EXAMPLES
from support.subprocs import Proc

PASSWORD = "correct horse"


class Dashboard(Proc):
    """``python examples/dashboard`` on free ports; ``url``, ``mqtt_port``,
    ``data`` (its folder) come from its start."""

    def __init__(self, data: str, settings: Optional[Dict[str, Any]] = None,
                 max_upload: int = 64 * 1024) -> None:
        os.makedirs(data, exist_ok=True)
        config = os.path.join(data, "config.json")
        with open(config, "w") as f:
            json.dump({"password": PASSWORD}, f)
        if settings is not None:
            with open(os.path.join(data, "settings.json"), "w") as f:
                json.dump(settings, f)
        super().__init__([os.path.join(EXAMPLES, "dashboard"), "--listen", "http://127.0.0.1:0",
                          "--mqtt", "mqtt://127.0.0.1:0", "--config", config, "--data", data,
                          "--max-upload", str(max_upload)])
        self.data = data
        self.port = int(self.wait_for(re.compile(r"Dashboard on http://127\.0\.0\.1:(\d+)/"))
                        .group(1))
        self.mqtt_port = int(self.wait_for(re.compile(r"MQTT broker on mqtt://127\.0\.0\.1:(\d+)"))
                             .group(1))
        self.wait_for("Press Ctrl")
        self.url = "http://127.0.0.1:%d" % self.port

    def settings_file(self) -> Optional[Dict[str, Any]]:
        path = os.path.join(self.data, "settings.json")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            data: Dict[str, Any] = json.load(f)
            return data
