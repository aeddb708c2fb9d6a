"""Device settings: validated on the server, saved atomically as JSON."""

import json
import os
import re
import tempfile
from typing import Any, Dict

DEFAULTS: Dict[str, Any] = {
    "device_name": "gateway-1",
    "sample_interval_ms": 1000,
    "mqtt_topic_prefix": "devices/gateway-1",
    "telemetry_enabled": True,
}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


class SettingsError(ValueError):
    """A setting that fails validation; its message names the field."""


def validate(data: Any) -> Dict[str, Any]:
    """The complete settings from ``data`` (a dict with every field), or
    ``SettingsError``."""
    if not isinstance(data, dict):
        raise SettingsError("settings must be a JSON object")
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise SettingsError("unknown setting: %s" % unknown[0])
    missing = sorted(set(DEFAULTS) - set(data))
    if missing:
        raise SettingsError("missing setting: %s" % missing[0])
    name = data["device_name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise SettingsError("device_name: 1-64 letters, digits, spaces, '.', '_' or '-'")
    interval = data["sample_interval_ms"]
    if isinstance(interval, bool) or not isinstance(interval, int) or not 100 <= interval <= 60000:
        raise SettingsError("sample_interval_ms: a whole number from 100 to 60000")
    prefix = data["mqtt_topic_prefix"]
    if (not isinstance(prefix, str) or not 1 <= len(prefix) <= 128 or "+" in prefix
            or "#" in prefix or "\0" in prefix or prefix.startswith("$")):
        raise SettingsError("mqtt_topic_prefix: 1-128 characters, no wildcards, not $...")
    enabled = data["telemetry_enabled"]
    if not isinstance(enabled, bool):
        raise SettingsError("telemetry_enabled: true or false")
    return {"device_name": name, "sample_interval_ms": interval,
            "mqtt_topic_prefix": prefix, "telemetry_enabled": enabled}


class SettingsStore:
    """Settings kept in a JSON file; ``save`` replaces the file atomically."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.current = dict(DEFAULTS)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                self.current = validate(json.load(f))

    def save(self, data: Any) -> Dict[str, Any]:
        """Validate ``data`` and write it (a temporary file in the same
        directory, flushed, then renamed over the old one); raises
        ``SettingsError`` and leaves the file untouched when invalid."""
        settings = validate(data)
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".json", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(settings, f, indent=2, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.current = settings
        return settings
