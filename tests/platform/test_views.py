"""Pages through the HTTP client: browsing, rendering per kind, escaping, people and roles."""
import pytest

from medstudio.accounts.models import User
from medstudio.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

XSS = '<script>alert("x")</script>'


def test_record_text_is_escaped_everywhere(client_for, make_dataset):
    ds = make_dataset("xss", "dialogue", [{"id": "x1", "turns": [{"role": "user", "content": XSS},
                                                                   {"role": "assistant", "content": XSS}]}])
    client = client_for("clinician")
    rec = ds.records.get()
    for url in (f"/datasets/{ds.pk}/records/", f"/datasets/records/{rec.pk}/", f"/datasets/{ds.pk}/records/?q=script"):
        html = client.get(url).content.decode()
        assert XSS not in html
        assert "&lt;script&gt;" in html


def test_dialogue_renders_as_chat(client_for, make_dataset):
    ds = make_dataset("chat", "dialogue", [{"id": "c1", "turns": [{"role": "user", "content": "我头痛"},
                                                                    {"role": "assistant", "content": "多久了？"},
                                                                    {"role": "user", "content": "三天"}]}])
    html = client_for("clinician").get(f"/datasets/records/{ds.records.get().pk}/").content.decode()
    assert html.count('class="msg user"') == 2 and html.count('class="msg assistant"') == 1
    assert html.index("我头痛") < html.index("多久了？") < html.index("三天")


def test_mcq_shows_options_and_answer(client_for, make_dataset):
    ds = make_dataset("m", "mcq", [{"id": "q", "question": "Which?", "options": {"A": "one", "B": "two"}, "answer": "B"}])
    html = client_for("clinician").get(f"/datasets/records/{ds.records.get().pk}/").content.decode()
    assert '<li class="correct"><strong>B.</strong> two' in html
    assert '<li class=""><strong>A.</strong> one' in html


def test_pair_side_by_side(client_for, make_dataset):
    ds = make_dataset("p", "pair", [{"id": "p", "prompt": "q", "chosen": "GOOD", "rejected": "BAD"}])
    html = client_for("clinician").get(f"/datasets/records/{ds.records.get().pk}/").content.decode()
    assert 'class="side-by-side"' in html and "GOOD" in html and "BAD" in html


def test_keyset_pagination_and_filters(client_for, make_dataset):
    rows = [{"id": f"r{i:03d}", "text": ("头痛" if i % 2 else "headache") + f" {i}"} for i in range(120)]
    ds = make_dataset("many", "document", rows)
    client = client_for("clinician")
    first = client.get(f"/datasets/{ds.pk}/records/").context
    assert len(first["records"]) == 50 and first["has_more"]
    last_id = first["records"][-1].pk
    second = client.get(f"/datasets/{ds.pk}/records/?after={last_id}").context
    assert second["records"][0].pk > last_id
    zh = client.get(f"/datasets/{ds.pk}/records/?lang=zh").context["records"]
    assert zh and all(r.lang == "zh" for r in zh)
    htmx = client.get(f"/datasets/{ds.pk}/records/?q=headache%2011", HTTP_HX_REQUEST="true")
    body = htmx.content.decode()
    assert "<html" not in body and "r110" in body and "r011" not in body


def test_dataset_list_shows_counts_and_languages(client_for, make_dataset):
    make_dataset("counted", "document", [{"id": "1", "text": "头痛"}, {"id": "2", "text": "pain"}])
    html = client_for("clinician").get("/datasets/").content.decode()
    assert "counted" in html and "zh 1" in html and "en 1" in html


def test_admin_manages_people_and_roles(client_for):
    admin = client_for("admin")
    resp = admin.post("/accounts/users/", {"username": "dr-li", "role": "clinician", "email": ""})
    assert "shown once" in resp.content.decode()
    user = User.objects.get(username="dr-li")
    assert user.role == "clinician"
    admin.post(f"/accounts/users/{user.pk}/", {"role": "curator", "is_active": "on"})
    user.refresh_from_db()
    assert user.role == "curator" and user.is_active
    admin.post(f"/accounts/users/{user.pk}/", {"role": "curator"})
    user.refresh_from_db()
    assert not user.is_active
    actions = list(AuditEvent.objects.filter(target_id=str(user.pk)).values_list("action", flat=True))
    assert actions.count("accounts.user_update") == 2 and "accounts.user_create" in actions


def test_login_and_logout(client, django_user_model):
    django_user_model.objects.create_user(username="c", password="secret-pw", role="clinician")
    resp = client.post("/accounts/login/", {"username": "c", "password": "secret-pw"})
    assert resp.status_code == 302
    assert client.get("/datasets/").status_code == 200
    client.post("/accounts/logout/")
    assert client.get("/datasets/").status_code == 302
    assert client.post("/accounts/login/", {"username": "c", "password": "wrong"}).status_code == 200


def test_inactive_user_is_denied(client, django_user_model):
    user = django_user_model.objects.create_user(username="gone", password="x", role="admin", is_active=False)
    client.force_login(user)
    assert client.get("/datasets/").status_code in (302, 403)


def test_curator_dataset_page_offers_scorers_export_and_studio(client_for, make_dataset):
    ds = make_dataset("cur", "document", [{"id": "1", "text": "头痛三天"}])
    html = client_for("curator").get(f"/datasets/{ds.pk}/").content.decode()
    assert 'name="scorer"' in html and "<code>rules</code>" in html
    assert f"/studio/open/?ds={ds.pk}" in html
    assert "Export" in html
    clinician_html = client_for("clinician").get(f"/datasets/{ds.pk}/").content.decode()
    assert 'name="scorer"' not in clinician_html
