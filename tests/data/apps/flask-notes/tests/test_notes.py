def test_an_empty_list_at_first(client):
    response = client.get("/")
    assert response.status_code == 200
    assert b"<li>" not in response.data


def test_a_note_written_is_listed(client):
    response = client.post("/notes", data={"body": "buy milk"})
    assert response.status_code == 302
    assert b"<li>buy milk</li>" in client.get("/").data


def test_a_note_needs_a_body(client):
    assert client.post("/notes", data={"body": "  "}).status_code == 400


def test_init_db_command(app):
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert "Initialized" in result.output
