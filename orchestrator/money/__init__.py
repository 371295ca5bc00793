"""The money side: what a request costs, what a batch will cost, and what it did cost.

Prices come from Krea's published compute-unit tables; estimates are made before spending and
reports are read from the ledger after. Modules: ``prices`` (one request's price), ``costs``
(estimates and the budget check), ``accounting`` (spend from ledger rows), ``spend_history``
(money over time), ``report_sections`` (the figures every report format shares), ``reports``
(table, CSV, JSON; the figures read as SQLite's sums), ``report_html`` (the HTML page) and
``export`` (every ledger row, written as it is read).
"""
