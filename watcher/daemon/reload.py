"""Config reloads: an edited config file is applied (an invalid edit is refused and the last
good config stays) and its listeners are told, through hooks; candidates it approves are then
swapped in."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from storage.audit import record_event
from storage.db import session_scope
from watcher.config import ConfigError, WardenConfig, fingerprint, load_config
from watcher.daemon.context import DaemonContext

log = structlog.get_logger("warden.daemon")
ConfigHook = Callable[[WardenConfig], None]


class ConfigReloader:
    """`validators` may refuse a new config by raising ConfigError (nothing is applied then);
    `set_config` makes it current; `listeners` then react to it (`on_config_changed`), in
    order; `after_reload` runs last (the approvals it may carry)."""

    def __init__(
        self,
        ctx: DaemonContext,
        *,
        set_config: ConfigHook,
        validators: Sequence[ConfigHook] = (),
        listeners: Sequence[ConfigHook] = (),
        after_reload: Callable[[], None] = lambda: None,
    ) -> None:
        self.ctx, self.set_config = ctx, set_config
        self.validators, self.listeners, self.after_reload = validators, listeners, after_reload
        self.fingerprint = fingerprint(ctx.config_path)

    def reload_if_changed(self) -> bool:
        current = fingerprint(self.ctx.config_path)
        if current == self.fingerprint:
            return False
        self.fingerprint = current
        new = self.load()
        if new is None:
            return False
        self.set_config(new)
        for listener in self.listeners:
            listener(new)
        with session_scope(self.ctx.engine) as session:
            record_event(session, "config_reloaded", actor="config")
        log.info("config_reloaded", models=list(new.models))
        self.after_reload()
        return True

    def load(self) -> WardenConfig | None:
        """The edited config, if valid and accepted by every validator; None when refused
        (logged, and recorded when the file itself is invalid)."""
        try:
            new = load_config(self.ctx.config_path)
        except ConfigError as exc:
            log.error("config_rejected", error=str(exc))
            with session_scope(self.ctx.engine) as session:
                record_event(session, "config_rejected", actor="config", error=str(exc))
            return None
        old = self.ctx.config()
        if new.kafka != old.kafka or new.storage != old.storage:
            log.warning(
                "config_restart_needed",
                reason="kafka or storage settings changed; they take effect at the next start",
            )
            new = new.model_copy(update={"kafka": old.kafka, "storage": old.storage})
        try:
            for validate in self.validators:
                validate(new)
        except ConfigError as exc:  # e.g. the webhook key's variable is not set
            log.error("config_rejected", error=str(exc))
            return None
        return new
