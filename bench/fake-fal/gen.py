#!/usr/bin/env python3
"""Generates the fake upstream's canned answers and the benchmark's request bodies.

usage: gen.py OUT_DIR     (writes OUT_DIR/www/{status,result}.json and OUT_DIR/bodies/*;
                           the submit answer is written in nginx.conf)
"""
import base64, json, os, random, sys

out = sys.argv[1]
www = os.path.join(out, "www")
bodies = os.path.join(out, "bodies")
os.makedirs(www, exist_ok=True)
os.makedirs(bodies, exist_ok=True)
rng = random.Random(5)
Q = "https://queue.fal.run/fal-ai/nano-banana-pro/requests/"

def png_bytes(n):
    # A PNG signature followed by incompressible bytes: the size of a real photo.
    return b"\x89PNG\r\n\x1a\n" + bytes(rng.getrandbits(8) for _ in range(n - 8))

# Status answer, ~400 bytes.
rid = "0123456789abcdef0123456789abcdef"
status = {"status": "IN_PROGRESS", "request_id": rid, "response_url": Q + rid,
          "status_url": Q + rid + "/status", "cancel_url": Q + rid + "/cancel", "logs": None}
open(os.path.join(www, "status.json"), "w").write(json.dumps(status, separators=(',', ':')))

# A sync_mode result: one ~3 MB PNG as a data URI.
img = png_bytes(2_250_000)
result = {"images": [{"url": "data:image/png;base64," + base64.b64encode(img).decode(),
                      "content_type": "image/png", "file_name": "output.png",
                      "file_size": len(img), "width": 1024, "height": 1024}], "description": ""}
open(os.path.join(www, "result.json"), "w").write(json.dumps(result, separators=(',', ':')))

# Request bodies.
seed = {"prompt": "make a photo of the man driving the car down the california coastline",
        "image_urls": ["https://storage.googleapis.com/falserverless/example_inputs/nano-banana-edit-input.png",
                       "https://storage.googleapis.com/falserverless/example_inputs/nano-banana-edit-input-2.png"],
        "num_images": 1, "aspect_ratio": "auto", "output_format": "png", "resolution": "1K"}
open(os.path.join(bodies, "s2.json"), "w").write(json.dumps(seed, separators=(',', ':')))
big = dict(seed)
big["image_urls"] = ["data:image/png;base64," + base64.b64encode(png_bytes(1_500_000)).decode()
                     for _ in range(2)]
open(os.path.join(bodies, "s3.json"), "w").write(json.dumps(big, separators=(',', ':')))
for name in ("www/status.json", "www/result.json", "bodies/s2.json", "bodies/s3.json"):
    print(f"{name}: {os.path.getsize(os.path.join(out, name))} bytes")
