from flask import Blueprint, redirect, render_template, request, url_for

from .db import get_db

bp = Blueprint("notes", __name__)


@bp.route("/")
def index():
    notes = get_db().execute("SELECT id, created, body FROM note ORDER BY id DESC").fetchall()
    return render_template("index.html", notes=notes)


@bp.route("/notes", methods=["POST"])
def create():
    body = request.form.get("body", "").strip()
    if not body:
        return "a note needs a body", 400
    db = get_db()
    db.execute("INSERT INTO note (body) VALUES (?)", (body,))
    db.commit()
    return redirect(url_for("notes.index"))
