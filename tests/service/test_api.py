"""The HTTP API against the real app: real embedded store, packaged encoder, real uploads."""

from __future__ import annotations

import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image
from typer.testing import CliRunner

from kbengine import synth
from kbengine.cli import app as cli_app
from kbengine.service.auth import hash_key
from tests.service.conftest import SIZE, photo_bytes

PHOTO = {"image": ("part.png", photo_bytes("disc", "scratch", 5), "image/png")}


def without_timings(value: Any) -> Any:
    """A result's JSON without its timings (the only fields two runs may differ in)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k != "timings_ms"}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def sse(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_probes_openapi_page_and_info(serve):
    client = serve()
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["locks"] > 0
    paths = client.get("/openapi.json").json()["paths"]
    for route in ("/v1/seek", "/v1/detect", "/v1/ask", "/v1/ingest", "/v1/jobs/{job_id}", "/v1/info", "/v1/documents"):
        assert route in paths
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    info = client.get("/v1/info").json()
    assert info["documents"] > 0 and {e["category"] for e in info["entries"]} == {"disc", "tile"}


def test_seek_over_http_equals_the_python_api(serve):
    client = serve()
    reply = client.post("/v1/seek", files=PHOTO, data={"k": "3"})
    assert reply.status_code == 200
    kb = client.app.state.service.kb  # type: ignore[attr-defined]
    image = Image.open(io.BytesIO(PHOTO["image"][1])).convert("RGB")
    expected = kb.seek(image, 3).model_dump(mode="json")
    assert without_timings(reply.json()) == without_timings(expected)
    assert reply.json()["hits"][0]["defect_type"] == "scratch"


def test_detect_with_heatmap_and_blob(serve):
    client = serve()
    reply = client.post("/v1/detect", files=PHOTO, data={"heatmap": "true", "category": "disc"})
    assert reply.status_code == 200, reply.text
    found = reply.json()
    assert found["is_anomalous"] is True and found["width"] == SIZE and found["regions"]
    assert found["heatmap"].startswith("data:image/png;base64,")
    plain = client.post("/v1/detect", files=PHOTO).json()
    assert "heatmap" not in plain and "anomaly_map" not in plain
    hit = client.post("/v1/seek", files=PHOTO).json()["hits"][0]
    blob = client.get(f"/v1/blobs/{Path(hit['image_path']).name}")
    assert blob.status_code == 200 and Image.open(io.BytesIO(blob.content)).size[0] > 0
    for name in ("..%2F..%2Fetc%2Fpasswd", "0" * 64 + ".png", "not-a-blob"):
        assert client.get(f"/v1/blobs/{name}").status_code == 404


def test_ask_plain_and_streamed(serve):
    client = serve()
    plain = client.post("/v1/ask", files=PHOTO, data={"question": "What defect is this?"})
    assert plain.status_code == 200
    answer = plain.json()
    assert answer["llm"] == "none" and answer["hits"] and "scratch" in answer["text"].lower()
    streamed = client.post("/v1/ask", files=PHOTO, data={"question": "What defect is this?", "stream": "true"})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = sse(streamed.text)
    assert [name for name, _ in events[:-1]] == ["token"] * (len(events) - 1) and events[-1][0] == "answer"
    assert "".join(data["text"] for _, data in events[:-1]) == events[-1][1]["text"]
    assert without_timings(events[-1][1]) == without_timings(answer)
    with_map = sse(client.post("/v1/ask", files=PHOTO, data={"stream": "true", "heatmap": "true"}).text)
    assert with_map[0][0] == "detection" and with_map[0][1]["heatmap"].startswith("data:image/png;base64,")
    assert with_map[0][1]["score"] == with_map[-1][1]["detection"]["score"]
    refused = client.post("/v1/ask", files=PHOTO, data={"llm": "openai"})
    assert refused.status_code == 422 and "offers" in refused.json()["detail"]


def test_bad_uploads_get_a_reason(serve):
    client = serve(max_upload_bytes=200_000, kb_settings={"max_image_pixels": 100 * 100})
    corrupt = client.post("/v1/detect", files={"image": ("x.png", b"\x89PNG not really", "image/png")})
    assert corrupt.status_code == 422 and "x.png" in corrupt.json()["detail"]
    big = client.post("/v1/detect", files={"image": ("big.png", b"\0" * 300_000, "image/png")})
    assert big.status_code == 413 and "limit" in big.json()["detail"]
    many_pixels = client.post("/v1/seek", files=PHOTO)
    assert many_pixels.status_code == 422 and "KBENGINE_MAX_IMAGE_PIXELS" in many_pixels.json()["detail"]
    missing = client.post("/v1/seek")
    assert missing.status_code == 422
    sneaky = client.post("/v1/detect", files={"image": ("../../../etc/passwd", b"root:x:0:0", "image/png")})
    assert sneaky.status_code == 422 and "/etc" not in sneaky.json()["detail"]


def test_keys_and_scopes(serve, tmp_path):
    hashed = tmp_path / "keys"
    hashed.write_text(f"# plant keys\nwrite {hash_key('w-key')} line-1\n")
    client = serve(api_keys="read:r-key", api_keys_file=hashed)
    assert client.get("/healthz").status_code == 200  # probes stay open
    none = client.post("/v1/seek", files=PHOTO)
    assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
    assert client.post("/v1/seek", files=PHOTO, headers={"Authorization": "Bearer wrong"}).status_code == 401
    read = {"Authorization": "Bearer r-key"}
    assert client.post("/v1/seek", files=PHOTO, headers=read).status_code == 200
    assert client.get("/v1/info", headers={"X-API-Key": "r-key"}).status_code == 200
    files = {"files": ("part.png", photo_bytes("tile", None, 3), "image/png")}
    denied = client.post("/v1/ingest", files=files, headers=read)
    assert denied.status_code == 403 and "write" in denied.json()["detail"]
    assert client.get("/v1/jobs/x", headers=read).status_code == 403
    assert client.get("/v1/jobs/x", headers={"Authorization": "Bearer w-key"}).status_code == 404
    assert client.get("/metrics").status_code == 401
    assert client.get("/v1/whoami", headers=read).json() == {"scope": "read", "keys": True}
    assert client.get("/v1/whoami").json() == {"scope": None, "keys": True}


def test_ingest_job_adds_documents_and_bad_files_store_nothing(serve, tmp_path):
    client = serve(copy=True)
    kb = client.app.state.service.kb  # type: ignore[attr-defined]
    before = kb.store.count()
    uploads = tmp_path / "kb" / "uploads"
    bad = client.post("/v1/ingest", files=[("files", ("notes.txt", b"hello", "text/plain"))])
    assert bad.status_code == 422 and "notes.txt" in bad.json()["detail"]
    not_png = client.post("/v1/ingest", files=[("files", ("notimage.png", b"hello", "image/png"))])
    assert not_png.status_code == 422 and "notimage.png" in not_png.json()["detail"]
    fake_pdf = client.post("/v1/ingest", files=[("files", ("m.pdf", b"<html>", "application/pdf"))])
    assert fake_pdf.status_code == 422 and "%PDF" in fake_pdf.json()["detail"]
    assert kb.store.count() == before and not (uploads.exists() and any(uploads.iterdir()))

    pdf = synth.write_pdf_catalogue(tmp_path / "m" / "fabric catalogue.pdf", {"fabric": ("hole",)}, size=128)
    image, _ = synth.sample("tile", "stain", 7, SIZE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    files = [
        ("files", ("../fabric catalogue.pdf", pdf.read_bytes(), "application/pdf")),
        ("files", ("stain.png", buffer.getvalue(), "image/png")),
    ]
    started = client.post("/v1/ingest", files=files, data={"category": "tile", "defect_type": "stain"})
    assert started.status_code == 202
    job = started.json()
    assert job["total"] == 2 and job["files"] == ["fabric_catalogue.pdf", "stain.png"]
    deadline = time.monotonic() + 120
    while job["state"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
        job = client.get(f"/v1/jobs/{job['id']}").json()
    assert job["state"] == "done", job
    assert job["done"] == 2 and job["report"]["locks_added"] > 0 and not job["report"]["failed"]
    assert kb.store.count() > before
    stored = list(uploads.glob("*/*"))
    assert {p.name for p in stored} == {"fabric_catalogue.pdf", "stain.png"}
    assert all(p.resolve().is_relative_to(uploads.resolve()) for p in stored)
    listing = client.get("/v1/documents", params={"category": "tile", "defect_type": "stain"}).json()
    assert any(doc["source"].endswith("stain.png") for doc in listing["documents"])
    metrics = client.get("/metrics").text
    assert 'kbengine_ingest_jobs_total{state="done"} 1.0' in metrics


def test_documents_filters_and_pages(serve):
    client = serve()
    everything = client.get("/v1/documents", params={"limit": 500}).json()
    assert everything["total"] == len(everything["documents"]) > 4
    page = client.get("/v1/documents", params={"offset": 2, "limit": 2}).json()
    assert [d["doc_id"] for d in page["documents"]] == [d["doc_id"] for d in everything["documents"][2:4]]
    scratches = client.get("/v1/documents", params={"category": "Disc", "defect_type": "scratch"}).json()
    assert scratches["total"] >= 1 and {d["defect_type"] for d in scratches["documents"]} == {"scratch"}
    assert client.get("/v1/documents", params={"limit": 0}).status_code == 422


def test_concurrent_seeks_equal_sequential_ones(serve):
    client = serve(kb_settings={"workers": 2})
    photos = [photo_bytes(c, d, s) for c, d, s in [("disc", "scratch", 1), ("tile", "hole", 2), ("disc", None, 3)]]

    def seek(data: bytes) -> Any:
        reply = client.post("/v1/seek", files={"image": ("p.png", data, "image/png")})
        assert reply.status_code == 200
        return without_timings(reply.json())

    sequential = [seek(p) for p in photos]
    with ThreadPoolExecutor(6) as pool:
        parallel = list(pool.map(seek, photos * 2))
    assert parallel == sequential * 2


def test_full_queue_answers_503_with_retry_after(serve):
    client = serve(queue=1)
    pool = client.app.state.service.pool  # type: ignore[attr-defined]
    replies: list[Any] = []
    with pool.lock.writing():  # the worker waits on it: one call runs, one waits
        threads = [
            threading.Thread(target=lambda: replies.append(client.post("/v1/seek", files=PHOTO))) for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while pool.depth < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        busy = client.post("/v1/seek", files=PHOTO)
    for thread in threads:
        thread.join()
    assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1
    assert [r.status_code for r in replies] == [200, 200]
    assert "kbengine_busy_total 1.0" in client.get("/metrics").text


def test_cors_is_off_by_default_and_on_when_asked(serve):
    client = serve()
    reply = client.get("/v1/info", headers={"Origin": "http://elsewhere.example"})
    assert "access-control-allow-origin" not in reply.headers
    allowed = serve(copy=True, cors_origins=["http://mes.example"])
    reply = allowed.get("/v1/info", headers={"Origin": "http://mes.example"})
    assert reply.headers["access-control-allow-origin"] == "http://mes.example"


def test_serve_refuses_an_open_non_loopback_host(tmp_path, monkeypatch):
    monkeypatch.delenv("KBENGINE_API_KEYS", raising=False)
    monkeypatch.delenv("KBENGINE_API_KEYS_FILE", raising=False)
    result = CliRunner().invoke(cli_app, ["serve", "--kb", str(tmp_path / "kb"), "--host", "0.0.0.0"])
    assert result.exit_code != 0 and "without API keys" in str(result.exception)
    hashed = CliRunner().invoke(cli_app, ["serve", "--hash-key"], input="s3cret\n")
    assert hashed.exit_code == 0 and hash_key("s3cret") in hashed.output


def test_document_write_routes_remove_and_relabel(serve):
    client = serve(copy=True, api_keys="write:w-key,read:r-key")
    write, read = {"Authorization": "Bearer w-key"}, {"Authorization": "Bearer r-key"}
    scratches = client.get("/v1/documents", params={"defect_type": "scratch"}, headers=read).json()["documents"]
    first, second = scratches[0]["doc_id"], scratches[1]["doc_id"]
    assert client.delete(f"/v1/documents/{first}", headers=read).status_code == 403
    preview = client.delete(f"/v1/documents/{first}", params={"dry_run": "true"}, headers=write).json()
    assert preview["dry_run"] and preview["locks"] > 0
    removed = client.delete(f"/v1/documents/{first}", headers=write)
    assert removed.status_code == 200 and removed.json()["documents"][0]["doc_id"] == first
    assert client.delete(f"/v1/documents/{first}", headers=write).status_code == 404
    relabelled = client.patch(f"/v1/documents/{second}", json={"defect_type": "gouge"}, headers=write)
    assert relabelled.status_code == 200 and relabelled.json()["labels"] == {"defect_type": "gouge"}
    docs = client.get("/v1/documents", params={"limit": 500}, headers=read).json()["documents"]
    assert first not in {d["doc_id"] for d in docs}
    assert next(d for d in docs if d["doc_id"] == second)["defect_type"] == "gouge"
    empty = client.patch(f"/v1/documents/{second}", json={}, headers=write)
    assert empty.status_code == 422 and "new labels" in empty.json()["detail"]
