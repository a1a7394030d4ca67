"""A local demo page for matting: ``python -m bgmatting.demo --checkpoint ckpt.pt``.

:mod:`bgmatting.demo.app` serves ``page.html`` and a small JSON API with the standard library's
``http.server`` (no extra package): upload a photo and its plate (or pick a built-in synthetic example), get the
alpha, the foreground and the composite over a colour or an image, as PNGs to see and download.
"""
