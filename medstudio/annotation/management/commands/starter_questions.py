from django.core.management.base import BaseCommand

from medstudio.annotation import services


class Command(BaseCommand):
    help = "Create the starter questions (CareBot 0-5 quality with four aspects, domain, per-turn ratings, four-aspect preference)."

    def handle(self, *args, **options):
        made = services.starter_questions_create(user=None)
        for q in made:
            self.stdout.write(f"created {q.name} ({q.kind})")
        if not made:
            self.stdout.write("The starter questions exist already.")
