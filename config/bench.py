"""The benchmarks' floor: a trivial JSON view behind the same middleware as every page.

Mounted at `/bench/trivial` only when `BENCH_VIEWS` is on (`manage.py bench_api` turns it on for
the server it starts); never in a normal deployment. GET answers a small JSON object; POST parses
its JSON body first, like an API write does.
"""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def trivial(request: HttpRequest) -> HttpResponse:
    data = json.loads(request.body or b"{}") if request.method == "POST" else {}
    return JsonResponse({"status": "success", "data": {"keys": sorted(data)}})
