"""The page in a real headless Chromium: type a first line, read four tone-coloured lines; a bad line
shows its message; the acrostic mode; a phone-sized screen.

The screenshot is written to the test's tmp_path, never over the committed docs/screenshot.png.
To update that picture on purpose, run with JUEJU_UPDATE_SCREENSHOT=1:
`JUEJU_UPDATE_SCREENSHOT=1 .venv/bin/python -m pytest tests/test_browser.py` copies it there.

Uses Debian's /usr/bin/chromium (scripts/setup.sh --dev installs it) or, failing that, a browser
installed by `playwright install chromium`; skips, saying why, when there is neither.
"""

import os
import re
import shutil
from pathlib import Path

import pytest

from jueju.serve import app as serve
from test_serve import save_tiny_model

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "screenshot.png"  # committed; updated only on request
UPDATE_SCREENSHOT = "JUEJU_UPDATE_SCREENSHOT"  # =1: copy the new screenshot to SCREENSHOT
TONE_CLASSES = {"ping", "ze", "both", "unknown"}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    models = [save_tiny_model(root / "wuyan", 5, conditioned=True), save_tiny_model(root / "qiyan", 7)]
    with serve.serving(serve.create_app(serve.load_models(models))) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        errors = []
        for options in ({"executable_path": CHROMIUM} if os.path.exists(CHROMIUM) else None, {}):
            if options is None:
                errors.append(f"{CHROMIUM} not found")
                continue
            try:
                browser = playwright.chromium.launch(headless=True, args=ARGS, **options)
                break
            except Exception as err:  # noqa: BLE001 - no browser there: try the next, then skip
                errors.append(str(err).splitlines()[0])
        else:
            pytest.skip("no Chromium to drive: " + "; ".join(errors))
        yield browser
        browser.close()


def shrink(path):
    """128 colours are plenty for a page of flat colours: a third of the size, for the docs."""
    try:
        from PIL import Image  # comes with matplotlib
    except ImportError:
        return
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def open_page(browser, base_url, **viewport):
    page = browser.new_page(viewport=viewport or {"width": 820, "height": 900})
    failed = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.on("pageerror", lambda error: failed.append(str(error)))
    page.goto(base_url + "/")
    sync_api.expect(page.locator("#status")).to_contain_text("Models")  # the page's own script ran (CSP kept)
    return page, failed


def poems_on(page):
    """Per poem, per line: [(char, classes)] read from the page."""
    return page.eval_on_selector_all(
        ".poem",
        """poems => poems.map(poem =>
        [...poem.querySelectorAll('.line')].map(line =>
            [...line.querySelectorAll('.ch')].map(ch => [ch.firstChild.textContent, ch.className,
                                                          getComputedStyle(ch).color])))""",
    )


def test_write_a_poem_from_a_first_line_then_a_bad_line(browser, base_url, tmp_path):
    page, failed = open_page(browser, base_url)
    page.fill("#text", "床前明月光")
    page.fill("#seed", "7")
    page.click("#write")
    page.wait_for_selector(".poem")
    poems = poems_on(page)
    assert len(poems) == 2  # the page asks for 2 by default
    colours = {}
    for poem in poems:
        assert len(poem) == 4 and all(len(line) == 5 for line in poem)
        assert "".join(char for char, _, _ in poem[0]) == "床前明月光"
        for index, line in enumerate(poem):
            for column, (char, classes, colour) in enumerate(line):
                assert re.fullmatch("[\u4e00-\u9fff]", char)
                tone = set(classes.split()) & TONE_CLASSES
                assert len(tone) == 1, classes
                colours.setdefault(tone.pop(), set()).add(colour)
                if column == 4 and index in (1, 3):
                    assert "rhyme" in classes.split()
    assert {"ping", "ze"} <= set(colours)
    assert colours["ping"].isdisjoint(colours["ze"]), "level and oblique tones have their own colours"
    assert page.locator(".legend").is_visible() and "平" in page.inner_text(".legend")
    assert page.locator(".rhyme-info").first.inner_text().startswith("韵脚")
    shot = tmp_path / "screenshot.png"
    page.screenshot(path=str(shot), full_page=True)
    shrink(shot)
    assert shot.stat().st_size > 1000
    if os.environ.get(UPDATE_SCREENSHOT) == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)

    page.fill("#text", "床前明月")
    page.click("#write")
    sync_api.expect(page.locator("#text-error")).not_to_be_empty()
    message = page.inner_text("#text-error")
    assert "5 (五言) or 7 (七言)" in message and "has 4" in message
    assert page.get_attribute("#text", "aria-invalid") == "true"
    assert len(poems_on(page)) == 2, "the poems already written stay"

    page.fill("#text", "床前明月光")
    page.fill("#temperature", "50")
    page.click("#write")
    sync_api.expect(page.locator("#options-error")).not_to_be_empty()
    assert page.inner_text("#options-error").startswith("Temperature:")
    assert not failed, failed
    page.close()


def test_acrostic_on_a_phone_sized_screen(browser, base_url):
    page, failed = open_page(browser, base_url, width=375, height=740)
    page.check("input[value=acrostic]")
    page.click("summary")
    page.select_option("#form", "7")
    page.fill("#num", "1")
    page.fill("#text", "春夏秋冬")
    page.click("#write")
    page.wait_for_selector(".poem")
    (poem,) = poems_on(page)
    assert [len(line) for line in poem] == [7, 7, 7, 7]
    assert [line[0][0] for line in poem] == list("春夏秋冬")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scrolling"
    box = page.locator(".poem").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 375
    page.fill("#text", "")
    page.click("#write")
    assert "4" in page.inner_text("#text-error")
    assert not failed, failed
    page.close()


def test_keep_characters_and_a_line_then_rewrite_the_rest(browser, base_url):
    page, failed = open_page(browser, base_url)
    page.fill("#text", "白日依山尽")
    page.fill("#seed", "3")
    page.fill("#num", "1")
    page.click("#write")
    page.wait_for_selector(".poem")
    first = page.locator(".poem").first
    line_2 = first.locator(".line").nth(1)
    line_2.locator(".ch").nth(4).click()  # line 2's rhyme character
    first.locator(".line").nth(3).locator(".punct").click()  # the whole of line 4
    before = [[char for char, _, _ in line] for line in poems_on(page)[0]]
    kept = {(1, 4): before[1][4], **{(3, column): before[3][column] for column in range(5)}}
    assert first.locator(".ch.kept").count() == 6
    assert first.locator(".ch[aria-pressed=true]").count() == 6
    first.locator(".revise").click()
    sync_api.expect(page.locator(".poem .ch.kept")).to_have_count(6)  # the rewritten poem, its kept marked
    after = poems_on(page)
    assert len(after) == 1
    for (line, column), char in kept.items():
        got, classes, _ = after[0][line][column]
        assert got == char and "kept" in classes.split()
    assert sum("kept" in classes.split() for line in after[0] for _, classes, _ in line) == 6

    page.check("input[value=template]")
    page.fill("#text", "床前明月光，＿＿＿＿＿。举头＿＿＿，＿＿＿＿＿。")
    page.click("#write")
    sync_api.expect(page.locator(".poem .ch.kept")).to_have_count(7)
    assert "".join(char for char, _, _ in poems_on(page)[0][0]) == "床前明月光"
    page.fill("#text", "床前明月光，＿＿＿＿＿。")
    page.click("#write")
    sync_api.expect(page.locator("#text-error")).to_contain_text("4 lines")
    assert not failed, failed
    page.close()


def test_keywords_mode_writes_every_keyword_within_a_line(browser, base_url):
    page, failed = open_page(browser, base_url)
    page.check("input[value=keywords]")
    page.fill("#text", "秋，故乡")
    page.fill("#seed", "4")
    page.click("#write")
    page.wait_for_selector(".poem")
    for poem in poems_on(page):
        lines = ["".join(char for char, _, _ in line) for line in poem]
        assert any("秋" in line for line in lines) and any("故乡" in line for line in lines), lines
    page.fill("#text", "秋天的月")
    page.click("#write")
    sync_api.expect(page.locator("#text-error")).to_contain_text("1 or 2 Han characters")
    assert not failed, failed
    page.close()


def test_a_title_alone_writes_poems_and_stays_for_the_rewrite(browser, base_url):
    page, failed = open_page(browser, base_url)
    sent = []
    page.on("request", lambda request: sent.append(request.post_data_json) if request.method == "POST" else None)
    page.check("input[value=keywords]")
    page.fill("#title", "送友人")
    page.fill("#seed", "2")
    page.fill("#num", "1")
    page.click("#write")
    page.wait_for_selector(".poem")
    assert sent[-1]["title"] == "送友人" and "keywords" not in sent[-1]
    first = page.locator(".poem").first
    first.locator(".line").nth(0).locator(".punct").click()  # keep line 1
    line_1 = "".join(char for char, _, _ in poems_on(page)[0][0])
    first.locator(".revise").click()
    sync_api.expect(page.locator(".poem .ch.kept")).to_have_count(5)
    assert sent[-1]["title"] == "送友人" and sent[-1]["template"].startswith(line_1)
    assert "".join(char for char, _, _ in poems_on(page)[0][0]) == line_1
    page.fill("#title", "moon")
    page.click("#write")
    sync_api.expect(page.locator("#text-error")).to_contain_text("Han characters")
    assert page.get_attribute("#title", "aria-invalid") == "true"
    assert not failed, failed
    page.close()
