"""Evaluations that wire several layers through the facade: ``kbengine eval seek``, ``eval
zsad`` and ``eval mmad``. Import the harness you need (``kbengine.evaluation.seek`` ...): each
loads its own layers."""
