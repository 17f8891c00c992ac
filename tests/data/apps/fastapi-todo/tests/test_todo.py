import pytest
from fastapi.testclient import TestClient

from todo.main import app


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("TODO_DB", str(tmp_path / "todo.db"))
    return TestClient(app)


def test_health(client):
    assert client.get("/health").json() == {"status": "ok"}


def test_items_added_are_listed(client):
    assert client.post("/items", json={"title": "write tests"}).status_code == 201
    assert [item["title"] for item in client.get("/items").json()] == ["write tests"]


def test_an_empty_title_is_refused(client):
    assert client.post("/items", json={"title": " "}).status_code == 422
