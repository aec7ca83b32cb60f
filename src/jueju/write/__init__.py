"""Writing poems: the Poet task (request, givens and constraints, decode, choose), the text side
(first lines, acrostics, templates), the decoding loops and samplers, the constraints, keyword plans."""
