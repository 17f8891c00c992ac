"""The feedback widget on the catalogue page: its form, and where it posts (Conveyor's
router answers /.conveyor/feedback; the shop itself never sees the posts)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.feedback_widget import ENDPOINT, WIDGET, with_feedback_widget


def test_the_catalogue_page_carries_the_widget(client: TestClient) -> None:
    page = client.get("/").text
    assert 'id="shop-feedback-form"' in page
    assert page.count('data-rating="') == 5
    assert f'fetch("{ENDPOINT}"' in page
    assert page.index('id="shop-feedback"') < page.index("</body>")


def test_the_widget_needs_nothing_from_elsewhere() -> None:
    assert "http://" not in WIDGET and "https://" not in WIDGET and " src=" not in WIDGET
    assert "cookie" not in WIDGET.lower()


def test_the_widget_goes_once_at_the_end_of_the_body() -> None:
    page = with_feedback_widget("<html><body><p>hi</p></body></html>")
    assert page.endswith(WIDGET + "</body></html>")
