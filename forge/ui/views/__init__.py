"""What each notebook shows, as functions: a notebook cell calls a view and displays its result.

Views return plain displayable things (HTML, matplotlib figures, polars frames) so tests can
read them; :func:`forge.ui.views.display.show` puts them in a notebook. Modules are named by
what they show: ``dominoes`` and ``positions`` (drawing the game), ``deals`` (01 generate),
``samples`` (02 tokenize), ``training`` (03 train), ``evaluation`` and ``playouts`` (04
evaluate), ``shards`` and ``explore`` (05 explore), ``results`` (any stage's result).
"""
