"""One module per paper; each checks the paper's claims numerically and draws its figures.

Run them with ``klsim repro list | run NAME | all``.  See ``papers_repro/README.md`` for the index of
paper → claim → script.
"""
