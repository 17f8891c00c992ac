"""The one HTML page: the catalogue and a form to add to it."""

from __future__ import annotations

from html import escape
from string import Template

from .feedback_widget import with_feedback_widget
from .models import Product

PAGE = Template("""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Conveyor Shop</title>
  <style>
    body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }
    li { margin: 0.25rem 0; }
    footer { color: #666; margin-top: 2rem; font-size: 0.8rem; }
    .banner { background: #fff3c4; padding: 0.5rem 1rem; border-radius: 0.25rem; }
  </style>
</head>
<body>
  <h1>Conveyor Shop</h1>
$banner
  <ul id="products">
$items
  </ul>
  <form id="add-product">
    <input name="name" placeholder="Name" required maxlength="100">
    <input name="price" type="number" step="0.01" min="0.01" placeholder="Price" required>
    <button type="submit">Add</button>
  </form>
  <p id="error" role="alert"></p>
  <footer>version $version</footer>
  <script>
    document.getElementById("add-product").addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = new FormData(event.target);
      const response = await fetch("/api/products", {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({name: form.get("name"), price: Number(form.get("price"))}),
      });
      if (response.ok) { location.reload(); return; }
      document.getElementById("error").textContent = "Could not add: " + response.status;
    });
  </script>
</body>
</html>
""")
PAGE = Template(with_feedback_widget(PAGE.template))  # the feedback widget on the page
EMPTY_ITEM = '    <li class="empty">No products yet.</li>'
BANNER = '  <p id="banner" class="banner">New: the catalogue has a fresh look.</p>'


def render_catalogue(products: list[Product], version: str, *, banner: bool = False) -> str:
    items = "\n".join(_item(p) for p in products) or EMPTY_ITEM
    return PAGE.substitute(items=items, version=escape(version), banner=BANNER if banner else "")


def _item(product: Product) -> str:
    return f'    <li data-id="{product.id}">{escape(product.name)} &mdash; {product.price:.2f}</li>'
