"""``POST /v1/feedback``: a verdict over HTTP, by upload or by the id of a photo just inspected."""

from __future__ import annotations

from tests.service.conftest import photo_bytes


def test_feedback_by_upload_is_stored_listed_and_found_by_the_next_seek(serve):
    client = serve(copy=True)
    image = photo_bytes("disc", "scratch", seed=41)
    files = {"image": ("part.png", image, "image/png")}
    reply = client.post("/v1/feedback", files=files, data={"category": "disc", "defect_type": "scratch", "note": "rim"})
    assert reply.status_code == 200, reply.text
    report = reply.json()
    assert report["status"] == "added" and report["feedback"]["note"] == "rim" and report["regions_added"] == 1
    listed = client.get("/v1/documents", params={"source": "feedback"}).json()
    assert [d["doc_id"] for d in listed["documents"]] == [report["doc_id"]]
    assert listed["documents"][0]["feedback"]["note"] == "rim"
    hits = client.post("/v1/seek", files=files, data={"k": 3}).json()["hits"]
    assert report["doc_id"] in [hit["doc_id"] for hit in hits]


def test_feedback_by_inspection_id_needs_no_second_upload(serve):
    client = serve(copy=True)
    image = photo_bytes("tile", "stain", seed=42)
    detected = client.post("/v1/detect", files={"image": ("p.png", image, "image/png")})
    inspection = detected.headers["X-Inspection-Id"]
    reply = client.post("/v1/feedback", data={"inspection": inspection, "category": "tile", "defect_type": "good"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["normal_reference"] and reply.json()["source"] == f"feedback/{inspection}"
    again = client.post("/v1/feedback", data={"inspection": inspection, "category": "tile", "defect_type": "hole"})
    assert again.json()["status"] == "relabelled" and again.json()["previous"] == "tile/good"


def test_feedback_refuses_what_it_cannot_take_and_needs_write_scope(serve):
    client = serve(copy=True)
    unknown = client.post("/v1/feedback", data={"inspection": "0" * 64, "category": "disc", "defect_type": "good"})
    assert unknown.status_code == 422 and "upload it" in unknown.json()["detail"]
    neither = client.post("/v1/feedback", data={"category": "disc", "defect_type": "good"})
    assert neither.status_code == 422
    broken = client.post(
        "/v1/feedback", files={"image": ("x.png", b"nope", "image/png")}, data={"category": "d", "defect_type": "good"}
    )
    assert broken.status_code == 422 and "x.png" in broken.json()["detail"]
    keyed = serve(copy=False, api_keys="read:r-key,write:w-key")
    denied = keyed.post(
        "/v1/feedback",
        files={"image": ("p.png", photo_bytes(), "image/png")},
        data={"category": "disc", "defect_type": "good"},
        headers={"Authorization": "Bearer r-key"},
    )
    assert denied.status_code == 403
