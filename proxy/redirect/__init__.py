"""The transparent proxy's traffic redirection: ``gossamer proxy redirect install|uninstall``.

``defaults``  the ports and user both halves of the transparent proxy share
"""
