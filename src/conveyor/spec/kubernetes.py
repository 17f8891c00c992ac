"""An environment's `kubernetes:` section: where `runtime: kubernetes` puts its objects.

    environments:
      production:
        runtime: kubernetes
        kubernetes:
          namespace: shop
          gateway: public              # the Gateway the HTTPRoute attaches to
          registry: registry.example.org/team   # images are pulled as <registry>/<repo>@<digest>
          judge_url: http://conveyor.conveyor.svc:8080   # Conveyor's server, seen from the cluster
          judge_token_secret: conveyor-judge   # a Secret with key `token`: an API token
          context: kind-conveyor       # kubeconfig context (default: the current one)

Rendering and applying are in deploy/kubernetes/ (docs/kubernetes.md).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# A DNS-1123 label: what Kubernetes accepts as a namespace or object name.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class KubernetesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(default="default", pattern=DNS_LABEL)
    gateway: str = Field(
        default="conveyor", pattern=DNS_LABEL, description="The Gateway the HTTPRoute attaches to."
    )
    gateway_namespace: str | None = Field(
        default=None, pattern=DNS_LABEL, description="Its namespace; default: `namespace`."
    )
    hostnames: list[str] = Field(default_factory=list, description="The HTTPRoute's hostnames.")
    registry: str = Field(
        default="localhost:5000",
        pattern=r"^[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9._/-]+)?$",
        description="Images are pulled as <registry>/<repository>@<digest>.",
    )
    container_port: int = Field(default=8000, ge=1, le=65535, description="The app's port.")
    judge_url: str = Field(
        default="http://conveyor.conveyor.svc:8080",
        pattern=r"^https?://[^/\s]+(/[^\s]*)?$",
        description="Conveyor's server as the cluster reaches it (the analysis asks its judge).",
    )
    judge_token_secret: str = Field(
        default="conveyor-judge",
        pattern=DNS_LABEL,
        description="A Secret in `namespace` whose key `token` is a Conveyor API token.",
    )
    context: str | None = Field(default=None, description="kubeconfig context; default: current.")
    kubeconfig: str | None = Field(default=None, description="default: ~/.kube/config")
