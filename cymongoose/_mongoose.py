"""The core names in one module, ``cymongoose._mongoose`` (see docs/differences.md)."""

from .connection import Connection
from .constants import *  # noqa: F401,F403
from .constants import event_name
from .manager import Manager
from .messages import HttpMessage, MqttMessage, WsMessage
from .tls import TlsOpts
from .timers import Timer
from ._dispatch import handles
from .rpc import Rpc, RpcReq
from .utils import (base64_decode, base64_encode, crc32, hmac_sha256, http_parse_multipart,
                    http_var, json_get, json_get_bool, json_get_long, json_get_num,
                    json_get_str, log_get, log_set, match, md5, millis, random_bytes,
                    random_str, sha1, sha256, url_encode, url_host, url_is_ssl, url_pass,
                    url_port, url_uri, url_user)

__all__ = [
    "Connection", "HttpMessage", "Manager", "MqttMessage", "WsMessage",
    "TlsOpts",
    "Timer",
    "MG_EV_ACCEPT", "MG_EV_CLOSE", "MG_EV_CONNECT", "MG_EV_ERROR", "MG_EV_HTTP_HDRS",
    "MG_EV_HTTP_MSG", "MG_EV_MQTT_CMD", "MG_EV_MQTT_MSG", "MG_EV_MQTT_OPEN", "MG_EV_OPEN",
    "MG_EV_POLL", "MG_EV_READ", "MG_EV_RESOLVE", "MG_EV_SNTP_TIME", "MG_EV_TLS_HS",
    "MG_EV_USER", "MG_EV_WAKEUP", "MG_EV_WRITE", "MG_EV_WS_CTL", "MG_EV_WS_MSG",
    "MG_EV_WS_OPEN",
    "WEBSOCKET_OP_BINARY", "WEBSOCKET_OP_PING", "WEBSOCKET_OP_PONG", "WEBSOCKET_OP_TEXT",
    "MQTT_PROP_TYPE_BINARY_DATA", "MQTT_PROP_TYPE_BYTE", "MQTT_PROP_TYPE_INT",
    "MQTT_PROP_TYPE_SHORT", "MQTT_PROP_TYPE_STRING", "MQTT_PROP_TYPE_STRING_PAIR",
    "MQTT_PROP_TYPE_VARIABLE_INT",
    "MG_LL_NONE", "MG_LL_ERROR", "MG_LL_INFO", "MG_LL_DEBUG", "MG_LL_VERBOSE",
    "event_name",
    "Rpc", "RpcReq",
    "base64_decode", "base64_encode", "crc32", "hmac_sha256", "http_parse_multipart",
    "http_var", "json_get", "json_get_bool", "json_get_long", "json_get_num",
    "json_get_str", "log_get", "log_set", "match", "md5", "millis", "random_bytes",
    "random_str", "sha1", "sha256", "url_encode", "url_host", "url_is_ssl", "url_pass",
    "url_port", "url_uri", "url_user",
]

# The event declaration for handlers, beside the core names.
_EXTRA = ["handles"]
