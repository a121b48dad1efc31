"""The adversarial corpus of the grader (see ``tests/course/test_adversarial.py``).

``notebook_01``: submissions of notebook 01 built from its committed release and its source's
solution, each with its expected verified score; ``exercise``: a small assignment whose test only
checks a flow against itself, for the self-consistent wrong flow; ``stock``: a run of stock
nbgrader, to show the holes the sandbox and the verifier close.
"""
