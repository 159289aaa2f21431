#!/usr/bin/python3
"""Image bombs: small requests whose images decode to huge pixel buffers.

A 196 KB PNG of zeros declaring 8192 x 8192 pixels decodes to 192 MiB, and the face detector's
cascade builds a grey copy and a pyramid of scaled copies on top: the node peaked at 2.36 GB. A
JPEG of a few hundred bytes does the same (a decoder out of data fills the frame). Raw pixels
(a UINT8 [H, W, 3] tensor) are the same work without the decoding.

Bound: images larger than max_image_pixels are refused with a 400 that names the limit, before
any pixel is decoded (counted as image_too_large); images within it are decoded only if the
node's memory budget holds them and what the model needs on top; the node's peak resident memory
stays within its budget plus 64 MiB of its idle size, comes back afterwards, and normal
inferences keep being answered throughout.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
import payloads  # noqa: E402
from hostile import Canary, Node  # noqa: E402

import unittest  # noqa: E402

BUDGET_MIB = 192


class ImageBombTest(unittest.TestCase):
    BINARY = None

    def setUp(self):
        # A node of its own for each attack: what one attack leaves behind (or has made the
        # allocator keep) does not hide what the next one takes.
        self.node = Node(self.BINARY, "images", models=("identity", "face-detector"),
                         args=["--memory-budget-mb", str(BUDGET_MIB)])
        # Loads the OpenCV plugin and warms the detector up, so that the baseline includes them.
        small = payloads.png_of_zeros(64, 64)
        body, headers = payloads.image_body(small)
        answer = payloads.infer(self.node, "face-detector", body, headers)
        assert answer.status == 200, answer

    def tearDown(self):
        self.node.stop()

    def attack(self, name, body, headers, expect_status=400, expect_text="max_image_pixels",
               model="face-detector"):
        node = self.node
        before = node.rejected("image_too_large")
        answer, watch = payloads.attack_within_budget(
            self, node, f"{name} ({len(body)} bytes)",
            lambda: payloads.infer(node, model, body, headers), BUDGET_MIB)
        self.assertEqual(answer.status, expect_status, f"{name}: {answer}")
        self.assertIn(expect_text, answer.error(), f"{name}: the error names the limit")
        if expect_text == "max_image_pixels":
            self.assertGreater(node.rejected("image_too_large"), before,
                               f"{name}: counted as image_too_large")
        settled = watch.settles(slack_mib=48)
        print(f"{name}: RSS back to {settled:.0f} MiB", flush=True)

    def test_png_declaring_8192_squared(self):
        png = payloads.png_of_zeros(8192, 8192)
        self.assertLess(len(png), 256 * 1024)
        body, headers = payloads.image_body(png)
        self.attack("PNG 8192x8192", body, headers)

    def test_png_taller_than_wide(self):
        # Within any per-side limit an 8K camera needs, but far more pixels than one has.
        png = payloads.png_of_zeros(1000, 60000, color_type=0)
        body, headers = payloads.image_body(png)
        self.attack("PNG 1000x60000 grey", body, headers)

    def test_jpeg_declaring_8192_squared(self):
        jpeg = payloads.jpeg_declaring(8192, 8192)
        self.assertLess(len(jpeg), 1024)
        body, headers = payloads.image_body(jpeg)
        self.attack("JPEG 8192x8192", body, headers)

    def test_jpeg_declaring_65500_squared(self):
        jpeg = payloads.jpeg_declaring(65500, 65500)
        body, headers = payloads.image_body(jpeg)
        self.attack("JPEG 65500x65500", body, headers)

    def test_raw_pixels_within_the_body_limit(self):
        # 4000 x 4000 x 3 = 46 MiB: a body the node takes, an image within max_image_pixels, but
        # the cascade's copies of it do not fit this node's budget: refused, not attempted.
        raw = bytes(4000 * 4000 * 3)
        body, headers = payloads.binary_body([("pixels", "UINT8", [4000, 4000, 3], raw)])
        self.attack("raw pixels 4000x4000", body, headers, expect_status=400,
                    expect_text="memory_budget_mb")

    def test_many_decodable_images_at_once(self):
        # Images the node can process, many at once: the budget decides how many run together;
        # the others wait their turn or get 503, and memory stays bounded.
        import concurrent.futures
        png = payloads.png_of_zeros(1920, 1080)
        body, headers = payloads.image_body(png)
        node = self.node
        watch = payloads.settle_then_watch(node)
        with Canary(node) as canary, concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: payloads.infer(node, "face-detector", body, headers),
                                    range(48)))
            payloads.keep_canary_until(canary, 3)
        growth = watch.growth_mib()
        statuses = sorted({a.status for a in answers})
        print(f"48 x 1080p PNG: statuses {statuses}; peak RSS +{growth:.0f} MiB", flush=True)
        canary.check()
        self.assertLessEqual(growth, BUDGET_MIB + 64)
        self.assertIn(200, statuses)
        self.assertTrue(set(statuses) <= {200, 503}, statuses)
        watch.settles(slack_mib=48)


if __name__ == "__main__":
    hostile.run(ImageBombTest)
