"""What the commands show: rich renderables and plain lines, pure functions of data.

One module per command family (``connection``, ``demo``, ``fleet``); tests render
them into a ``StringIO`` console at a fixed width and compare text.
"""

__all__: tuple[str, ...] = ()
