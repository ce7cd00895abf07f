"""Steps the headless-Chromium tests share: signing in, choosing a form mode that HTMX swaps in."""


def log_in(page, base_url: str, username: str, password: str) -> None:
    """Submit the login form and wait until the app has let the user in."""
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def select_and_settle(page, selector: str, value: str) -> None:
    """Choose a mode and wait until its HTMX swap has settled. Only the mode's own fieldset is swapped
    (a common field typed meanwhile keeps its value, tests/browser/test_mode_swap_keeps_typed.py),
    but a field of the mode itself (its dataset list, its settings) arrives with the swap: wait before
    filling one of those."""
    page.evaluate("window.__settled = false; document.body.addEventListener('htmx:afterSettle', "
                  "() => { window.__settled = true; }, {once: true})")
    page.select_option(selector, value)
    page.wait_for_function("window.__settled === true")
