"""ANSI SGR to HTML: colours and bold as spans, everything else escaped or dropped."""

from __future__ import annotations

from conveyor.server.ui.ansi import to_html


def test_plain_text_is_escaped() -> None:
    assert to_html('<b>"x" & y</b>') == "&lt;b&gt;&#34;x&#34; &amp; y&lt;/b&gt;"


def test_the_16_colours_and_bold_become_classes() -> None:
    html = to_html("\x1b[1;31mFAILED\x1b[0m ok \x1b[92mgreen\x1b[39m plain")
    assert html == (
        '<span class="ansi-bold ansi-fg-1">FAILED</span> ok '
        '<span class="ansi-fg-10">green</span> plain'
    )


def test_a_reset_with_no_parameters_and_partial_resets() -> None:
    assert to_html("\x1b[4mu\x1b[m n") == '<span class="ansi-underline">u</span> n'
    assert to_html("\x1b[1;2mb\x1b[22mn") == '<span class="ansi-bold ansi-dim">b</span>n'
    assert to_html("\x1b[41mx\x1b[49my") == '<span class="ansi-bg-1">x</span>y'


def test_256_and_24_bit_colours_become_computed_styles() -> None:
    assert to_html("\x1b[38;5;196mr") == '<span style="color:#ff0000">r</span>'
    assert to_html("\x1b[38;5;3mr") == '<span class="ansi-fg-3">r</span>'
    assert to_html("\x1b[48;5;240mg") == '<span style="background:#585858">g</span>'
    assert to_html("\x1b[38;2;1;2;300mt") == '<span style="color:#0102ff">t</span>'


def test_other_escape_sequences_and_controls_are_dropped() -> None:
    text = "\x1b[2K\x1b[1Gprogress\r\x1b]0;title\x07 done\x07\x08\x1bc"
    assert to_html(text) == "progress done"


def test_a_hostile_sequence_cannot_inject_markup() -> None:
    html = to_html('\x1b[31m"><script>alert(1)</script>\x1b[38;2;"onmouseover=x;1m')
    assert "<script>" not in html and '"onmouseover' not in html  # shown as text, quote escaped
    assert "&lt;script&gt;" in html
    assert html.count("<span") == html.count("</span>")


def test_malformed_parameters_do_not_fail() -> None:
    assert to_html("\x1b[38;5mx\x1b[38;2;1mY\x1b[999mz") == "xYz"
