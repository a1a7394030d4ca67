"""The Hydra configs of bgmatting, importable as the package ``bgmatting.configs``.

``src/bgmatting/configs`` links to this folder, so a source checkout, an editable install and a wheel (which
carries these files inside the package) all find the configs as ``pkg://bgmatting.configs``.
"""
