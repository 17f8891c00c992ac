"""A to-do list over HTTP."""

import os
import sqlite3
from contextlib import closing

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

app = FastAPI(title="todo")


def connect() -> sqlite3.Connection:
    connection = sqlite3.connect(os.environ.get("TODO_DB", "todo.db"))
    connection.execute(
        "CREATE TABLE IF NOT EXISTS item (id INTEGER PRIMARY KEY, title TEXT NOT NULL,"
        " done INTEGER NOT NULL DEFAULT 0)"
    )
    return connection


class NewItem(BaseModel):
    title: str


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/items")
def list_items() -> list[dict[str, object]]:
    with closing(connect()) as db:
        rows = db.execute("SELECT id, title, done FROM item ORDER BY id").fetchall()
    return [{"id": i, "title": t, "done": bool(d)} for i, t, d in rows]


@app.post("/items", status_code=201)
def add_item(item: NewItem) -> dict[str, object]:
    if not item.title.strip():
        raise HTTPException(status_code=422, detail="a title is needed")
    with closing(connect()) as db, db:
        cursor = db.execute("INSERT INTO item (title) VALUES (?)", (item.title,))
    return {"id": cursor.lastrowid, "title": item.title, "done": False}
