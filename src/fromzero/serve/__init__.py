"""The server: a model and its adapters behind OpenAI's HTTP API, and a chat page (``fromzero serve``).

:func:`fromzero.serve.app.create_app` builds the FastAPI app; :mod:`~fromzero.serve.schemas` holds
the request and response shapes, :mod:`~fromzero.serve.errors` OpenAI's error JSON, and ``static/``
the web page served at ``/``. Needs the serve extra: ``pip install "fromzero[serve]"``.
"""
