"""HTML from mail is shown to analysts: it must not run code or call home, and reads well as text."""

from switchboard.inbound.html import html_to_text, sanitize_html


def test_scripts_and_event_handlers_are_removed():
    cleaned = sanitize_html('<p onclick="steal()">Hi</p><script>steal()</script>'
                            '<img src="cid:logo@x" onerror="steal()"><a href="javascript:steal()">x</a>'
                            '<iframe src="https://evil.example/"></iframe><style>p{}</style>')
    assert "steal" not in cleaned and "<script" not in cleaned and "iframe" not in cleaned
    assert "evil.example" not in cleaned and "p{}" not in cleaned
    assert "<p>Hi</p>" in cleaned


def test_remote_images_are_dropped_inline_ones_kept():
    cleaned = sanitize_html('<img src="https://tracker.example/pixel.gif" alt="pixel">'
                            '<img src="cid:part1.abc@example.com" alt="logo">'
                            '<img src="data:image/png;base64,iVBORw0KGgo=" alt="dot">'
                            '<img src="data:image/svg+xml;base64,PHN2Zz4=" alt="svg">'
                            '<img src="//cdn.example/a.png"><img src="/relative.png">')
    assert "tracker.example" not in cleaned and "cdn.example" not in cleaned and "relative.png" not in cleaned
    assert 'src="cid:part1.abc@example.com"' in cleaned
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in cleaned
    assert "svg+xml" not in cleaned
    assert cleaned.count("<img") == 6  # the pictures' alt text still shows where they were


def test_styles_cannot_load_anything_but_keep_their_colour():
    cleaned = sanitize_html('<p style="color: red; background: url(https://t.example/x.gif)">a</p>'
                            '<p style="color: blue; position: fixed">b</p>')
    assert "t.example" not in cleaned and "fixed" not in cleaned
    assert 'style="color:blue"' in cleaned


def test_links_are_kept_safe():
    cleaned = sanitize_html('<a href="https://example.com/kb/1">KB</a><a href="mailto:desk@example.org">mail</a>'
                            '<a href="data:text/html;base64,PHNjcmlwdD4=">bad</a>')
    assert 'href="https://example.com/kb/1"' in cleaned and 'href="mailto:desk@example.org"' in cleaned
    assert "data:text" not in cleaned
    assert cleaned.count('rel="noopener noreferrer"') == 3


def test_html_to_text_reads_like_the_mail():
    text = html_to_text("<html><head><title>T</title><style>p{}</style></head><body>"
                        "<p>Hello&nbsp;Ann,</p><p>The printer<br>is fixed.</p>"
                        "<ul><li>toner</li><li>drum</li></ul><script>x()</script></body></html>")
    assert text.startswith("Hello Ann,\n")
    assert "The printer\nis fixed." in text
    assert "toner" in text and "drum" in text
    assert "x()" not in text and "p{}" not in text and "T" not in text.split()
    assert html_to_text("") == "" and html_to_text("   ") == ""


def test_broken_html_never_raises():
    for broken in ("<p><b>unclosed", "</div></div>", "<" * 1000, "<img src=", "\x00<p>nul</p>"):
        html_to_text(broken)
        assert "\x00" not in sanitize_html(broken)
