"""Event codes, WebSocket opcodes, log levels and MQTT property types.

Values are those of Mongoose 7.23.
"""

MG_EV_ERROR = 0
MG_EV_OPEN = 1
MG_EV_POLL = 2
MG_EV_RESOLVE = 3
MG_EV_CONNECT = 4
MG_EV_ACCEPT = 5
MG_EV_TLS_HS = 6
MG_EV_READ = 7
MG_EV_WRITE = 8
MG_EV_CLOSE = 9
MG_EV_HTTP_HDRS = 10
MG_EV_HTTP_MSG = 11
MG_EV_WS_OPEN = 12
MG_EV_WS_MSG = 13
MG_EV_WS_CTL = 14
MG_EV_MQTT_CMD = 15
MG_EV_MQTT_MSG = 16
MG_EV_MQTT_OPEN = 17
MG_EV_SNTP_TIME = 18
MG_EV_WAKEUP = 19
MG_EV_USER = 23

WEBSOCKET_OP_TEXT = 1
WEBSOCKET_OP_BINARY = 2
WEBSOCKET_OP_PING = 9
WEBSOCKET_OP_PONG = 10

MG_LL_NONE = 0
MG_LL_ERROR = 1
MG_LL_INFO = 2
MG_LL_DEBUG = 3
MG_LL_VERBOSE = 4

MQTT_PROP_TYPE_BYTE = 0
MQTT_PROP_TYPE_STRING = 1
MQTT_PROP_TYPE_STRING_PAIR = 2
MQTT_PROP_TYPE_BINARY_DATA = 3
MQTT_PROP_TYPE_VARIABLE_INT = 4
MQTT_PROP_TYPE_INT = 5
MQTT_PROP_TYPE_SHORT = 6

_EVENT_NAMES = {
    value: name
    for name, value in list(globals().items())
    if name.startswith("MG_EV_") and isinstance(value, int)
}


def event_name(ev: int) -> str:
    """Return the constant name of event ``ev``, e.g. ``"MG_EV_HTTP_MSG"``.

    Values above ``MG_EV_USER`` read ``"MG_EV_USER+n"``; anything else unknown
    reads ``"MG_EV_UNKNOWN(ev)"``.  Raises ``TypeError`` for a non-int and
    ``OverflowError`` outside the C ``int`` range.
    """
    if isinstance(ev, bool) or not isinstance(ev, int):
        if hasattr(ev, "__index__"):
            ev = ev.__index__()
        else:
            raise TypeError("an integer is required, got %s" % type(ev).__name__)
    if not -(2**31) <= ev < 2**31:
        raise OverflowError("value too large to convert to int")
    name = _EVENT_NAMES.get(ev)
    if name is not None:
        return name
    if ev > MG_EV_USER:
        return "MG_EV_USER+%d" % (ev - MG_EV_USER)
    return "MG_EV_UNKNOWN(%d)" % ev
