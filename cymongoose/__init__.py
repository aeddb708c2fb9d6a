"""cymongoose: the Mongoose embedded networking library for CPython and PyPy."""

from ._mongoose import *  # noqa: F401,F403
from ._mongoose import __all__ as _core_all
from ._dispatch import handles
from .aio import AsyncManager
from .errors import ClosedError, LifespanError, ListenError, MongooseError, ThreadError
from .broker import MqttBroker
from .mqtt_client import MqttClient
from .limits import DEFAULT_LIMITS, Limits

__version__ = "0.3.0"

__all__ = list(_core_all) + ["AsyncManager", "handles", "MongooseError", "ClosedError", "ThreadError"]
__all__ += ["MqttBroker", "MqttClient"]
__all__ += ["Limits", "DEFAULT_LIMITS"]
__all__ += ["ListenError", "LifespanError"]
