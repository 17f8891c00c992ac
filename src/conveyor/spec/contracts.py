"""The `contracts:` section of conveyor.yml: the services this one calls and is called by.

    contracts:
      providers:                      # this service is their consumer
        payments: {project: ../payments}
      consumers:                      # this service is their provider
        shop: {project: ../shop}

Each partner is another Conveyor project (a folder with its conveyor.yml), whose records
(pacts, verifications, what runs where) Conveyor reads to answer `can-i-deploy` and to
gate `deploy`. A service without this section has no contracts and is not gated.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

SERVICE_NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class Partner(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str = Field(
        min_length=1,
        description="The partner's Conveyor project: the folder of its conveyor.yml, "
        "relative to this file's folder.",
    )
    state: str | None = Field(
        default=None,
        min_length=1,
        description="Its state folder when not `<project>/.conveyor` (relative to this file).",
    )


class Contracts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    providers: dict[str, Partner] = Field(
        default_factory=dict,
        description="Services this one calls, by name: its pacts with them must be verified "
        "by the versions running where it deploys.",
    )
    consumers: dict[str, Partner] = Field(
        default_factory=dict,
        description="Services that call this one, by name: their pacts, as deployed where "
        "this one deploys, must be verified by the version deployed.",
    )

    @property
    def declared(self) -> bool:
        return bool(self.providers or self.consumers)
