"""A small feedback widget for the shop's pages: a rating (1-5) and a short text, posted
to Conveyor's router at /.conveyor/feedback on the page's own origin.

Plain HTML, CSS and JavaScript, no external assets, no cookie and no identifier of the
user: the router stamps each post with the release that served the page, and the widget
adds the flag variants the page shows (elements with `data-flag` and `data-variant`, the
checkout form's variant of `one-page-checkout`, the catalogue's banner). The inline
<style> and <script> have no attributes, so the page's Content-Security-Policy hashes
them with the rest of the page (security.py). No `$` anywhere: the fragment goes into
`string.Template` pages.
"""

from __future__ import annotations

ENDPOINT = "/.conveyor/feedback"
MAX_TEXT = 1000  # the router's default limit

STYLE = """
#shop-feedback { position: fixed; right: 1rem; bottom: 1rem; max-width: 18rem;
  background: #fff; border: 1px solid #ccc; border-radius: 0.5rem; padding: 0.5rem 0.75rem;
  font: 14px system-ui, sans-serif; box-shadow: 0 2px 8px rgba(0, 0, 0, 0.15); }
#shop-feedback fieldset { border: 0; margin: 0; padding: 0; }
#shop-feedback .stars button { font-size: 1.25rem; background: none; border: 0;
  cursor: pointer; color: #bbb; padding: 0 0.1rem; }
#shop-feedback .stars button.chosen { color: #e8a400; }
#shop-feedback textarea { width: 100%; box-sizing: border-box; margin: 0.25rem 0; }
"""

SCRIPT = (
    """
(function () {
  var form = document.getElementById("shop-feedback-form");
  var status = document.getElementById("shop-feedback-status");
  var stars = form.querySelectorAll(".stars button");
  var rating = 0;
  stars.forEach(function (star) {
    star.addEventListener("click", function () {
      rating = Number(star.getAttribute("data-rating"));
      stars.forEach(function (other) {
        var on = Number(other.getAttribute("data-rating")) <= rating;
        other.classList.toggle("chosen", on);
        other.setAttribute("aria-pressed", on ? "true" : "false");
      });
    });
  });
  function variants() {
    var found = {};
    document.querySelectorAll("[data-flag][data-variant]").forEach(function (element) {
      found[element.getAttribute("data-flag")] = element.getAttribute("data-variant");
    });
    var checkout = document.querySelector("form#checkout[data-variant]");
    if (checkout) found["one-page-checkout"] = checkout.getAttribute("data-variant");
    if (document.getElementById("products")) {
      found["new-catalogue-banner"] = document.getElementById("banner") ? "on" : "off";
    }
    return found;
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!rating) { status.textContent = "Choose a rating first."; return; }
    var text = form.elements.text.value.slice(0, """
    + str(MAX_TEXT)
    + """);
    fetch(\""""
    + ENDPOINT
    + """\", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({rating: rating, text: text, variants: variants()}),
    }).then(function (response) {
      if (response.status === 202) {
        status.textContent = "Thank you for your feedback.";
        form.querySelector("fieldset").disabled = true;
      } else if (response.status === 429) {
        status.textContent = "Thanks, we already have your feedback for now.";
      } else {
        status.textContent = "Could not send your feedback (" + response.status + ").";
      }
    }, function () { status.textContent = "Could not send your feedback."; });
  });
})();
"""
)

STARS = "\n".join(
    f'      <button type="button" data-rating="{n}" aria-label="{n} of 5"'
    f' aria-pressed="false">&#9733;</button>'
    for n in range(1, 6)
)

WIDGET = f"""  <aside id="shop-feedback" aria-label="Feedback">
  <style>{STYLE}</style>
  <form id="shop-feedback-form">
    <fieldset>
    <legend>How is the shop?</legend>
    <div class="stars" role="group" aria-label="Rating">
{STARS}
    </div>
    <textarea name="text" rows="2" maxlength="{MAX_TEXT}"
      placeholder="What could be better? (optional)"></textarea>
    <button type="submit">Send</button>
    </fieldset>
    <p id="shop-feedback-status" role="status"></p>
  </form>
  <script>{SCRIPT}</script>
  </aside>
"""
if "$" in WIDGET:  # it would break the string.Template pages
    raise ValueError("the feedback widget must not contain a dollar sign")


def with_feedback_widget(page: str) -> str:
    """`page` (an HTML document's text) with the widget at the end of its body."""
    return page.replace("</body>", WIDGET + "</body>", 1)
