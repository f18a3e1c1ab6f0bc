"""``kbengine serve`` under load, beside the in-process calls it wraps.

    python benchmarks/serve.py [--clients 16] [--seconds 30] [--calls 20]

1. Builds a knowledge base of generated parts (2 categories, normal references, defect examples
   with cards; 256x256, packaged encoder) and times ``kb.seek`` / ``kb.detect`` in process (p50).
2. Starts ``kbengine serve`` (a subprocess, default settings) and times it until ``/readyz`` is 200.
3. One client, one request at a time: HTTP p50 of ``/v1/seek`` and ``/v1/detect`` and their ratio to
   the in-process p50 (the issue's bar: at most 1.3x).
4. ``--clients`` clients for ``--seconds``, seek and detect mixed: requests/s, p50/p95/p99 of the
   latency each client sees (queueing included: 16 clients share 2 cores), and errors (bar: 0).
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

PARTS = {"disc": ("scratch", "missing"), "tile": ("hole", "stain")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def png(image: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # type: ignore[attr-defined]
    return buffer.getvalue()


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--calls", type=int, default=20, help="Timed calls per route, in process and over HTTP.")
    args = parser.parse_args()

    import httpx
    from PIL import Image

    from kbengine import synth
    from kbengine.core.settings import Settings
    from kbengine.facade import KnowledgeBase

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = synth.write_mvtec(root / "data", PARTS, n_train=16, n_test_good=0, n_test_defect=2, size=256)
        documents = synth.write_documents(root / "documents", PARTS, n_refs=1, size=256)
        kinds = [("disc", "scratch"), ("tile", "hole"), ("disc", None), ("tile", "stain")]
        photos = [png(synth.sample(cat, defect, 70_000 + i, 256)[0]) for i, (cat, defect) in enumerate(kinds)]
        images = [Image.open(io.BytesIO(data)).convert("RGB") for data in photos]
        settings = Settings(encoder="packaged", kb=root / "kb")
        inproc: dict[str, list[float]] = {"seek": [], "detect": []}
        with KnowledgeBase.open(settings=settings) as kb:
            kb.ingest([dataset, documents])
            for image in images:  # banks built, weights warm
                kb.seek(image)
                kb.detect(image)
            for i in range(args.calls):
                image = images[i % len(images)]
                for route, call in (("seek", kb.seek), ("detect", kb.detect)):
                    start = time.perf_counter()
                    call(image)
                    inproc[route].append((time.perf_counter() - start) * 1000)

        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KBENGINE_API_KEYS")}
        start = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "kbengine", "serve", "--kb", str(root / "kb"), "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            ready = None
            with httpx.Client(base_url=base, timeout=120) as client:
                while time.perf_counter() - start < 120:
                    try:
                        if client.get("/readyz").status_code == 200:
                            ready = time.perf_counter() - start
                            break
                    except httpx.TransportError:
                        pass
                    if server.poll() is not None:
                        raise SystemExit("kbengine serve exited")
                    time.sleep(0.05)
                if ready is None:
                    raise SystemExit("kbengine serve was not ready in 120 s")
                http: dict[str, list[float]] = {"seek": [], "detect": []}
                for i in range(len(photos) * 2):  # warm the server's banks
                    client.post(f"/v1/{('seek', 'detect')[i % 2]}", files={"image": ("p.png", photos[i // 2])})
                for i in range(args.calls):
                    data = photos[i % len(photos)]
                    for route in ("seek", "detect"):
                        t0 = time.perf_counter()
                        reply = client.post(f"/v1/{route}", files={"image": ("p.png", data)})
                        http[route].append((time.perf_counter() - t0) * 1000)
                        reply.raise_for_status()

            latencies: list[float] = []
            statuses: dict[str, int] = {}
            lock = threading.Lock()
            stop = time.perf_counter() + args.seconds

            def client_loop(n: int) -> None:
                with httpx.Client(base_url=base, timeout=120) as c:
                    i = n
                    while time.perf_counter() < stop:
                        route = ("seek", "detect")[i % 2]
                        t0 = time.perf_counter()
                        try:
                            code = str(c.post(f"/v1/{route}", files={"image": ("p.png", photos[i % 4])}).status_code)
                        except httpx.HTTPError as e:
                            code = e.__class__.__name__
                        with lock:
                            latencies.append((time.perf_counter() - t0) * 1000)
                            statuses[code] = statuses.get(code, 0) + 1
                        i += 1

            began = time.perf_counter()
            threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - began
        finally:
            server.terminate()
            server.wait(30)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"kbengine serve, {cores} cores, 256x256 parts, packaged encoder")
    print(f"ready (/readyz 200) {ready:.1f} s after start (bar 15 s)")
    print(f"{'route':>7} {'in-process p50':>15} {'HTTP p50':>9} {'ratio':>6}  (one client; bar 1.3x)")
    for route in ("seek", "detect"):
        a, b = p(inproc[route], 50), p(http[route], 50)
        print(f"{route:>7} {a:>13.1f}ms {b:>7.1f}ms {b / a:>6.2f}")
    errors = sum(n for code, n in statuses.items() if code != "200")
    print(
        f"load: {args.clients} clients, {elapsed:.0f} s, seek+detect: {len(latencies) / elapsed:.1f} requests/s, "
        f"p50 {p(latencies, 50):.0f} ms, p95 {p(latencies, 95):.0f} ms, p99 {p(latencies, 99):.0f} ms, "
        f"errors {errors} {statuses}"
    )


if __name__ == "__main__":
    main()
