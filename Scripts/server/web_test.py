#!/usr/bin/env python3
"""Drives the page of a live `unclip serve` in headless Chromium (Debian's chromium + chromium-driver, through
selenium): generate from the page, a variation, an edit with a mask painted on the canvas and a text diff with the θ
slider; checks the gallery fills, the progress line moved, and the browser console has no errors; saves a screenshot.
"""
import argparse
import os
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, os.path.dirname(__file__))
from server_tests import Server, check, png, FAILURES  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--unclip", required=True)
    parser.add_argument("--screenshot", required=True)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="unclip-web-")
    server = Server(args.unclip, work, "--files-dir", os.path.join(work, "files"), name="web")
    image = os.path.join(work, "input.png")
    with open(image, "wb") as f:
        f.write(png(128))

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,1400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    wait = WebDriverWait(driver, 120)
    try:
        driver.get(server.base + "/")
        wait.until(lambda d: "shapes-unclip" in d.find_element(By.ID, "model").text)
        check("page: loads and names the model", True, driver.find_element(By.ID, "model").text)

        def gallery():
            return driver.execute_script("return [...document.querySelectorAll('#gallery img')].filter(i => i.complete && i.naturalWidth > 0).length")

        def steps_seen():
            return driver.execute_script("return window.__steps || 0")

        # Record the progress lines the page shows while a job runs.
        driver.execute_script("""
            window.__steps = 0;
            new MutationObserver(() => { if (/\\d+\\/\\d+/.test(document.getElementById('statusText').textContent)) window.__steps++; })
              .observe(document.getElementById('statusText'), {childList: true, characterData: true, subtree: true});""")

        form = driver.find_element(By.ID, "generateForm")
        prompt = form.find_element(By.NAME, "prompt")
        prompt.clear()
        prompt.send_keys("a red circle above a blue square")
        for name, value in (("n", "4"), ("seed", "3"), ("steps", "25")):
            field = form.find_element(By.NAME, name)
            field.clear()
            field.send_keys(value)
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: gallery() >= 4)
        check("page: generate fills the gallery with 4 images", gallery() == 4)
        check("page: progress shown while the job ran (job route polled)", steps_seen() > 0, f"{steps_seen()} progress updates")

        driver.find_element(By.CSS_SELECTOR, "#tabs button[data-tab=vary]").click()
        vary = driver.find_element(By.ID, "varyForm")
        vary.find_element(By.NAME, "image").send_keys(image)
        n = vary.find_element(By.NAME, "n")
        n.clear()
        n.send_keys("2")
        vary.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: gallery() >= 6)
        check("page: variations of an upload", gallery() == 6)

        driver.find_element(By.CSS_SELECTOR, "#tabs button[data-tab=edit]").click()
        driver.find_element(By.ID, "editImage").send_keys(image)
        canvas = driver.find_element(By.ID, "editCanvas")
        wait.until(lambda d: d.execute_script("return document.getElementById('editCanvas').width") == 128)
        # Paint over the right half of the image: the region to repaint.
        chain = ActionChains(driver).move_to_element_with_offset(canvas, 10, -60).click_and_hold()
        for dy in range(-60, 61, 8):
            chain = chain.move_to_element_with_offset(canvas, 10, dy).move_to_element_with_offset(canvas, 60, dy)
        chain.release().perform()
        erased = driver.execute_script("""
            const c = document.getElementById('editCanvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] === 0) n++; return n;""")
        check("page: mask painted on the canvas", erased > 1000, f"{erased} pixels marked")
        driver.find_element(By.CSS_SELECTOR, "#editForm button[type=submit]").click()
        wait.until(lambda d: gallery() >= 8)
        check("page: edit with the painted mask", gallery() == 8)

        driver.find_element(By.CSS_SELECTOR, "#tabs button[data-tab=textdiff]").click()
        diff = driver.find_element(By.ID, "textdiffForm")
        diff.find_element(By.NAME, "image").send_keys(image)
        driver.execute_script("const t = document.getElementById('theta'); t.value = 0.6; t.dispatchEvent(new Event('input'));")
        diff.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: gallery() >= 9)
        check("page: text diff with the θ slider", "θ=0.60" in driver.find_element(By.ID, "gallery").text)

        driver.find_element(By.CSS_SELECTOR, "#tabs button[data-tab=generate]").click()
        driver.save_screenshot(args.screenshot)
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        check("page: no console errors", not errors, "; ".join(e["message"] for e in errors))
    finally:
        driver.quit()
        server.stop()
    print("all web checks passed" if not FAILURES else "FAILED: " + ", ".join(FAILURES))
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
