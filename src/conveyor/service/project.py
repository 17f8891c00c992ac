"""Where a project's spec, workspace source and state live."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.errors import ConveyorError
from conveyor.service.recovery import reap_orphans

if TYPE_CHECKING:
    from conveyor.store.store import Store

SPEC_FILENAME = "conveyor.yml"
STATE_DIRNAME = ".conveyor"
STATE_GITIGNORE = "*\n!exceptions.yml\n!baseline.yml\n"


@dataclass(frozen=True)
class Project:
    directory: Path  # the folder holding conveyor.yml: the workspace source
    spec_path: Path
    state_dir: Path
    database_url: str | None

    @classmethod
    def locate(cls, spec: Path | None = None, cwd: Path | None = None) -> Project:
        spec_path = (spec or (cwd or Path.cwd()) / SPEC_FILENAME).resolve()
        if spec is not None and spec.is_dir():
            spec_path = (spec / SPEC_FILENAME).resolve()
        directory = spec_path.parent
        state = os.environ.get("CONVEYOR_STATE_DIR")
        state_dir = Path(state).resolve() if state else directory / STATE_DIRNAME
        return cls(
            directory=directory,
            spec_path=spec_path,
            state_dir=state_dir,
            database_url=os.environ.get("CONVEYOR_DATABASE_URL") or None,
        )

    def ensure_state_dir(self) -> None:
        from conveyor.store.private import private_dir

        private_dir(self.state_dir)  # 0700: its records are nobody else's to read
        # Keeps the state folder (and secrets.env) out of `git status`, so it never makes
        # the tree dirty, but lets the exceptions and baseline files be committed: policy.
        ignore = self.state_dir / ".gitignore"
        if not ignore.exists() or ignore.read_text() != STATE_GITIGNORE:
            ignore.write_text(STATE_GITIGNORE)

    def has_state(self) -> bool:
        """Whether a store already exists: the state folder's database, or a database URL."""
        return bool(self.database_url) or (self.state_dir / "conveyor.db").exists()

    def open_store(self, *, create: bool = True) -> Store:
        if not create and not self.has_state():
            raise ConveyorError(
                f"no Conveyor state in {self.state_dir}",
                hint="`conveyor run` records the first run there",
            )
        from conveyor.store.store import Store

        self.ensure_state_dir()
        store = Store(self.state_dir, self.database_url)
        self.recover(store)
        return store

    def recover(self, store: Store) -> None:
        """Mark runs whose process died as interrupted, and end their orphaned jobs."""
        reap_orphans(self.run_dir(run_id) / "workspace" for run_id in store.recover_interrupted())

    def run_dir(self, run_id: int) -> Path:
        return self.state_dir / "runs" / str(run_id)
