"""C-FIND / C-MOVE / C-GET query resolution over the catalog (PS3.4 Annex C).

:mod:`.model` parses a request Identifier into a :class:`~.model.Query`,
:mod:`.matching` holds the pure PS3.4 C.2.2.2 matching rules, :mod:`.sql` pushes the
indexed part of a query into SQLite and :mod:`.resolver` streams the answers.
"""
