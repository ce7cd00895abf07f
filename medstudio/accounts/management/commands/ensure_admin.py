import os

from django.core.management.base import BaseCommand

from medstudio.accounts.services import admin_ensure


class Command(BaseCommand):
    help = ("Create the first admin account if missing. Name and password come from MEDSTUDIO_ADMIN_USER / "
            "MEDSTUDIO_ADMIN_PASSWORD; a generated password is printed once.")

    def handle(self, *args, **opts):
        username = os.environ.get("MEDSTUDIO_ADMIN_USER", "admin")
        user, password = admin_ensure(username=username, password=os.environ.get("MEDSTUDIO_ADMIN_PASSWORD") or None)
        if password and not os.environ.get("MEDSTUDIO_ADMIN_PASSWORD"):
            self.stdout.write(self.style.SUCCESS(
                f"Admin account created. Log in as {username!r} with password {password!r} (shown once)."))
        elif password:
            self.stdout.write(f"Admin account {username!r} created with the password from MEDSTUDIO_ADMIN_PASSWORD.")
        else:
            self.stdout.write(f"Admin account {username!r} exists.")
