"""What is compressed and what is not (docs/PERFORMANCE.md, "Compression").

Static files: collected as in production (hashed names, gzip copies), served compressed and
cached for good. Hosted connect pages: gzipped for browsers that accept it — no secret on them can
be learnt through the compressed size (BREACH) by anyone who could not read the page already.
Everything else (the dashboard, the sign-in page, the /v1 API) is never compressed.
"""

from __future__ import annotations

import gzip
import re

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client, override_settings

from connect_flow import links
from integrations.models import ApiKey

from . import factories

GZIP = {"HTTP_ACCEPT_ENCODING": "gzip, deflate, br"}


@pytest.mark.django_db
def test_hosted_connect_pages_are_gzipped_for_browsers_that_accept_it(environment):
    integration = factories.IntegrationFactory(environment=environment)
    token = links.create_relink_link(integration).token
    client = Client()

    plain = client.get(f"/connect/{token}/")
    zipped = client.get(f"/connect/{token}/", **GZIP)

    assert plain.status_code == zipped.status_code == 200
    assert not plain.has_header("Content-Encoding")
    assert zipped["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped["Vary"]
    page = gzip.decompress(zipped.content).decode()
    assert 'name="form_token"' in page
    assert len(zipped.content) < len(plain.content) * 0.6  # gzip adds up to 100 random bytes (Heal the Breach)
    # The headers every connect page carries are still there.
    assert zipped["Cache-Control"] == "no-store" and zipped["Referrer-Policy"] == "no-referrer"
    # The page for an unknown token too (it holds nothing secret).
    assert client.get(f"/connect/{'u' * 43}/", **GZIP)["Content-Encoding"] == "gzip"


@pytest.mark.django_db
def test_the_api_the_dashboard_and_sign_in_are_never_compressed(client, environment, editor):
    _, raw = ApiKey.create(environment, "Backend")
    api = client.get("/v1/check-api-key", headers={"Authorization": f"Bearer {raw}"}, **GZIP)
    sign_in = client.get("/login/", **GZIP)
    client.force_login(editor)
    dashboard = client.get(f"/env/{environment.slug}/?q=reflected", **GZIP)

    for response in (api, sign_in, dashboard):
        assert response.status_code == 200
        assert not response.has_header("Content-Encoding")


@pytest.mark.django_db
def test_collected_static_files_are_hashed_gzipped_and_cached_for_good(tmp_path):
    """As in production (README: collectstatic, WHITENOISE_USE_FINDERS=false)."""
    storages = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    with override_settings(STATIC_ROOT=tmp_path, STORAGES=storages, WHITENOISE_USE_FINDERS=False):
        call_command("collectstatic", interactive=False, verbosity=0)
        client = Client()  # its whitenoise reads the collected files
        page = client.get("/login/").content.decode()
        stylesheets = re.findall(r'href="(/static/[^"]+\.css)"', page)
        assert stylesheets and all(re.search(r"\.[0-9a-f]{12}\.css$", href) for href in stylesheets)

        css = client.get(stylesheets[0], **GZIP)
        assert css.status_code == 200
        assert css["Content-Encoding"] == "gzip"
        assert css["Cache-Control"] == "max-age=315360000, public, immutable"
        assert "Accept-Encoding" in css["Vary"]
        unhashed = client.get("/static/css/relink.css")  # a name that can change: cached briefly
        assert unhashed.status_code == 200 and unhashed["Cache-Control"] == "max-age=60, public"
        for response in (css, unhashed):
            response.close()
