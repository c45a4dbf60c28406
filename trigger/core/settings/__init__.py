"""The one settings object: a TOML file plus ``BAUPLAN_TRIGGER_...`` overrides.

Built once by the CLI (or a test) and passed down; nothing else reads the
environment for configuration. Secrets are never values here, only the names
of the environment variables that hold them.

``load`` finds and reads the file and applies the environment; ``model`` is
``Settings`` and its cross-checks; ``sections`` the top-level tables;
``trigger`` one ``[[triggers]]`` entry, whose source sections live in ``hooks``,
``files`` and ``schedule``, its queueing in ``flow``; ``notify`` the
``[notifiers.<name>]`` tables.
"""

from trigger.core.settings.load import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    SYSTEM_DB_ENV,
    build_settings,
    find_config,
    load_settings,
)
from trigger.core.settings.model import ENV_PREFIX, Settings, check_settings
from trigger.core.settings.sections import (
    ApiSettings,
    BauplanSettings,
    EventsSettings,
    Outcome,
    QueueSettings,
    ServiceSettings,
)
from trigger.core.settings.trigger import TriggerConfig

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "ENV_PREFIX",
    "SYSTEM_DB_ENV",
    "ApiSettings",
    "BauplanSettings",
    "EventsSettings",
    "Outcome",
    "QueueSettings",
    "ServiceSettings",
    "Settings",
    "TriggerConfig",
    "build_settings",
    "check_settings",
    "find_config",
    "load_settings",
]
