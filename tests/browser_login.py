"""Signing in through the real login form, for the headless-Chromium tests."""


def log_in(page, base_url: str, username: str, password: str) -> None:
    """Submit the login form and wait until the app has let the user in."""
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
