"""Every ``fromzero ...`` command: parse the flags, call the library, print the result.

This is the top layer: commands import the library, the library never imports commands. Each
module declares its parser in ``add_commands(subparsers)`` and handles it in plain functions.
Building the parser must stay instant (``fromzero --help`` imports neither torch nor numpy), so a
module imports only light things at its top; the library modules that pull in torch, numpy or
BeautifulSoup are imported inside the handler that needs them.

* ``data``       ``fromzero data collect|stats|list|prepare``
* ``tokenizer``  ``fromzero tokenizer train|encode|decode|show|export``
* ``ngram``      ``fromzero ngram train|generate|perplexity|show`` (level 1)
* ``numpy_net``  ``fromzero numpy-net train|generate|plot|toy|gradcheck`` (level 2)
* ``model``      ``fromzero model info``
* ``generate``   ``fromzero generate``
* ``train``      ``fromzero train``
* ``parsing``    the help formatter and the flags they share
"""
