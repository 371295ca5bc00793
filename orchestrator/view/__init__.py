"""`orchestrator view`: a local web page to watch batches, review every clip and send rejects back.

The front layer beside ``cli`` (it may import anything below; nothing imports it but ``cli``):
``app`` (routes, the request guard, the ledger's lifetime), ``pages`` (HTML), ``gallery`` (a
page of clips as JSON), ``summary`` (a batch's line: states, money, pace), ``live`` (server-sent
updates), ``files`` (clips and posters, only as the ledger records them), ``review`` (marks and
the reroll child), ``serve`` (the server the command runs); ``static/`` holds the CSS and JS.
Its SQL is in ``ledger/view_queries.py``.
"""
