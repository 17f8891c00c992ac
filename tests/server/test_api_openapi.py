"""Every resource of the REST API is in the OpenAPI document, with a summary, and answers
401 to a caller without a login before anything is read."""

from __future__ import annotations

from server.conftest import ServerUnderTest

PATHS = {
    "/api/v1/runs": "get",
    "/api/v1/runs/{run_id}": "get",
    "/api/v1/runs/{run_id}/jobs/{job}": "get",
    "/api/v1/runs/{run_id}/jobs/{job}/log": "get",
    "/api/v1/runs/{run_id}/reports": "get",
    "/api/v1/runs/{run_id}/reports/{kind}": "get",
    "/api/v1/runs/{run_id}/approvals": "get",
    "/api/v1/runs/{run_id}/approve": "post",
    "/api/v1/runs/{run_id}/reject": "post",
    "/api/v1/approvals": "get",
    "/api/v1/images": "get",
    "/api/v1/images/{ref}": "get",
    "/api/v1/environments": "get",
    "/api/v1/environments/{environment}": "get",
    "/api/v1/environments/{environment}/history": "get",
    "/api/v1/environments/{environment}/releases/{deploy_id}": "get",
    "/api/v1/environments/{environment}/signals": "get",
    "/api/v1/environments/{environment}/records/{deploy_id}": "get",
    "/api/v1/environments/{environment}/diff": "get",
    "/api/v1/environments/{environment}/flags": "get",
    "/api/v1/environments/{environment}/flags/{name}": "put",
    "/api/v1/environments/{environment}/flags/{name}/rollout": "post",
    "/api/v1/environments/{environment}/flags/{name}/kill": "post",
    "/api/v1/audit": "get",
    "/api/v1/audit/verify": "get",
}
EXAMPLE = {"run_id": "1", "job": "build", "kind": "tests", "ref": "app:v1", "deploy_id": "1"}


def test_every_resource_is_documented_and_needs_a_login(served: ServerUnderTest) -> None:
    document = served.client.get("/api/v1/openapi.json").json()
    for path, method in PATHS.items():
        operation = document["paths"][path][method]
        assert operation.get("summary"), path
        url = path.format(**EXAMPLE, environment="staging", name="banner")
        answer = served.client.request(method.upper(), url, json={})
        assert answer.status_code == 401, url
